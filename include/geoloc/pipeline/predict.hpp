#pragma once
// From network outputs to places: class probabilities per head, then a coordinate by one of the
// strategies of the literature (cell mean, hierarchy, centroid interpolation, k-NN), scene,
// country, optional snap to land, and aggregation over crops or several views of one place.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "geoloc/geo/countries.hpp"
#include "geoloc/pipeline/model.hpp"

namespace geoloc::pipeline {

enum class Strategy {
  CellMean,   // mean of the most probable finest cell (PlaNet)
  Hierarchy,  // best finest cell by the product of all partitionings' probabilities (Müller-Budack)
  Centroid,   // probability-weighted spherical mean of the top-k finest cells
  Knn,        // neighbours in embedding space (Vo et al. 2017); needs model.knn
  Regression, // the first coordinate-regression head (Sy & Day); needs a Coordinates head
};
const char* strategy_name(Strategy s);  // "cell", "hierarchy", "centroid", "knn", "regression"
Strategy parse_strategy(const std::string& s);

enum class KnnMode { WeightedMean, MeanShift };
KnnMode parse_knn_mode(const std::string& s);  // "mean" or "mean-shift"

struct PredictOptions {
  Strategy strategy = Strategy::Hierarchy;  // falls back to CellMean (or Regression) where not available
  int top_cells = 5;                        // cells reported with their probabilities
  int centroid_k = 5;
  int knn_k = 16;
  float knn_temperature = 0.05f;  // neighbour weight exp(similarity / T)
  KnnMode knn_mode = KnnMode::WeightedMean;
  double mean_shift_bandwidth_km = 500.0;
  bool snap_to_land = false;  // needs a CountryIndex
};

/// Softmax probabilities of every head, and the embeddings, for a batch.
struct HeadProbabilities {
  int64_t n = 0;
  Tensor embedding;                              // [N, D] CPU
  std::map<std::string, std::vector<float>> p;   // head -> N x C row-major
  std::map<std::string, int64_t> classes;        // head -> C
  std::set<std::string> regression;              // heads whose rows are raw regression outputs, not softmax
  /// Each row's k-NN neighbours (index row, cosine similarity), best first, when
  /// Predictor::find_neighbours has run: one batched search instead of one per row.
  std::vector<std::vector<std::pair<int, float>>> knn;
  /// The probabilities of head `name` for sample i (C values).
  std::span<const float> row(const std::string& name, int64_t i) const;
};

struct CellProbability {
  int cell = -1;  // class of the finest partitioning
  float probability = 0.0f;
  geo::LatLng center;
};

struct Prediction {
  geo::LatLng coordinate;
  Strategy strategy = Strategy::CellMean;  // the strategy used (after any fallback)
  std::vector<CellProbability> top_cells;  // finest partitioning, most probable first
  int scene = -1;
  float scene_probability = 0.0f;
  int country = -1;  // ISO 3166-1 numeric of the predicted coordinate (or of the country head), -1 at sea
};

/// The coordinate a regression head's outputs stand for: 3 outputs = a direction on the sphere,
/// 2 outputs = (latitude / 90, longitude / 180), clamped and wrapped into range.
geo::LatLng regression_coordinate(std::span<const float> outputs);

/// The k-NN coordinate of one query vector (any length; normalised here) against `index`: the
/// weighted spherical mean of the neighbours' coordinates, weights exp((sim - best) / T), optionally
/// refined by mean shift. Used for the model's embeddings and for the colour-histogram baseline.
geo::LatLng knn_coordinate(const KnnIndex& index, const float* query, int64_t dim, const PredictOptions& o);
/// The same from neighbours already found (index row, similarity), best first.
geo::LatLng knn_coordinate(const KnnIndex& index, const std::vector<std::pair<int, float>>& neighbours,
                           const PredictOptions& o);

class Predictor {
 public:
  /// `countries` (optional) gives country codes and snapping to land; it must outlive the predictor.
  explicit Predictor(const GeoModel& model, const geo::CountryIndex* countries = nullptr);

  /// Eval-mode forward (no graph) of a normalised NHWC batch, softmax over every head.
  HeadProbabilities probabilities(const Tensor& batch) const;
  /// Mean (or max, renormalised) of the probabilities of `group` consecutive rows: several crops of one
  /// image, or several photos of one place. Embeddings and regression outputs are averaged.
  static HeadProbabilities aggregate(const HeadProbabilities& p, int64_t group, bool use_max = false);
  /// The prediction for sample i with one strategy.
  Prediction decide(const HeadProbabilities& p, int64_t i, const PredictOptions& o) const;
  /// The coordinate of sample i by `s` alone (no snapping), for evaluating strategies side by side.
  geo::LatLng coordinate(const HeadProbabilities& p, int64_t i, Strategy s, const PredictOptions& o) const;
  /// Searches the model's k-NN index for every row of p at once (o.knn_k neighbours; on the index's
  /// device) and keeps them in p.knn, which the knn strategy then uses. A no-op without an index.
  void find_neighbours(HeadProbabilities& p, const PredictOptions& o) const;
  /// Whether `s` can be used with this model (hierarchy needs >= 2 S2 partitionings, k-NN an index).
  bool supports(Strategy s) const;

  const GeoModel& model() const { return model_; }

 private:
  const GeoModel& model_;
  const geo::CountryIndex* countries_;
};

}  // namespace geoloc::pipeline
