#pragma once
// One grid-stride kernel for every elementwise op of kernels/elementwise.cu and kernels/pooling.cu; `Op`
// is a small functor (each instantiation is a few lines of SASS, and there are only a handful).
#include <cstdint>

#include "cuda_common.cuh"
#include "device.cuh"

namespace geoloc::cuda::dev {

template <class Op>
__global__ void map_kernel(int64_t n, Op op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    op(i);
}

template <class Op>
void launch_map(Context& c, int64_t n, Op op, const char* name) {
  if (n <= 0) return;
  cudaStream_t s = detail::stream_of(c);
  GEOLOC_LAUNCH(detail::blocks_for(n, kThreads, int64_t(c.sm_count()) * 32), kThreads, 0, s, map_kernel)
  (n, op);
  GEOLOC_CUDA_LAUNCH_CHECK(s, name);
}

}  // namespace geoloc::cuda::dev
