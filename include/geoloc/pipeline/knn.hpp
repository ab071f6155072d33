#pragma once
// k-NN over training embeddings (Vo et al. 2017): the index (L2-normalised embeddings with their
// coordinates; cosine similarity), building it from a model and a data set, searching it on its device,
// and the k-NN coordinate of a query. The Predictor's knn, refine and rank strategies use it.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "geoloc/geo/coords.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::pipeline {

class GeoModel;         // pipeline/model.hpp
struct Dataset;         // pipeline/dataset.hpp
class RowSource;        // pipeline/row_source.hpp
struct PredictOptions;  // pipeline/predict.hpp

/// Training embeddings with their coordinates, for k-NN prediction (cosine similarity).
struct KnnIndex {
  Tensor embeddings;                // F32 [M, D], rows L2-normalised
  std::vector<geo::LatLng> coords;  // M
  bool empty() const { return coords.empty(); }
  /// Builds from raw embeddings (normalised here).
  static KnnIndex build(const Tensor& embeddings, std::vector<geo::LatLng> coords);
  /// The k most similar rows to one L2-normalised query: (row, cosine similarity), best first, ties to
  /// the smaller row (the backend's knn_topk on the index's device).
  std::vector<std::pair<int, float>> search(const float* query, int64_t dim, int k) const;
  /// The same for every row of queries [M, D] (any device) in one knn_topk call.
  std::vector<std::vector<std::pair<int, float>>> search(const Tensor& queries, int k) const;
  /// A copy whose embeddings live on `device` (searches then run there).
  KnnIndex to(Device device) const;
  /// Saves as safetensors (tensors "embeddings", "latlng" [M,2] degrees), atomically; load() validates.
  void save(const std::string& path) const;
  static KnnIndex load(const std::string& path);
};

/// Embeddings (centre crops) of every image of `data` with its coordinate.
KnnIndex build_knn_index(const GeoModel& model, const Dataset& data, int batch_size = 128);
/// The same over rows read a batch at a time (ManifestRows): memory is the index plus one batch;
/// unreadable images are left out (the source counts them); IoError when none could be read.
KnnIndex build_knn_index(const GeoModel& model, const RowSource& rows, int batch_size = 128);

/// How the neighbours' coordinates become one (PredictOptions::knn_mode).
enum class KnnMode { WeightedMean, MeanShift };
KnnMode parse_knn_mode(const std::string& s);  // "mean" or "mean-shift"

/// The k-NN coordinate of one query vector (any length; normalised here) against `index`: the
/// weighted spherical mean of the neighbours' coordinates, weights exp((sim - best) / T), optionally
/// refined by mean shift (o.knn_k, o.knn_temperature, o.knn_mode, o.mean_shift_bandwidth_km; ValueError
/// when they are out of range). Used for the model's embeddings and for the colour-histogram baseline.
geo::LatLng knn_coordinate(const KnnIndex& index, const float* query, int64_t dim, const PredictOptions& o);
/// The same from neighbours already found (index row, similarity), best first.
geo::LatLng knn_coordinate(const KnnIndex& index, const std::vector<std::pair<int, float>>& neighbours,
                           const PredictOptions& o);

}  // namespace geoloc::pipeline
