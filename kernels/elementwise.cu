// cuda:: elementwise ops, dropout and pooling of backend.hpp (float32; relu, add, add_relu, axpy, scale
// and fill also bf16, computing in float), and the f32 <-> bf16 conversion of cuda/precision.hpp. Same
// per-element math as the CPU backend (geoloc/detail/math.hpp); the CPU implementation in
// src/core/cpu_backend.cpp is the spec.
#include <cuda_bf16.h>

#include <cstdint>

#include "cuda_common.cuh"
#include "device.cuh"
#include "geoloc/cuda/precision.hpp"
#include "geoloc/detail/math.hpp"

namespace geoloc::cuda {
namespace {
using detail::blocks_for;
using detail::expect;
using dev::kThreads;

// One grid-stride kernel for every elementwise op; `Op` is a small functor (each instantiation is a
// few lines of SASS, and there are only a handful).
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
  map_kernel<<<blocks_for(n, kThreads, int64_t(c.sm_count()) * 32), kThreads, 0, s>>>(n, op);
  GEOLOC_CUDA_LAUNCH_CHECK(s, name);
}

// Storage <-> float: the bf16 ops load to float, compute in float and round once (nearest even) on store.
__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

template <class T>
struct ReluOp {
  const T* x;
  T* y;
  __device__ void operator()(int64_t i) const { st(y, i, math::relu(ld(x, i))); }
};
template <class T>
struct ReluBwdOp {
  const T *dy, *y;
  T* dx;
  __device__ void operator()(int64_t i) const { st(dx, i, ld(y, i) > 0.0f ? ld(dy, i) : 0.0f); }
};
template <class T>
struct AddOp {
  const T *a, *b;
  T* y;
  bool relu;
  __device__ void operator()(int64_t i) const {
    const float v = ld(a, i) + ld(b, i);
    st(y, i, relu ? math::relu(v) : v);
  }
};
template <class T>
struct AxpyOp {
  float alpha;
  const T* src;
  T* dst;
  __device__ void operator()(int64_t i) const { st(dst, i, ld(dst, i) + alpha * ld(src, i)); }
};
template <class T>
struct ScaleOp {
  const T* x;
  float alpha;
  T* y;
  __device__ void operator()(int64_t i) const { st(y, i, alpha * ld(x, i)); }
};
template <class T>
struct FillOp {
  T* y;
  float v;
  __device__ void operator()(int64_t i) const { st(y, i, v); }
};
template <class S, class D>
struct ConvertOp {
  const S* x;
  D* y;
  __device__ void operator()(int64_t i) const { st(y, i, ld(x, i)); }
};
using bf16 = __nv_bfloat16;
template <class T>
T* tp(const Tensor& t) {
  return static_cast<T*>(t.raw());
}
struct DropoutOp {
  const float* x;
  uint8_t* mask;
  float* y;
  float p, keep_scale;
  uint64_t seed;
  __device__ void operator()(int64_t i) const {
    const bool keep = math::dropout_keep(seed, static_cast<uint64_t>(i), p);
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * keep_scale : 0.0f;
  }
};
struct DropoutBwdOp {
  const float* dy;
  const uint8_t* mask;
  float* dx;
  float keep_scale;
  __device__ void operator()(int64_t i) const { dx[i] = mask[i] ? dy[i] * keep_scale : 0.0f; }
};
// Global average pooling: one thread per (image, channel); consecutive threads read consecutive channels.
struct GapOp {
  const float* x;
  float* y;
  int64_t hw, c;
  __device__ void operator()(int64_t i) const {
    const int64_t b = i / c, j = i % c;
    const float* p = x + b * hw * c + j;
    float s = 0.0f;
    for (int64_t k = 0; k < hw; ++k) s += p[k * c];
    y[i] = s / static_cast<float>(hw);
  }
};
struct GapBwdOp {
  const float* dy;
  float* dx;
  int64_t hw, c;
  float inv;
  __device__ void operator()(int64_t i) const {
    const int64_t j = i % c, b = i / (hw * c);
    dx[i] = dy[b * c + j] * inv;
  }
};
// Max pooling, one thread per output element; the loop order and the NaN rule are the CPU backend's,
// so y and argmax agree exactly.
struct MaxPoolOp {
  const float* x;
  float* y;
  int32_t* argmax;
  int64_t h, w, c, ho, wo;
  int kernel, stride, pad;
  __device__ void operator()(int64_t i) const {
    const int64_t j = i % c, ow = (i / c) % wo, oh = (i / (c * wo)) % ho, b = i / (c * wo * ho);
    float best = -INFINITY;
    int32_t idx = -1;
    for (int ky = 0; ky < kernel; ++ky) {
      const int64_t iy = oh * stride - pad + ky;
      if (iy < 0 || iy >= h) continue;
      for (int kx = 0; kx < kernel; ++kx) {
        const int64_t ix = ow * stride - pad + kx;
        if (ix < 0 || ix >= w) continue;
        const float v = x[((b * h + iy) * w + ix) * c + j];
        if (idx < 0 || v > best || isnan(v)) {
          best = v;
          idx = static_cast<int32_t>(iy * w + ix);
        }
      }
    }
    y[i] = best;
    argmax[i] = idx;
  }
};
// Windows may overlap, so several outputs can route into one input: atomics (dx was zeroed first).
struct MaxPoolBwdOp {
  const float* dy;
  const int32_t* argmax;
  float* dx;
  int64_t hw, c, howo;
  __device__ void operator()(int64_t i) const {
    const int32_t idx = argmax[i];
    if (idx < 0) return;
    const int64_t j = i % c, b = i / (howo * c);
    atomicAdd(dx + (b * hw + idx) * c + j, dy[i]);
  }
};

float* fp(const Tensor& t) { return static_cast<float*>(t.raw()); }
void same_numel(const Tensor& a, const Tensor& b, const char* fn) {
  GEOLOC_CHECK(a.numel() == b.numel(), ShapeError, "cuda::", fn, ": ", a.str(), " and ", b.str(),
               " differ in size");
}
}  // namespace

