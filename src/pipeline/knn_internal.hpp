#pragma once
// Internal to src/pipeline (not installed): the checks and query normalisation that knn.cpp and the
// Predictor's k-NN strategies (predict.cpp) share.
#include <cstdint>
#include <utility>
#include <vector>

#include "geoloc/pipeline/predict.hpp"

namespace geoloc::pipeline {

/// ValueError unless o.knn_k >= 1, o.knn_temperature > 0 and, for mean shift, the bandwidth > 0.
void check_knn_options(const PredictOptions& o);
/// q / |q| in place (the index rows are unit length, so inner products are cosines).
void normalise_query(float* q, int64_t dim);
/// Appends (row, q . row) for each of `rows`, in order: from `host` (the index's embeddings on the CPU,
/// [M, dim]) when given, else from the rows the index's FAISS index stores.
void score_rows(const KnnIndex& index, const float* host, const float* q, int64_t dim, const std::vector<int>& rows,
                std::vector<std::pair<int, float>>& out);
/// The k best of `cand` first (highest score, ties to the smaller row), the rest dropped.
void best_first(std::vector<std::pair<int, float>>& cand, size_t k);

}  // namespace geoloc::pipeline
