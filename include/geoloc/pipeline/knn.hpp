#pragma once
// k-NN over training embeddings (Vo et al. 2017): the index (L2-normalised embeddings with their
// coordinates; cosine similarity), building it from a model and a data set, searching it on its device
// (exact) or through FAISS (approximate, millions of rows: docs/scaling.md), and the k-NN coordinate of a
// query. The Predictor's knn, refine and rank strategies use it.
#include <cstdint>
#include <memory>
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

class FaissIndex;  // src/pipeline/faiss_index.hpp: no FAISS type in the public headers

/// Whether this build of geoloc has FAISS (configured with GEOLOC_FAISS=AUTO or ON and libfaiss-dev
/// found; docs/scaling.md). Without it every FAISS call throws ValueError and an index file holding a
/// FAISS index cannot be loaded (IoError).
bool faiss_available();

/// An approximate index over the embeddings, built with FAISS (`geoloc index --faiss SPEC`).
struct FaissOptions {
  /// faiss::index_factory description, inner-product metric (cosine on the normalised rows): "Flat"
  /// (exact), "HNSW32", "IVF4096,SQ8", "IVF4096,PQ32", "IVF4096,PQ32x4fs,Refine(SQ8)", ...
  std::string spec;
  /// Search parameters in FAISS's ParameterSpace names, stored with the index: "nprobe=32" (IVF: lists
  /// visited per query), "efSearch=128" (HNSW: candidate list), "k_factor_rf=8" (Refine: candidates
  /// re-scored per neighbour wanted). Those not given keep geoloc's defaults where they apply
  /// (nprobe=16 at most the number of lists, efSearch=64, k_factor_rf=4).
  std::string params;
  /// Rows the index is trained on (IVF centroids, quantisers): 0 = all of them (FAISS's k-means then
  /// samples 256 per centroid itself); otherwise that many rows, evenly spaced.
  int64_t train_rows = 0;
};

/// Training embeddings with their coordinates, for k-NN prediction (cosine similarity). Exact
/// (brute-force) search on `embeddings` by default; with a FAISS index (build_faiss, or loaded from a
/// file that has one) every search goes through FAISS on the CPU and `embeddings` is not kept.
struct KnnIndex {
  Tensor embeddings;                // F32 [M, D], rows L2-normalised; undefined when `faiss` holds the rows
  std::vector<geo::LatLng> coords;  // M
  /// The FAISS index over the same rows (FAISS id = row), or null. Copies of a KnnIndex share it, and
  /// with it their search parameters.
  std::shared_ptr<FaissIndex> faiss;
  bool empty() const { return coords.empty(); }
  bool has_faiss() const { return faiss != nullptr; }
  /// Dimension of the rows (0 for an empty index).
  int64_t dim() const;
  /// Builds from raw embeddings (normalised here).
  static KnnIndex build(const Tensor& embeddings, std::vector<geo::LatLng> coords);
  /// Builds a FAISS index over `embeddings` (trained, filled, parameters set) and releases the
  /// embeddings. ValueError without FAISS, for a spec FAISS cannot parse or train (e.g. more IVF lists
  /// than rows), or a search parameter the index does not have.
  void build_faiss(const FaissOptions& o);
  /// The FAISS index's description ("IVF4096,SQ8"), or "" without one.
  std::string faiss_spec() const;
  /// FAISS search parameters for the searches that follow (e.g. "nprobe=64" or "efSearch=256"), set
  /// over the stored ones: a query-time override. ValueError without a FAISS index or for a parameter it
  /// does not have.
  void set_search_params(const std::string& params);
  /// The FAISS search parameters in use ("efSearch=64,nprobe=16"), or "" without a FAISS index.
  std::string search_params() const;
  /// The k most similar rows to one L2-normalised query: (row, cosine similarity), best first. Exact:
  /// ties to the smaller row (the backend's knn_topk on the index's device). FAISS: approximate for
  /// every spec but Flat, on the CPU, and fewer than k rows where FAISS found fewer (IVF with a small
  /// nprobe).
  std::vector<std::pair<int, float>> search(const float* query, int64_t dim, int k) const;
  /// The same for every row of queries [M, D] (any device) in one knn_topk call (one FAISS search).
  std::vector<std::vector<std::pair<int, float>>> search(const Tensor& queries, int k) const;
  /// The k most similar rows among `rows` only (the refine and rank strategies' search within the top
  /// cells): inner products of the query with each listed row, best first, ties to the smaller row.
  /// Every listed row is scored, so nothing is missed: exact with the embeddings (read on the host), and
  /// with FAISS from the rows it stores (exact for Flat, HNSW32 and Refine(Flat), decoded codes for
  /// SQ and PQ).
  std::vector<std::pair<int, float>> search_rows(const float* query, int64_t dim, const std::vector<int>& rows,
                                                 int k) const;
  /// A copy whose embeddings live on `device` (exact searches then run there; FAISS stays on the CPU).
  KnnIndex to(Device device) const;
  /// Saves as safetensors, atomically: "latlng" [M,2] degrees, and "embeddings" [M,D], or with FAISS a
  /// U8 tensor "faiss" holding faiss::write_index's bytes with the spec, the search parameters and the
  /// dimension in the metadata (docs/scaling.md). load() validates.
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