void relu_forward(const Tensor& x, const Tensor& y) {
  const char* fn = "relu_forward";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  detail::expect_fp(y, t, fn, "y");
  same_numel(x, y, fn);
  Context& c = detail::context_of(x, fn);
  if (t == DType::BF16)
    launch_map(c, x.numel(), ReluOp<bf16>{tp<bf16>(x), tp<bf16>(y)}, fn);
  else
    launch_map(c, x.numel(), ReluOp<float>{fp(x), fp(y)}, fn);
}

void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  const char* fn = "relu_backward";
  const DType t = detail::expect_fp(dy, dy.dtype(), fn, "dy");
  detail::expect_fp(y, t, fn, "y");
  detail::expect_fp(dx, t, fn, "dx");
  same_numel(dy, y, fn);
  same_numel(dy, dx, fn);
  Context& c = detail::context_of(y, fn);
  if (t == DType::BF16)
    launch_map(c, y.numel(), ReluBwdOp<bf16>{tp<bf16>(dy), tp<bf16>(y), tp<bf16>(dx)}, fn);
  else
    launch_map(c, y.numel(), ReluBwdOp<float>{fp(dy), fp(y), fp(dx)}, fn);
}

static void add_impl(const Tensor& a, const Tensor& b, const Tensor& y, bool relu, const char* fn) {
  const DType t = detail::expect_fp(a, a.dtype(), fn, "a");
  detail::expect_fp(b, t, fn, "b");
  detail::expect_fp(y, t, fn, "y");
  same_numel(a, b, fn);
  same_numel(a, y, fn);
  Context& c = detail::context_of(a, fn);
  if (t == DType::BF16)
    launch_map(c, a.numel(), AddOp<bf16>{tp<bf16>(a), tp<bf16>(b), tp<bf16>(y), relu}, fn);
  else
    launch_map(c, a.numel(), AddOp<float>{fp(a), fp(b), fp(y), relu}, fn);
}
void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  add_impl(a, b, y, false, "add_forward");
}
void add_relu_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  add_impl(a, b, y, true, "add_relu_forward");
}

void axpy(float alpha, const Tensor& src, const Tensor& dst) {
  const char* fn = "axpy";
  const DType t = detail::expect_fp(src, src.dtype(), fn, "src");
  detail::expect_fp(dst, t, fn, "dst");
  same_numel(src, dst, fn);
  Context& c = detail::context_of(dst, fn);
  if (t == DType::BF16)
    launch_map(c, src.numel(), AxpyOp<bf16>{alpha, tp<bf16>(src), tp<bf16>(dst)}, fn);
  else
    launch_map(c, src.numel(), AxpyOp<float>{alpha, fp(src), fp(dst)}, fn);
}

void scale(const Tensor& x, float alpha, const Tensor& y) {
  const char* fn = "scale";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  detail::expect_fp(y, t, fn, "y");
  same_numel(x, y, fn);
  Context& c = detail::context_of(x, fn);
  if (t == DType::BF16)
    launch_map(c, x.numel(), ScaleOp<bf16>{tp<bf16>(x), alpha, tp<bf16>(y)}, fn);
  else
    launch_map(c, x.numel(), ScaleOp<float>{fp(x), alpha, fp(y)}, fn);
}

void fill(const Tensor& y, float value) {
  const char* fn = "fill";
  const DType t = detail::expect_fp(y, y.dtype(), fn, "y");
  Context& c = detail::context_of(y, fn);
  if (t == DType::BF16)
    launch_map(c, y.numel(), FillOp<bf16>{tp<bf16>(y), value}, fn);
  else
    launch_map(c, y.numel(), FillOp<float>{fp(y), value}, fn);
}

