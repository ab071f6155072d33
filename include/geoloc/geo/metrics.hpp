#pragma once
// Geolocation metrics: accuracy within distance thresholds, median/mean error, GeoGuessr score,
// country accuracy; printable as a table and as JSON.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

/// The thresholds of Im2GPS / YFCC evaluations: street, city, region, country, continent (km).
inline const std::vector<double> kDefaultThresholdsKm = {1, 25, 200, 750, 2500};

struct Metrics {
  std::size_t n = 0;
  std::vector<double> thresholds_km;
  std::vector<double> accuracy;       // fraction of errors <= thresholds_km[i]
  double median_km = 0, mean_km = 0;
  double geoguessr = 0;               // mean of 5000 exp(-d / 1492.7 km)
  std::optional<double> country_acc;  // when country codes were given

  /// {"n", "acc_km": {"1": f, ...}, "median_km", "mean_km", "geoguessr"[, "country_acc"]}.
  nlohmann::json to_json() const;
};

/// Metrics of predictions against ground truth (same length, ValueError otherwise or when empty).
/// Country accuracy counts the samples whose true code is known (>= 0); a prediction of -1 is wrong.
Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km = kDefaultThresholdsKm,
                        std::span<const int> predicted_country = {}, std::span<const int> true_country = {});

/// A fixed-width table, one column per named method, one row per metric (accuracies in %).
std::string format_metrics_table(std::span<const std::pair<std::string, Metrics>> methods);

}  // namespace geoloc::geo
