#pragma once
// The embedded Earth geolocation benchmark behind `geoloc demo`: build the Earth-views data set,
// propagate scene labels, partition the training coordinates, train the multitask network, and
// evaluate the model's strategies next to simple baselines on two test splits.
#include <string>

#include "geoloc/geo/metrics.hpp"

namespace geoloc::pipeline {

struct DemoConfig {
  /// The seed systems: "multitask" (S2 cells + scene, L = L_geo + L_scene; Müller-Budack et al.),
  /// "regression" (haversine regression of the coordinates; Sy & Day), "country" (a country head, and
  /// several views of each test place averaged; EUGuess), "worldnet" (k-means clusters, centroid
  /// interpolation, snapped to land; Hulse et al.), "grid" (a fishnet over Europe; GeoGuessrAI).
  std::string preset = "multitask";
  /// "quick" (< 30 s on 2 cores), "default" (< 3 min on 2 cores) or "large" (for a GPU).
  std::string size = "default";
  std::string out_dir = "demo-out";
  std::string device = "cpu";
  uint64_t seed = 1;
  /// Probability maps of the first `maps` views of each test split (maps/SPLIT-K.png), plus, when
  /// maps > 0, the best-placed view (SPLIT-best.png) and the one at the median error (SPLIT-median.png).
  int maps = 3;
  int64_t steps = 0;   // training steps of the main network; 0 = the size's recipe
  std::string optimizer;  // "sgd" or "adamw"; empty = the recipe's
  bool progress = true;
  geo::DistanceUnit unit = geo::DistanceUnit::Km;  // of the printed tables; metrics.json is in km
};

struct DemoResult {
  /// The text of metrics.json (indented by 2): {"splits": {SPLIT: {METHOD: {"n", "acc_km": {"1","25","200","750","2500"}, "median_km", "mean_km",
  /// "geoguessr", "country_acc", "scene_acc", "acc_km_buckets": {"10","100","1000","10000"},
  /// "continent_acc", "mean_cell_km"}}}, ...}; METHOD among model, model_hierarchy, model_centroid,
  /// model_knn, model_refine, model_hybrid, model_rank, random, top_cell, color_knn (and the presets'
  /// own). mean_cell_km uses the cells of the model's finest partitioning for every method. The model's strategies also have
  /// "coverage": {"25"|"50"|"75"|"100": {"25","200","750"}} (accuracy answering only the most
  /// confident part); "calibration": {SPLIT: {"ece", "bins"}} is the finest cells' reliability.
  std::string metrics;
  std::string report;  // the printed tables
  double seconds = 0.0;
};

/// Runs the demo, writing everything under config.out_dir (model.safetensors, knn.safetensors,
/// metrics.json, training-curve.{png,json}, maps/*.png, test-views.png, calibration-SPLIT.{png,json}). Stage and progress lines go to the program's handlers (geoloc/log.hpp).
DemoResult run_demo(const DemoConfig& config);

}  // namespace geoloc::pipeline
