// cuda:: pooling of backend.hpp: max pooling with argmax (the CPU's loop order and NaN rule, so y and argmax
// agree exactly) and global average pooling, f32 or bf16 (compute in float, one rounding per output);
// src/core/cpu/pooling.cpp is the spec.
#include <cstdint>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"
#include "map.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;
using dev::bf16;
using dev::launch_map;
using dev::ld;
using dev::st;

// Global average pooling: one thread per (image, channel); consecutive threads read consecutive channels.
template <class T>
struct GapOp {
  const T* x;
  T* y;
  int64_t hw, c;
  __device__ void operator()(int64_t i) const {
    const int64_t b = i / c, j = i % c;
    const T* p = x + b * hw * c + j;
    float s = 0.0f;
    for (int64_t k = 0; k < hw; ++k) s += ld(p, k * c);
    st(y, i, s / static_cast<float>(hw));
  }
};
template <class T>
struct GapBwdOp {
  const T* dy;
  T* dx;
  int64_t hw, c;
  float inv;
  __device__ void operator()(int64_t i) const {
    const int64_t j = i % c, b = i / (hw * c);
    st(dx, i, ld(dy, b * c + j) * inv);
  }
};
// Max pooling, one thread per output element; the loop order and the NaN rule are the CPU backend's,
// so y and argmax agree exactly.
template <class T>
struct MaxPoolOp {
  const T* x;
  T* y;
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
        const float v = ld(x, ((b * h + iy) * w + ix) * c + j);
        if (idx < 0 || v > best || isnan(v)) {
          best = v;
          idx = static_cast<int32_t>(iy * w + ix);
        }
      }
    }
    st(y, i, best);  // exact for bf16: best is one of the bf16 inputs
    argmax[i] = idx;
  }
};
// Windows may overlap, so several outputs can route into one input: atomics (dx was zeroed first). A bf16
// dx is summed in an f32 scratch and rounded once afterwards.
template <class T>
struct MaxPoolBwdOp {
  const T* dy;
  const int32_t* argmax;
  float* dx;
  int64_t hw, c, howo;
  __device__ void operator()(int64_t i) const {
    const int32_t idx = argmax[i];
    if (idx < 0) return;
    const int64_t j = i % c, b = i / (howo * c);
    atomicAdd(dx + (b * hw + idx) * c + j, ld(dy, i));
  }
};

