#pragma once
// Evaluating a model on a labelled data set, several strategies side by side, and the k-NN index.
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "geoloc/geo/metrics.hpp"
#include "geoloc/pipeline/dataset.hpp"
#include "geoloc/pipeline/predict.hpp"

namespace geoloc::pipeline {

struct EvalOptions {
  std::vector<Strategy> strategies = {Strategy::CellMean, Strategy::Hierarchy, Strategy::Centroid, Strategy::Knn};
  /// Accuracy thresholds (km), in the order given; Sy & Day's are geo::kDistanceBucketsKm.
  std::vector<double> thresholds_km = geo::kDefaultThresholdsKm;
  bool five_crop = false;  // average the probabilities of five crops per image
  bool max_crops = false;  // with five_crop: per-class max over the crops (renormalised) instead of the mean
  int batch_size = 128;
  PredictOptions predict;  // centroid_k, knn_k, ...
};

struct EvalReport {
  /// (strategy name, metrics) for each strategy the model supports, in the order asked.
  std::vector<std::pair<std::string, geo::Metrics>> methods;
  std::optional<double> scene_acc;  // when the model has a scene head and the data scene labels
  /// Per-sample outputs, for probability maps and error analysis.
  HeadProbabilities probabilities;
  std::map<std::string, std::vector<geo::LatLng>> predicted;
  /// The metrics table (distances in `options.unit`) and the scene accuracy.
  std::string table(const geo::TableOptions& options = {}) const;
  /// {"<strategy>": {metrics..., "scene_acc": f}, ...}
  nlohmann::json to_json() const;
};

/// Centre-crop (or five-crop) evaluation. Strategies the model does not support are skipped.
/// `countries` (optional) gives country accuracy from the predicted coordinates (or from the model's
/// country head) and continent accuracy. Every strategy also gets the mean error between the centroid
/// of its predicted cell of the finest partitioning (the class it picked for cell and hierarchy, the
/// cell of its coordinate otherwise) and that of the true cell (true_cell_centers()).
EvalReport evaluate_strategies(const GeoModel& model, const Dataset& data, const geo::CountryIndex* countries,
                               const EvalOptions& options = {});

/// The centre of the cell of `partition` that holds each true coordinate, or where the partitioning
/// has no cell (a region without training points) the nearest centre: Partition::cell_centers_of.
std::vector<geo::LatLng> true_cell_centers(const geo::Partition& partition, std::span<const geo::LatLng> truth);

/// The network input for images of any size: shorter side resized to preprocess.resize, then a
/// centre crop (or the five crops, consecutive rows per image), normalised, on `device`.
Tensor network_input(const Preprocess& preprocess, std::span<const image::Image> images, bool five_crop,
                     Device device);
/// network_input() of rows [start, start + count) of `data` for `model`.
Tensor eval_batch(const GeoModel& model, const Dataset& data, size_t start, size_t count, bool five_crop = false);

/// Embeddings (centre crops) of every image of `data` with its coordinate.
KnnIndex build_knn_index(const GeoModel& model, const Dataset& data, int batch_size = 128);

}  // namespace geoloc::pipeline
