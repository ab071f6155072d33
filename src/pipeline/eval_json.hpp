#pragma once
// Internal to the library (src/, not installed; public headers carry no third-party types): the
// evaluation's JSON as nlohmann::json objects, for the documents geoloc composes (the demo's
// metrics.json). The public to_json() / calibration_json() are their texts.
#include <nlohmann/json.hpp>

#include "geoloc/pipeline/eval.hpp"

namespace geoloc::pipeline {

/// {"ece", "bins": {"confidence", "accuracy", "count"}}
nlohmann::json to_json_object(const Calibration& c);
/// {"<strategy>": {metrics..., "scene_acc": f}, ...}
nlohmann::json to_json_object(const EvalReport& r);
/// {"ece", "bins": {...}, "coverage": {"<strategy>": {"25": {"25": acc, "200": .., "750": ..}, ...}}}
nlohmann::json calibration_json_object(const EvalReport& r);

}  // namespace geoloc::pipeline
