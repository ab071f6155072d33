#pragma once
// Internal to the CPU backend (src/core/cpu/*.cpp): the thread pool's task interface, the chunked
// parallel loop and small tensor helpers. Not installed.
#include <Eigen/Core>
#include <cstdint>
#include <functional>

#include "geoloc/backend.hpp"
#include "geoloc/detail/math.hpp"

namespace geoloc::cpu::detail {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapM = Eigen::Map<RowMat>;
using CMapM = Eigen::Map<const RowMat>;
using MapV = Eigen::Map<Eigen::VectorXf>;
using CMapV = Eigen::Map<const Eigen::VectorXf>;

constexpr int64_t kParallelMin = 1 << 15;  // below this many elements, a loop is not worth waking threads for

/// Threads of the pool (thread_pool.cpp).
int pool_threads();
/// fn(task, thread) for every task in [0, n), thread in [0, pool_threads()); see thread_pool.cpp.
void pool_run(int64_t ntasks, const std::function<void(int64_t, int)>& fn);

// body(begin, end) over [0, n) in about 4 chunks per thread; on the calling thread alone when the
// loop's `work` (its element count) is below kParallelMin.
template <class F>
void parallel_for(int64_t n, int64_t work, F&& body) {
  const int nt = pool_threads();
  if (work < kParallelMin || nt == 1) {
    if (n > 0) body(int64_t(0), n);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, 4 * nt), step = (n + chunks - 1) / chunks;
  pool_run((n + step - 1) / step,
                  [&](int64_t c, int) { body(c * step, std::min(n, (c + 1) * step)); });
}

inline float* f(const Tensor& t) { return t.data<float>(); }
inline int64_t channels(const Tensor& x) { return x.dim(-1); }
inline int64_t rows(const Tensor& x) { return x.numel() / x.dim(-1); }

}  // namespace geoloc::cpu::detail
