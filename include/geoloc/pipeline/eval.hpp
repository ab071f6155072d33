#pragma once
// Evaluating a model on a labelled data set, several strategies side by side.
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "geoloc/geo/metrics.hpp"
#include "geoloc/pipeline/dataset.hpp"
#include "geoloc/pipeline/predict.hpp"
#include "geoloc/pipeline/row_source.hpp"

namespace geoloc::pipeline {

struct EvalOptions {
  std::vector<Strategy> strategies = {Strategy::CellMean, Strategy::Hierarchy, Strategy::Centroid, Strategy::Knn,
                                     Strategy::Refine, Strategy::Hybrid, Strategy::Rank};
  /// Accuracy thresholds (km), in the order given; Sy & Day's are geo::kDistanceBucketsKm.
  std::vector<double> thresholds_km = geo::kDefaultThresholdsKm;
  bool five_crop = false;  // average the probabilities of five crops per image
  bool max_crops = false;  // with five_crop: per-class max over the crops (renormalised) instead of the mean
  int batch_size = 128;
  /// Keep every row's head probabilities in EvalReport::probabilities (for maps of chosen rows); off,
  /// evaluation memory is bounded by the batch whatever the number of rows.
  bool keep_probabilities = false;
  PredictOptions predict;  // centroid_k, knn_k, ...
};

/// Accuracy when answering only the most confident part of the images.
struct CoveragePoint {
  double coverage = 1.0;          // fraction of the images answered
  std::vector<double> accuracy;   // within each of the thresholds asked, on those images
};
inline const std::vector<double> kCoverageFractions = {0.25, 0.5, 0.75, 1.0};
inline const std::vector<double> kCoverageThresholdsKm = {25.0, 200.0, 750.0};

/// For each coverage fraction f: the accuracy within each threshold over the ceil(f * N) images of
/// highest confidence (ties to the earlier image). ValueError on mismatched sizes or an empty set.
std::vector<CoveragePoint> accuracy_coverage(std::span<const double> error_km, std::span<const double> confidence,
                                             std::span<const double> fractions = kCoverageFractions,
                                             std::span<const double> thresholds_km = kCoverageThresholdsKm);

/// Reliability of the finest partitioning's probabilities: the top class's probability against
/// whether the true coordinate lies in that class, in equal-width bins.
struct Calibration {
  double ece = 0.0;  // expected calibration error: sum over bins of n_b / N * |accuracy_b - confidence_b|
  std::vector<double> bin_confidence, bin_accuracy;  // mean per bin (0 for an empty bin)
  std::vector<size_t> bin_count;
  /// JSON text, indented by 2: {"ece", "bins": {"confidence", "accuracy", "count"}}
  std::string to_json() const;
};
/// top[i]: the top class of sample i and its probability; truth_class[i]: the class of its true
/// coordinate (-1 in none: counted wrong).
Calibration calibration(std::span<const std::pair<int, float>> top, std::span<const int> truth_class, int bins = 10);

struct EvalReport {
  /// (strategy name, metrics) for each strategy the model supports, in the order asked.
  std::vector<std::pair<std::string, geo::Metrics>> methods;
  std::optional<double> scene_acc;  // when the model has a scene head and the data scene labels
  /// Per-sample head probabilities, for probability maps (only with EvalOptions::keep_probabilities).
  HeadProbabilities probabilities;
  std::map<std::string, std::vector<geo::LatLng>> predicted;
  /// Per strategy: each sample's confidence, and the accuracy-vs-coverage curve it gives.
  std::map<std::string, std::vector<double>> confidence;
  std::map<std::string, std::vector<CoveragePoint>> coverage;
  std::optional<Calibration> calibration;  // when the model has a partitioning
  /// JSON text, indented by 2: {"ece", "bins": {...}, "coverage": {"<strategy>": {"25": {"25": acc,
  /// "200": .., "750": ..}, ...}}}
  std::string calibration_json() const;
  /// The ECE and the accuracy-vs-coverage table, as printed by `geoloc eval`.
  std::string calibration_table() const;
  /// STEM.json (calibration_json) and STEM.png (accuracy within 750 km against coverage, per strategy).
  void write_calibration(const std::string& stem, const std::string& title = "") const;
  /// The metrics table (distances in `options.unit`) and the scene accuracy.
  std::string table(const geo::TableOptions& options = {}) const;
  /// JSON text, indented by 2: {"<strategy>": {metrics..., "scene_acc": f}, ...} (what `geoloc eval --json`
  /// writes)
  std::string to_json() const;
};

/// Centre-crop (or five-crop) evaluation. Strategies the model does not support are skipped.
/// `countries` (optional) gives country accuracy from the predicted coordinates (or from the model's
/// country head) and continent accuracy. Every strategy also gets the mean error between the centroid
/// of its predicted cell of the finest partitioning (the class it picked for cell and hierarchy, the
/// cell of its coordinate otherwise) and that of the true cell (true_cell_centers()).
EvalReport evaluate_strategies(const GeoModel& model, const Dataset& data, const geo::CountryIndex* countries,
                               const EvalOptions& options = {});
/// The same over rows read a batch at a time (a manifest decoded on demand: ManifestRows): memory is
/// bounded by options.batch_size, not by the number of rows. Unreadable images are left out (the source
/// counts them); IoError when none could be read.
EvalReport evaluate_strategies(const GeoModel& model, const RowSource& rows, const geo::CountryIndex* countries,
                               const EvalOptions& options = {});

/// The centre of the cell of `partition` that holds each true coordinate, or where the partitioning
/// has no cell (a region without training points) the nearest centre: Partition::cell_centers_of.
std::vector<geo::LatLng> true_cell_centers(const geo::Partition& partition, std::span<const geo::LatLng> truth);

/// The network input of rows [start, start + count) of `data` for `model`: model.preprocess.eval_batch
/// (the centre crop, or five crops per image), on the model's device.
Tensor eval_batch(const GeoModel& model, const Dataset& data, size_t start, size_t count, bool five_crop = false);

}  // namespace geoloc::pipeline
