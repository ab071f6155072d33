// cuda:: elementwise ops, dropout, mul_scalar / reduce_sum of backend.hpp (float32 or bf16, computing in
// float; reduce_sum's y and mul_scalar's s are f32 always), and the f32 <-> bf16 convert. Same per-element
// math as the CPU backend (geoloc/detail/math.hpp); src/core/cpu/elementwise.cpp is the spec.
#include <cuda_bf16.h>

#include <cstdint>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"
#include "map.cuh"
#include "geoloc/detail/math.hpp"
#include "geoloc/random.hpp"

namespace geoloc::cuda {
namespace {
using dev::launch_map;
using detail::expect;
using dev::kThreads;

// Storage <-> float: the bf16 ops load to float, compute in float and round once (nearest even) on store.
using dev::ld;
using dev::st;

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
template <class T>
struct MulScalarOp {
  const T* x;
  const float* s;  // one element on the device (f32 also for bf16 x, y): no host round trip
  T* y;
  __device__ void operator()(int64_t i) const { st(y, i, ld(x, i) * s[0]); }
};
using bf16 = __nv_bfloat16;
template <class T>
T* tp(const Tensor& t) {
  return static_cast<T*>(t.raw());
}
template <class T>
struct DropoutOp {
  const T* x;
  uint8_t* mask;
  T* y;
  float p, keep_scale;
  uint64_t seed;
  __device__ void operator()(int64_t i) const {
    const bool keep = random::dropout_keep(seed, static_cast<uint64_t>(i), p);
    mask[i] = keep ? 1 : 0;
    st(y, i, keep ? ld(x, i) * keep_scale : 0.0f);
  }
};
template <class T>
struct DropoutBwdOp {
  const T* dy;
  const uint8_t* mask;
  T* dx;
  float keep_scale;
  __device__ void operator()(int64_t i) const { st(dx, i, mask[i] ? ld(dy, i) * keep_scale : 0.0f); }
};
// y[0] = alpha * sum(x) in double, one block: the losses' per-sample vectors (a few thousand elements).
// Deterministic: each thread sums a fixed strided subset, then a fixed tree.
constexpr int kReduceThreads = 1024;
template <class T>
__global__ void reduce_sum_kernel(const T* __restrict__ x, int64_t n, float alpha, float* __restrict__ y) {
  __shared__ double part[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += ld(x, i);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    double v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) y[0] = static_cast<float>(static_cast<double>(alpha) * v);
  }
}

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

void mul_scalar(const Tensor& x, const Tensor& s, const Tensor& y) {
  const char* fn = "mul_scalar";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  expect(s, DType::F32, fn, "s");
  detail::expect_fp(y, t, fn, "y");
  same_numel(x, y, fn);
  GEOLOC_CHECK(s.numel() == 1, ShapeError, "cuda::mul_scalar: s must have one element, got ", s.str());
  Context& c = detail::context_of(x, fn);
  if (t == DType::BF16)
    launch_map(c, x.numel(), MulScalarOp<bf16>{tp<bf16>(x), fp(s), tp<bf16>(y)}, fn);
  else
    launch_map(c, x.numel(), MulScalarOp<float>{fp(x), fp(s), fp(y)}, fn);
}

void reduce_sum(const Tensor& x, float alpha, const Tensor& y) {
  const char* fn = "reduce_sum";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");  // y is f32 also for a bf16 x
  expect(y, DType::F32, fn, "y");
  GEOLOC_CHECK(y.numel() == 1, ShapeError, "cuda::reduce_sum: y must have one element, got ", y.str());
  Context& c = detail::context_of(y, fn);
  cudaStream_t s = detail::stream_of(c);
  if (t == DType::BF16)
    GEOLOC_LAUNCH(1, kReduceThreads, 0, s, reduce_sum_kernel)(tp<bf16>(x), x.numel(), alpha, fp(y));
  else
    GEOLOC_LAUNCH(1, kReduceThreads, 0, s, reduce_sum_kernel)(fp(x), x.numel(), alpha, fp(y));
  GEOLOC_CUDA_LAUNCH_CHECK(s, "reduce_sum_kernel");
}

void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed) {
  const DType t = detail::expect_fp(x, x.dtype(), "dropout_forward", "x");
  expect(mask, DType::U8, "dropout_forward", "mask");
  detail::expect_fp(y, t, "dropout_forward", "y");
  same_numel(x, mask, "dropout_forward");
  same_numel(x, y, "dropout_forward");
  Context& c = detail::context_of(x, "dropout_forward");
  if (t == DType::BF16)
    launch_map(c, x.numel(),
               DropoutOp<bf16>{tp<bf16>(x), mask.data<uint8_t>(), tp<bf16>(y), p, 1.0f / (1.0f - p), seed},
               "dropout_forward");
  else
    launch_map(c, x.numel(), DropoutOp<float>{fp(x), mask.data<uint8_t>(), fp(y), p, 1.0f / (1.0f - p), seed},
               "dropout_forward");
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p) {
  const DType t = detail::expect_fp(dy, dy.dtype(), "dropout_backward", "dy");
  expect(mask, DType::U8, "dropout_backward", "mask");
  detail::expect_fp(dx, t, "dropout_backward", "dx");
  same_numel(dy, mask, "dropout_backward");
  same_numel(dy, dx, "dropout_backward");
  Context& c = detail::context_of(dy, "dropout_backward");
  if (t == DType::BF16)
    launch_map(c, dy.numel(), DropoutBwdOp<bf16>{tp<bf16>(dy), mask.data<uint8_t>(), tp<bf16>(dx), 1.0f / (1.0f - p)},
               "dropout_backward");
  else
    launch_map(c, dy.numel(), DropoutBwdOp<float>{fp(dy), mask.data<uint8_t>(), fp(dx), 1.0f / (1.0f - p)},
               "dropout_backward");
}

}  // namespace geoloc::cuda
