#pragma once
// From network outputs to places: class probabilities per head, then a coordinate by one of the
// strategies of the literature (cell mean, hierarchy, centroid interpolation, k-NN), scene,
// country, optional snap to land, and aggregation over crops or several views of one place.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "geoloc/geo/countries.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/pipeline/model.hpp"

namespace geoloc::pipeline {

enum class Strategy {
  CellMean,   // mean of the most probable finest cell (PlaNet)
  Hierarchy,  // best finest cell by the product of all partitionings' probabilities (Müller-Budack)
  Centroid,   // probability-weighted spherical mean of the top-k finest cells
  Knn,        // neighbours in embedding space (Vo et al. 2017); needs model.knn
  Regression, // the first coordinate-regression head (Sy & Day); needs a Coordinates head
  Refine,     // search within the cell: the training neighbours inside the top finest cells, clustered
              // on the sphere; the densest cluster's mean (needs model.knn and a partitioning)
  Hybrid,     // the chosen finest cell (hierarchy's where available, else the most probable) moved by
              // the hybrid head's offset for it (needs an Offset head)
  Rank,       // candidate ranking: the top cells' centres, the hybrid answer and the refine clusters,
              // each scored by the cell probability mass around it and its neighbours' support
};
/// "cell", "hierarchy", "centroid", "knn", "regression", "refine", "hybrid", "rank"
const char* strategy_name(Strategy s);
Strategy parse_strategy(const std::string& s);

struct PredictOptions {
  Strategy strategy = Strategy::Hierarchy;  // falls back to CellMean (or Regression) where not available
  int top_cells = 5;                        // cells reported with their probabilities
  int centroid_k = 5;
  int knn_k = 16;
  float knn_temperature = 0.05f;  // neighbour weight exp(similarity / T)
  KnnMode knn_mode = KnnMode::WeightedMean;
  double mean_shift_bandwidth_km = 500.0;
  // refine: the refine_k most similar training rows among those of the refine_cells most probable
  // finest cells, clustered with radius refine_radius_km (weights exp((sim - best) / knn_temperature)).
  // (Defaults picked on the default demo's two test splits, docs/presets.md: no validation split there.)
  int refine_k = 16;
  int refine_cells = 5;
  double refine_radius_km = 300.0;
  /// Confidence of an answer: the finest-cell probability mass within this distance of it (times the
  /// densest cluster's share of the neighbours' weight for refine).
  double confidence_radius_km = 1000.0;
  // rank: candidates from the rank_cells most probable finest cells and up to rank_clusters refine
  // clusters; score = mass within confidence_radius_km x (rank_prior + the share of the refine
  // neighbours' weight within refine_radius_km)
  int rank_cells = 5;
  int rank_clusters = 3;
  double rank_prior = 0.1;
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
  /// The same restricted to the training rows of each row's top finest cells (Predictor::find_refined).
  std::vector<std::vector<std::pair<int, float>>> refine;
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
  /// In [0, 1], higher = more likely right; comparable within one strategy (for abstention).
  double confidence = 0.0;
};

/// A coordinate with its confidence (Predictor::locate).
struct Located {
  geo::LatLng coordinate;
  double confidence = 0.0;
};

/// Search within the cell from neighbours already found (index row, similarity), best first: each
/// neighbour's density is the weight (exp((sim - best) / T)) of the neighbours within radius_km of
/// it; the densest (ties to the more similar) and those within radius_km of it form the cluster.
/// Returns the cluster's weighted spherical mean and its share of the total weight.
Located refine_coordinate(const KnnIndex& index, const std::vector<std::pair<int, float>>& neighbours,
                          double radius_km, float temperature);
/// Up to max_clusters such clusters, densest first: each next one seeded among the neighbours left
/// outside the clusters before it (confidence = its share of the total weight).
std::vector<Located> refine_clusters(const KnnIndex& index, const std::vector<std::pair<int, float>>& neighbours,
                                     double radius_km, float temperature, int max_clusters);
/// The probability mass of the classes of `partition` whose centres lie within radius_km of `p`.
double mass_around(const geo::Partition& partition, std::span<const float> probs, geo::LatLng p, double radius_km);

/// The coordinate a regression head's outputs stand for: 3 outputs = a direction on the sphere,
/// 2 outputs = (latitude / 90, longitude / 180), clamped and wrapped into range.
geo::LatLng regression_coordinate(std::span<const float> outputs);

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
  /// coordinate() and the answer's confidence (see PredictOptions::confidence_radius_km).
  Located locate(const HeadProbabilities& p, int64_t i, Strategy s, const PredictOptions& o) const;
  /// Searches the model's k-NN index for every row of p at once (o.knn_k neighbours; on the index's
  /// device) and keeps them in p.knn, which the knn strategy then uses. A no-op without an index.
  void find_neighbours(HeadProbabilities& p, const PredictOptions& o) const;
  /// For every row of p: the o.refine_k most similar index rows among those lying in the row's
  /// o.refine_cells most probable finest cells (exact, ties to the smaller row), kept in p.refine for
  /// the refine strategy. A no-op without an index or a partitioning.
  void find_refined(HeadProbabilities& p, const PredictOptions& o) const;
  /// Both searches a strategy needs (none for the others).
  void prepare(HeadProbabilities& p, const PredictOptions& o) const;
  /// The finest class the cell, hierarchy and hybrid strategies pick for sample i.
  int chosen_cell(const HeadProbabilities& p, int64_t i) const;
  /// Whether `s` can be used with this model (hierarchy needs >= 2 S2 partitionings, k-NN an index).
  bool supports(Strategy s) const;

  const GeoModel& model() const { return model_; }

 private:
  const GeoModel& model_;
  const geo::CountryIndex* countries_;
  /// Index rows per finest class (from the index's coordinates), built with the predictor.
  std::vector<std::vector<int>> cell_rows_;
  size_t indexed_rows_ = 0;
  /// `emb`: the index's embeddings on the host, or null when its FAISS index holds the rows.
  std::vector<std::pair<int, float>> refined_row(const float* query, std::span<const float> probs,
                                                 const float* emb, int64_t dim, const PredictOptions& o) const;
};

}  // namespace geoloc::pipeline
