// k-NN top-k (the backend's knn_topk): GEMM tiles + a block top-k merge.
//
// For each tile of queries and each chunk of references, cuBLASLt writes the score tile S = Q R^T into a
// buffer small enough to stay in L2, then one block per query merges that row into its running top-k
// (kept in the output tensors between chunks). The merge is a threshold filter: a score enters the
// shared-memory candidate buffer only if it beats the current k-th best, and the buffer is bitonic-sorted
// (score desc, index asc) when full. Chunks are visited in increasing reference order, so a later
// candidate that only ties the k-th best has a larger index and is rightly dropped: the result is the
// exact top-k under (score desc, index asc).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda_common.cuh"
#include "device.cuh"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;

constexpr int kTopkThreads = 256;
constexpr int kCap = 4096;  // candidate buffer (keys + indices: 32 KiB of shared memory)

__device__ __forceinline__ bool better(float ka, int ia, float kb, int ib) {
  return ka > kb || (ka == kb && static_cast<unsigned>(ia) < static_cast<unsigned>(ib));
}

// Sorts keys/idx[0, n) best first (n a power of two <= kCap).
__device__ void bitonic_sort_desc(float* keys, int* idx, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
        const bool desc = (lo & size) == 0;
        const float ka = keys[lo], kb = keys[hi];
        const int ia = idx[lo], ib = idx[hi];
        if (better(kb, ib, ka, ia) == desc) {
          keys[lo] = kb, keys[hi] = ka;
          idx[lo] = ib, idx[hi] = ia;
        }
      }
      __syncthreads();
    }
  }
}

// Keeps the best k of keys/idx[0, count): pads to a power of two, sorts, resets count to k.
__device__ void merge_candidates(float* keys, int* idx, int& count, int k, float& thresh) {
  int n = 1;
  while (n < count) n <<= 1;
  for (int i = count + threadIdx.x; i < n; i += blockDim.x) {
    keys[i] = -INFINITY;
    idx[i] = -1;  // (unsigned) -1 sorts after every real index at equal score
  }
  __syncthreads();
  bitonic_sort_desc(keys, idx, n);
  if (threadIdx.x == 0) {
    count = k;
    thresh = idx[k - 1] >= 0 ? keys[k - 1] : -INFINITY;
  }
  __syncthreads();
}

// One block per query row of the tile. S: [rows, lds] score tile for references [ref0, ref0 + cn).
// out_s/out_i: [M, k] running lists (internal form: larger is better), first chunk initialises them;
// the last chunk converts L2 scores to squared distances.
__global__ void __launch_bounds__(kTopkThreads)
    topk_merge_kernel(const float* __restrict__ S, int64_t lds, int cn, int64_t ref0,
                      const float* __restrict__ rnorm, float* out_s, int* out_i, int k, bool first, bool last,
                      const float* __restrict__ Q, int64_t D, int64_t q0) {
  __shared__ float keys[kCap];
  __shared__ int idx[kCap];
  __shared__ int count;
  __shared__ float thresh;
  __shared__ float red[32];
  const int64_t q = q0 + blockIdx.x;
  const float* srow = S + int64_t(blockIdx.x) * lds;
  float* os = out_s + q * k;
  int* oi = out_i + q * k;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    keys[i] = first ? -INFINITY : os[i];
    idx[i] = first ? -1 : oi[i];
  }
  if (threadIdx.x == 0) count = k;
  __syncthreads();
  if (threadIdx.x == 0) thresh = idx[k - 1] >= 0 ? keys[k - 1] : -INFINITY;
  __syncthreads();
  for (int base = 0; base < cn; base += blockDim.x) {
    // The decision must be the same in every warp: __syncthreads_or makes every thread read `count`
    // before any thread can pass on to the atomicAdd below (a plain read could race with a fast warp's
    // atomicAdd, split the block between two barriers and hang it).
    if (__syncthreads_or(count + static_cast<int>(blockDim.x) > kCap))
      merge_candidates(keys, idx, count, k, thresh);
    const int j = base + threadIdx.x;
    if (j < cn) {
      float v = srow[j];
      if (rnorm) v = 2.0f * v - rnorm[ref0 + j];  // L2: rank by 2 q.r - |r|^2 (|q|^2 is constant per row)
      if (v > thresh) {
        const int pos = atomicAdd(&count, 1);
        keys[pos] = v;
        idx[pos] = static_cast<int>(ref0 + j);
      }
    }
    __syncthreads();
  }
  merge_candidates(keys, idx, count, k, thresh);
  float qn = 0.0f;
  if (last && rnorm) {
    const float* qrow = Q + q * D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) qn += qrow[d] * qrow[d];
    qn = dev::block_sum(qn, red);
  }
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    float v = keys[i];
    if (last && rnorm) v = idx[i] >= 0 ? fmaxf(qn - v, 0.0f) : INFINITY;
    os[i] = v;
    oi[i] = idx[i];
  }
}

