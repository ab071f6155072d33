#pragma once
// Internal to the library (src/, not installed; public headers carry no third-party types):
// geo::Metrics as a nlohmann::json object, for the JSON documents geoloc composes (training curves,
// `geoloc eval --json`, the demo's metrics.json). The public Metrics::to_json() is its text.
#include <nlohmann/json.hpp>

#include "geoloc/geo/metrics.hpp"

namespace geoloc::geo {

/// {"n", "acc_km": {"1": f, ...}, "median_km", "mean_km", "geoguessr"[, "country_acc"][, "continent_acc"]
/// [, "mean_cell_km"]}
nlohmann::json to_json_object(const Metrics& m);

}  // namespace geoloc::geo