float* fp(const Tensor& t) { return static_cast<float*>(t.raw()); }
bf16* bp(const Tensor& t) { return static_cast<bf16*>(t.raw()); }
void same_numel(const Tensor& a, const Tensor& b, const char* fn) {
  GEOLOC_CHECK(a.numel() == b.numel(), ShapeError, "cuda::", fn, ": ", a.str(), " and ", b.str(),
               " differ in size");
}
}  // namespace

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a) {
  const DType t = detail::expect_fp(x, x.dtype(), "max_pool2d_forward", "x");
  detail::expect_fp(y, t, "max_pool2d_forward", "y");
  expect(argmax, DType::I32, "max_pool2d_forward", "argmax");
  check_ndim(x, 4, "cuda::max_pool2d_forward: x");
  check_ndim(y, 4, "cuda::max_pool2d_forward: y");
  same_numel(y, argmax, "max_pool2d_forward");
  Context& c = detail::context_of(x, "max_pool2d_forward");
  if (t == DType::BF16)
    launch_map(c, y.numel(),
               MaxPoolOp<bf16>{bp(x), bp(y), argmax.data<int32_t>(), x.dim(1), x.dim(2), x.dim(3), y.dim(1),
                               y.dim(2), a.kernel, a.stride, a.pad},
               "max_pool2d_forward");
  else
    launch_map(c, y.numel(),
               MaxPoolOp<float>{fp(x), fp(y), argmax.data<int32_t>(), x.dim(1), x.dim(2), x.dim(3), y.dim(1),
                                y.dim(2), a.kernel, a.stride, a.pad},
               "max_pool2d_forward");
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx) {
  const DType t = detail::expect_fp(dy, dy.dtype(), "max_pool2d_backward", "dy");
  expect(argmax, DType::I32, "max_pool2d_backward", "argmax");
  detail::expect_fp(dx, t, "max_pool2d_backward", "dx");
  check_ndim(dy, 4, "cuda::max_pool2d_backward: dy");
  check_ndim(dx, 4, "cuda::max_pool2d_backward: dx");
  same_numel(dy, argmax, "max_pool2d_backward");
  Context& c = detail::context_of(dx, "max_pool2d_backward");
  // bf16: the sums in an f32 scratch (queued on the same stream, so freeing it at return is safe)
  const Tensor acc = t == DType::BF16 ? Tensor::empty(dx.shape(), DType::F32, dx.device()) : dx;
  if (acc.nbytes()) GEOLOC_CUDA_CHECK(cudaMemsetAsync(acc.raw(), 0, acc.nbytes(), detail::stream_of(c)));
  if (t == DType::BF16)
    launch_map(c, dy.numel(),
               MaxPoolBwdOp<bf16>{bp(dy), argmax.data<int32_t>(), fp(acc), dx.dim(1) * dx.dim(2), dx.dim(3),
                                  dy.dim(1) * dy.dim(2)},
               "max_pool2d_backward");
  else
    launch_map(c, dy.numel(),
               MaxPoolBwdOp<float>{fp(dy), argmax.data<int32_t>(), fp(acc), dx.dim(1) * dx.dim(2), dx.dim(3),
                                   dy.dim(1) * dy.dim(2)},
               "max_pool2d_backward");
  if (t == DType::BF16) convert(acc, dx);
}

void global_avg_pool_forward(const Tensor& x, const Tensor& y) {
  const DType t = detail::expect_fp(x, x.dtype(), "global_avg_pool_forward", "x");
  detail::expect_fp(y, t, "global_avg_pool_forward", "y");
  check_ndim(x, 4, "cuda::global_avg_pool_forward: x");
  GEOLOC_CHECK(y.numel() == x.dim(0) * x.dim(3), ShapeError, "cuda::global_avg_pool_forward: y ", y.str(),
               " does not match x ", x.str());
  Context& c = detail::context_of(x, "global_avg_pool_forward");
  if (t == DType::BF16)
    launch_map(c, y.numel(), GapOp<bf16>{bp(x), bp(y), x.dim(1) * x.dim(2), x.dim(3)}, "global_avg_pool_forward");
  else
    launch_map(c, y.numel(), GapOp<float>{fp(x), fp(y), x.dim(1) * x.dim(2), x.dim(3)}, "global_avg_pool_forward");
}

void global_avg_pool_backward(const Tensor& dy, const Tensor& dx) {
  const DType t = detail::expect_fp(dy, dy.dtype(), "global_avg_pool_backward", "dy");
  detail::expect_fp(dx, t, "global_avg_pool_backward", "dx");
  check_ndim(dx, 4, "cuda::global_avg_pool_backward: dx");
  GEOLOC_CHECK(dy.numel() == dx.dim(0) * dx.dim(3), ShapeError, "cuda::global_avg_pool_backward: dy ",
               dy.str(), " does not match dx ", dx.str());
  Context& c = detail::context_of(dx, "global_avg_pool_backward");
  const int64_t hw = dx.dim(1) * dx.dim(2);
  if (t == DType::BF16)
    launch_map(c, dx.numel(), GapBwdOp<bf16>{bp(dy), bp(dx), hw, dx.dim(3), 1.0f / static_cast<float>(hw)},
               "global_avg_pool_backward");
  else
    launch_map(c, dx.numel(), GapBwdOp<float>{fp(dy), fp(dx), hw, dx.dim(3), 1.0f / static_cast<float>(hw)},
               "global_avg_pool_backward");
}

}  // namespace geoloc::cuda