__global__ void row_sqnorm_kernel(const float* __restrict__ x, int64_t rows, int64_t D, float* out) {
  // one warp per row
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (warp >= rows) return;
  const float* r = x + warp * D;
  float s = 0.0f;
  for (int64_t d = lane; d < D; d += 32) s += r[d] * r[d];
  s = dev::warp_sum(s);
  if (lane == 0) out[warp] = s;
}
}  // namespace

void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,
              const Tensor& index, int64_t ref_chunk) {
  const char* fn = "knn_topk";
  expect(queries, DType::F32, fn, "queries");
  expect(refs, DType::F32, fn, "refs");
  expect(scores, DType::F32, fn, "scores");
  expect(index, DType::I32, fn, "index");
  GEOLOC_CHECK(queries.ndim() == 2 && refs.ndim() == 2 && queries.dim(1) == refs.dim(1), ShapeError,
               "cuda::", fn, ": queries ", queries.str(), " and refs ", refs.str(),
               " must be [M,D] and [R,D]");
  GEOLOC_CHECK(k >= 1 && k <= kKnnMaxK, ValueError, "cuda::", fn, ": k = ", k, " (1 to ", kKnnMaxK,
               " supported)");
  const int64_t M = queries.dim(0), R = refs.dim(0), D = queries.dim(1);
  GEOLOC_CHECK(
      scores.ndim() == 2 && scores.dim(0) == M && scores.dim(1) == k && index.shape() == scores.shape(),
      ShapeError, "cuda::", fn, ": scores ", scores.str(), " and index ", index.str(), " must be [", M, ",",
      k, "]");
  GEOLOC_CHECK(R <= INT_MAX, ShapeError, "cuda::", fn, ": more than 2^31 references");
  GEOLOC_CHECK(D > 0, ShapeError, "cuda::", fn, ": empty embeddings");
  if (M == 0) return;
  if (R == 0) {  // nothing to rank: every entry is missing
    const float none = metric == KnnMetric::L2 ? INFINITY : -INFINITY;
    Tensor(scores).copy_(Tensor::full(scores.shape(), none));
    Tensor idx = Tensor::empty(index.shape(), DType::I32);
    std::fill_n(idx.data<int32_t>(), idx.numel(), -1);
    Tensor(index).copy_(idx);
    return;
  }
  Context& ctx = detail::context_of(queries, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const float* Q = static_cast<const float*>(queries.raw());
  const float* Rf = static_cast<const float*>(refs.raw());
  float* os = static_cast<float*>(scores.raw());
  int* oi = index.data<int32_t>();

  // Tiles: up to 4096 queries x a reference chunk such that the score tile is ~32 MiB (fits H100's L2).
  const int64_t mt = std::min<int64_t>(M, 4096);
  int64_t cn = ref_chunk > 0 ? ref_chunk : std::max<int64_t>(1024, (int64_t(32) << 20) / (4 * mt));
  cn = std::min<int64_t>(std::max<int64_t>(cn, 1), std::max<int64_t>(R, 1));
  cn = std::min<int64_t>(cn, INT_MAX / 2);
  Tensor tile = Tensor::empty({mt, cn}, DType::F32, queries.device());
  Tensor rnorm;
  if (metric == KnnMetric::L2) {
    rnorm = Tensor::empty({R}, DType::F32, queries.device());
    GEOLOC_LAUNCH(detail::blocks_for(R * 32, 256, INT_MAX), 256, 0, s, row_sqnorm_kernel)
    (Rf, R, D, static_cast<float*>(rnorm.raw()));
    GEOLOC_CUDA_LAUNCH_CHECK(s, "row_sqnorm_kernel");
  }
  const float* rn = rnorm.defined() ? static_cast<const float*>(rnorm.raw()) : nullptr;
  for (int64_t q0 = 0; q0 < M; q0 += mt) {
    const int64_t mq = std::min(mt, M - q0);
    for (int64_t r0 = 0; r0 < R; r0 += cn) {
      const int64_t nc = std::min(cn, R - r0);
      detail::gemm_rm_xwt(ctx, mq, nc, D, Q + q0 * D, D, Rf + r0 * D, D, static_cast<float*>(tile.raw()), cn,
                          nullptr);
      GEOLOC_LAUNCH(static_cast<unsigned>(mq), kTopkThreads, 0, s, topk_merge_kernel)
      (static_cast<const float*>(tile.raw()), cn, static_cast<int>(nc), r0, rn, os, oi, k, r0 == 0,
       r0 + nc >= R, Q, D, q0);
      GEOLOC_CUDA_LAUNCH_CHECK(s, "topk_merge_kernel");
    }
  }
}

}  // namespace geoloc::cuda