void convert(const Tensor& src, const Tensor& dst) {
  const char* fn = "convert";
  const DType s = detail::expect_fp(src, src.dtype(), fn, "src");
  const DType d = detail::expect_fp(dst, dst.dtype(), fn, "dst");
  same_numel(src, dst, fn);
  GEOLOC_CHECK(src.device() == dst.device(), ShapeError, "cuda::convert: ", src.str(), " and ", dst.str(),
               " are on different devices");
  Context& c = detail::context_of(src, fn);
  const int64_t n = src.numel();
  if (s == DType::F32 && d == DType::BF16)
    launch_map(c, n, ConvertOp<float, bf16>{fp(src), tp<bf16>(dst)}, fn);
  else if (s == DType::BF16 && d == DType::F32)
    launch_map(c, n, ConvertOp<bf16, float>{tp<bf16>(src), fp(dst)}, fn);
  else if (n)
    GEOLOC_CUDA_CHECK(
        cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, detail::stream_of(c)));
}

void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed) {
  expect(x, DType::F32, "dropout_forward", "x");
  expect(mask, DType::U8, "dropout_forward", "mask");
  expect(y, DType::F32, "dropout_forward", "y");
  same_numel(x, mask, "dropout_forward");
  same_numel(x, y, "dropout_forward");
  Context& c = detail::context_of(x, "dropout_forward");
  launch_map(c, x.numel(), DropoutOp{fp(x), mask.data<uint8_t>(), fp(y), p, 1.0f / (1.0f - p), seed},
             "dropout_forward");
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p) {
  expect(dy, DType::F32, "dropout_backward", "dy");
  expect(mask, DType::U8, "dropout_backward", "mask");
  expect(dx, DType::F32, "dropout_backward", "dx");
  same_numel(dy, mask, "dropout_backward");
  same_numel(dy, dx, "dropout_backward");
  Context& c = detail::context_of(dy, "dropout_backward");
  launch_map(c, dy.numel(), DropoutBwdOp{fp(dy), mask.data<uint8_t>(), fp(dx), 1.0f / (1.0f - p)},
             "dropout_backward");
}

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a) {
  expect(x, DType::F32, "max_pool2d_forward", "x");
  expect(y, DType::F32, "max_pool2d_forward", "y");
  expect(argmax, DType::I32, "max_pool2d_forward", "argmax");
  check_ndim(x, 4, "cuda::max_pool2d_forward: x");
  check_ndim(y, 4, "cuda::max_pool2d_forward: y");
  same_numel(y, argmax, "max_pool2d_forward");
  Context& c = detail::context_of(x, "max_pool2d_forward");
  launch_map(c, y.numel(),
             MaxPoolOp{fp(x), fp(y), argmax.data<int32_t>(), x.dim(1), x.dim(2), x.dim(3), y.dim(1), y.dim(2),
                       a.kernel, a.stride, a.pad},
             "max_pool2d_forward");
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx) {
  expect(dy, DType::F32, "max_pool2d_backward", "dy");
  expect(argmax, DType::I32, "max_pool2d_backward", "argmax");
  expect(dx, DType::F32, "max_pool2d_backward", "dx");
  check_ndim(dy, 4, "cuda::max_pool2d_backward: dy");
  check_ndim(dx, 4, "cuda::max_pool2d_backward: dx");
  same_numel(dy, argmax, "max_pool2d_backward");
  Context& c = detail::context_of(dx, "max_pool2d_backward");
  if (dx.nbytes()) GEOLOC_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), detail::stream_of(c)));
  launch_map(c, dy.numel(),
             MaxPoolBwdOp{fp(dy), argmax.data<int32_t>(), fp(dx), dx.dim(1) * dx.dim(2), dx.dim(3),
                          dy.dim(1) * dy.dim(2)},
             "max_pool2d_backward");
}

void global_avg_pool_forward(const Tensor& x, const Tensor& y) {
  expect(x, DType::F32, "global_avg_pool_forward", "x");
  expect(y, DType::F32, "global_avg_pool_forward", "y");
  check_ndim(x, 4, "cuda::global_avg_pool_forward: x");
  GEOLOC_CHECK(y.numel() == x.dim(0) * x.dim(3), ShapeError, "cuda::global_avg_pool_forward: y ", y.str(),
               " does not match x ", x.str());
  Context& c = detail::context_of(x, "global_avg_pool_forward");
  launch_map(c, y.numel(), GapOp{fp(x), fp(y), x.dim(1) * x.dim(2), x.dim(3)}, "global_avg_pool_forward");
}

void global_avg_pool_backward(const Tensor& dy, const Tensor& dx) {
  expect(dy, DType::F32, "global_avg_pool_backward", "dy");
  expect(dx, DType::F32, "global_avg_pool_backward", "dx");
  check_ndim(dx, 4, "cuda::global_avg_pool_backward: dx");
  GEOLOC_CHECK(dy.numel() == dx.dim(0) * dx.dim(3), ShapeError, "cuda::global_avg_pool_backward: dy ",
               dy.str(), " does not match dx ", dx.str());
  Context& c = detail::context_of(dx, "global_avg_pool_backward");
  const int64_t hw = dx.dim(1) * dx.dim(2);
  launch_map(c, dx.numel(), GapBwdOp{fp(dy), fp(dx), hw, dx.dim(3), 1.0f / static_cast<float>(hw)},
             "global_avg_pool_backward");
}

}  // namespace geoloc::cuda
