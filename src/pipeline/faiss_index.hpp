#pragma once
// Internal to src/pipeline (not installed): geoloc's one wrapper around FAISS (issue #20, docs/scaling.md).
// This header names no FAISS type (those stay in faiss_index.cpp), so the public KnnIndex and the
// benchmark (bench/bench_faiss.cpp) compile without FAISS's headers, and a build without FAISS
// (GEOLOC_FAISS=OFF, or libfaiss-dev missing) still compiles and links: every member then throws
// ValueError saying so.
//
// The index holds L2-normalised vectors under the inner-product metric, so scores are cosine
// similarities, and ids are the rows in the order they were added (0, 1, ...).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace geoloc::pipeline {

class FaissIndex {
 public:
  /// faiss::index_factory(dim, spec, METRIC_INNER_PRODUCT). ValueError for a spec FAISS cannot parse
  /// (or without FAISS).
  FaissIndex(const std::string& spec, int64_t dim);
  ~FaissIndex();
  FaissIndex(const FaissIndex&) = delete;
  FaissIndex& operator=(const FaissIndex&) = delete;

  const std::string& spec() const { return spec_; }
  int64_t dim() const;
  int64_t size() const;  // rows added
  bool needs_training() const;
  /// Trains on n vectors (IVF centroids, quantisers); ValueError with FAISS's reason when it refuses
  /// (e.g. fewer training vectors than IVF lists).
  void train(int64_t n, const float* x);
  /// Adds n vectors as rows size() .. size()+n-1.
  void add(int64_t n, const float* x);
  /// After the last add: what the restricted search needs (IVF: the map from row to list entry,
  /// 8 bytes per row). Idempotent.
  void finish();

  /// Search parameters in FAISS's ParameterSpace names, e.g. "nprobe=32", "efSearch=128",
  /// "nprobe=64,k_factor_rf=8", applied over the current ones. ValueError for a malformed string or a
  /// parameter this index does not have ("nprobe" on HNSW32).
  void set_params(const std::string& params);
  /// geoloc's defaults, each where it applies: nprobe=16 (at most nlist), efSearch=64, k_factor_rf=4.
  void set_default_params();
  /// The parameters set so far, "efSearch=64,nprobe=16" (sorted by name; "" for none).
  std::string params() const;

  /// The k best rows of each of n queries (row-major [n, dim]): scores[i*k+j] (inner products, best
  /// first) and rows[i*k+j], -1 where fewer than k were found. Const searches may run concurrently.
  void search(int64_t n, const float* x, int k, float* scores, int64_t* rows) const;
  /// FAISS's stored version of each row (exact for Flat, HNSW32 and Refine(Flat); decoded codes for
  /// SQ / PQ), [n, dim].
  void reconstruct(const int64_t* rows, int64_t n, float* out) const;

  /// faiss::write_index bytes.
  std::vector<uint8_t> serialize() const;
  /// Writes faiss::write_index's format to `path` (atomically: a plain FAISS file, faiss.read_index reads it).
  void write_file(const std::string& path) const;
  /// Reads an index written by FAISS from `path`, `size` bytes at `offset` (size 0: to the end of the
  /// file). IoError naming `label` for a truncated or corrupt index.
  static std::unique_ptr<FaissIndex> read_file(const std::string& path, uint64_t offset, uint64_t size,
                                               const std::string& label, const std::string& spec);

 private:
  FaissIndex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string spec_;
  std::map<std::string, double> params_;
};

/// OpenMP threads FAISS uses from the calling thread on: geoloc's pool size (geoloc::num_threads()).
void sync_faiss_threads();

}  // namespace geoloc::pipeline
