#pragma once
// Top-k nearest neighbours of query embeddings against a reference matrix, for k-NN geolocation
// (retrieve the k most similar geotagged references of each image).
#include <cstdint>

#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

enum class KnnMetric : uint8_t {
  InnerProduct = 0,  ///< score = q . r, best = largest (cosine similarity for unit-length embeddings)
  L2 = 1,            ///< score = |q - r|^2, best = smallest
};

/// Largest k supported.
constexpr int kKnnMaxK = 1024;

/// queries [M,D], refs [R,D] f32 on one CUDA device; scores [M,k] f32 and index [M,k] i32 are
/// overwritten, best first; ties are broken by the smaller reference index. Where R < k the missing
/// entries have index -1 and score -inf (InnerProduct) or +inf (L2). 1 <= k <= kKnnMaxK.
/// ref_chunk: references per GEMM tile (0 = automatic); the score tile stays in L2 between the
/// GEMM and the top-k merge, and the full [M,R] score matrix is never materialised.
void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,
              const Tensor& index, int64_t ref_chunk = 0);

namespace ref {
/// CPU reference (double-precision scores, full sort), same contract on CPU tensors.
void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,
              const Tensor& index, int64_t ref_chunk = 0);
}  // namespace ref

}  // namespace geoloc::cuda
