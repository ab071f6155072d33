// Kernels in the shape of kernels/*.cu, compiled as a .cu file against the emulator.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "launch.cuh"
#include "test_kernels.hpp"

namespace cuda_emu_test {
namespace {

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class Op>
__global__ void map_kernel(int64_t n, Op op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    op(i);
}
struct AffineOp {
  const float* x;
  float* y;
  float a, b;
  __device__ void operator()(int64_t i) const { y[i] = a * x[i] + b; }
};

template <class Idx, bool V4>
__global__ void __launch_bounds__(256)
    scale_shift_kernel(const float* __restrict__ x, const float* __restrict__ scale,
                       const float* __restrict__ shift, float* y, Idx n, Idx C, bool relu) {
  const Idx stride = Idx(gridDim.x) * blockDim.x;
  if constexpr (V4) {
    const Idx n4 = n / 4, c4 = C / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* s4 = reinterpret_cast<const float4*>(scale);
    const float4* h4 = reinterpret_cast<const float4*>(shift);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (Idx i = Idx(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
      const Idx c = i % c4;
      const float4 v = x4[i], s = __ldg(s4 + c), h = __ldg(h4 + c);
      float4 o{v.x * s.x + h.x, v.y * s.y + h.y, v.z * s.z + h.z, v.w * s.w + h.w};
      if (relu) o = make_float4(fmaxf(o.x, 0.0f), fmaxf(o.y, 0.0f), fmaxf(o.z, 0.0f), fmaxf(o.w, 0.0f));
      y4[i] = o;
    }
  } else {
    for (Idx i = Idx(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
      float o = x[i] * __ldg(scale + i % C) + __ldg(shift + i % C);
      y[i] = relu && o < 0.0f ? 0.0f : o;
    }
  }
}

constexpr int kRows = 8;
__global__ void channel_reduce_kernel(const float* __restrict__ a, int64_t rows, int64_t C, double* partial) {
  __shared__ double sh[kRows][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = blockIdx.x * 32LL + tx;
  double s = 0.0;
  if (c < C)
    for (int64_t r = blockIdx.y * int64_t(kRows) + ty; r < rows; r += int64_t(gridDim.y) * kRows) s += a[r * C + c];
  sh[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int k = 1; k < kRows; ++k) s += sh[k][tx];
    partial[blockIdx.y * C + c] = s;
  }
}
__global__ void combine_kernel(const double* partial, int splits, int64_t C, double* out) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double s = 0.0;
  for (int k = 0; k < splits; ++k) s += partial[k * C + c];
  out[c] = s;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.0f;
  return warp_sum(v);
}
__global__ void row_sum_kernel(const float* x, int cols, float* out) {
  __shared__ float red[32];
  const float* r = x + int64_t(blockIdx.x) * cols;
  float s = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += r[j];
  s = block_sum(s, red);
  s = block_sum(s, red);  // twice: the leading barrier protects scratch from the first call's readers
  if (threadIdx.x == 0) out[blockIdx.x] = s / float(blockDim.x);  // each thread's total counted once per thread
}

}  // namespace

void affine(const float* x, float* y, int64_t n, float a, float b, unsigned grid, unsigned block) {
  GEOLOC_LAUNCH(grid, block, 0, nullptr, map_kernel)(n, AffineOp{x, y, a, b});
  check_launch("map_kernel");
}

void scale_shift(const float* x, const float* scale, const float* shift, float* y, uint32_t n, uint32_t C,
                 bool relu, bool v4) {
  cudaStream_t s = nullptr;
  if (v4)
    GEOLOC_LAUNCH(7, 256, 0, s, scale_shift_kernel<uint32_t, true>)(x, scale, shift, y, n, C, relu);
  else
    GEOLOC_LAUNCH(7, 256, 0, s, scale_shift_kernel<uint32_t, false>)(x, scale, shift, y, n, C, relu);
  check_launch("scale_shift_kernel");
}

void column_sum(const float* x, int64_t rows, int64_t C, double* partial, int splits, double* out) {
  GEOLOC_LAUNCH(dim3(unsigned((C + 31) / 32), unsigned(splits)), dim3(32, kRows), 0, nullptr,
                channel_reduce_kernel)(x, rows, C, partial);
  check_launch("channel_reduce_kernel");
  GEOLOC_LAUNCH(unsigned((C + 63) / 64), 64, 0, nullptr, combine_kernel)(partial, splits, C, out);
  check_launch("combine_kernel");
}

void row_sum(const float* x, int rows, int cols, int threads, float* out) {
  GEOLOC_LAUNCH(rows, threads, 0, nullptr, row_sum_kernel)(x, cols, out);
  check_launch("row_sum_kernel");
}

}  // namespace cuda_emu_test
