// k-NN top-k of the CPU backend: exact scores (float, accumulated in index order), the k best by a
// partial sort, ties broken by the smaller reference index; queries spread over the pool.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "common.hpp"

namespace geoloc::cpu {
using namespace detail;

void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,
              const Tensor& index, int64_t) {
  const int64_t M = queries.dim(0), R = refs.dim(0), D = queries.dim(1);
  const float *Q = f(queries), *Rf = f(refs);
  float* S = f(scores);
  int32_t* I = index.data<int32_t>();
  const bool l2 = metric == KnnMetric::L2;
  const int64_t kk = std::min<int64_t>(k, R);
  const float missing = l2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  parallel_for(M, M * R * D, [&](int64_t q0, int64_t q1) {
    std::vector<float> sc(static_cast<size_t>(R));
    std::vector<int32_t> order(static_cast<size_t>(R));
    for (int64_t q = q0; q < q1; ++q) {
      const float* qv = Q + q * D;
      for (int64_t r = 0; r < R; ++r) {
        const float* rv = Rf + r * D;
        float acc = 0.0f;
        if (l2) {
          for (int64_t j = 0; j < D; ++j) acc += (qv[j] - rv[j]) * (qv[j] - rv[j]);
        } else {
          for (int64_t j = 0; j < D; ++j) acc += rv[j] * qv[j];
        }
        sc[static_cast<size_t>(r)] = acc;
      }
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int32_t a, int32_t b) {
        if (sc[a] != sc[b]) return l2 ? sc[a] < sc[b] : sc[a] > sc[b];
        return a < b;
      });
      for (int64_t j = 0; j < k; ++j) {
        S[q * k + j] = j < kk ? sc[order[j]] : missing;
        I[q * k + j] = j < kk ? order[j] : -1;
      }
    }
  });
}

}  // namespace geoloc::cpu
