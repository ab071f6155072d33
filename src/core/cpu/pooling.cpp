// Pooling of the CPU backend: max pooling with argmax, global average pooling.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "bf16.hpp"
#include "common.hpp"
namespace geoloc::cpu {
using namespace detail;

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a) {
  if (bf16::widened("max_pool2d_forward", {x, y},
                    [&](bf16::Widen& v) { max_pool2d_forward(v.in(x), v.out(y), argmax, a); }))
    return;
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3), ho = y.dim(1), wo = y.dim(2);
  const float* X = f(x);
  float* Y = f(y);
  int32_t* I = argmax.data<int32_t>();
  parallel_for(n * ho, y.numel(), [&](int64_t q0, int64_t q1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    int32_t* __restrict i_ = I;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = q / ho, oh = q % ho;
      for (int64_t ow = 0; ow < wo; ++ow) {
        float* yo = y_ + ((b * ho + oh) * wo + ow) * c;
        int32_t* io = i_ + ((b * ho + oh) * wo + ow) * c;
        // the window's first valid element, then a branch-free (vectorised) compare over the others
        bool started = false;
        for (int64_t ky = 0; ky < a.kernel; ++ky) {
          int64_t iy = oh * a.stride - a.pad + ky;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < a.kernel; ++kx) {
            int64_t ix = ow * a.stride - a.pad + kx;
            if (ix < 0 || ix >= w) continue;
            const float* xi = x_ + ((b * h + iy) * w + ix) * c;
            const int32_t flat = static_cast<int32_t>(iy * w + ix);
            if (!started) {
              started = true;
              std::memcpy(yo, xi, static_cast<size_t>(c) * sizeof(float));
#pragma omp simd
              for (int64_t j = 0; j < c; ++j) io[j] = flat;
              continue;
            }
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) {
              const float v = xi[j], m = yo[j];
              const bool take = v > m || v != v;  // NaN propagates, as in PyTorch
              yo[j] = take ? v : m;
              io[j] = take ? flat : io[j];
            }
          }
        }
        if (!started) {  // no valid element (cannot happen with pad <= kernel / 2; kept well-defined)
          for (int64_t j = 0; j < c; ++j) {
            yo[j] = -std::numeric_limits<float>::infinity();
            io[j] = -1;
          }
        }
      }
    }
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx) {
  if (bf16::widened("max_pool2d_backward", {dy, dx},
                    [&](bf16::Widen& v) { max_pool2d_backward(v.in(dy), argmax, v.out(dx)); }))
    return;
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3), howo = dy.dim(1) * dy.dim(2);
  std::memset(f(dx), 0, dx.nbytes());
  const float* DY = f(dy);
  const int32_t* I = argmax.data<int32_t>();
  float* DX = f(dx);
  parallel_for(n, dy.numel(), [&](int64_t b0, int64_t b1) {
    const float* __restrict dy_ = DY;
    const int32_t* __restrict i_ = I;
    float* __restrict dx_ = DX;
    for (int64_t b = b0; b < b1; ++b)  // windows overlap inside an image: one thread per image
      for (int64_t o = 0; o < howo; ++o)
        for (int64_t j = 0; j < c; ++j) {
          int32_t idx = i_[(b * howo + o) * c + j];
          if (idx >= 0) dx_[(b * hw + idx) * c + j] += dy_[(b * howo + o) * c + j];
        }
  });
}

void global_avg_pool_forward(const Tensor& x, const Tensor& y) {
  if (bf16::widened("global_avg_pool_forward", {x, y},
                    [&](bf16::Widen& v) { global_avg_pool_forward(v.in(x), v.out(y)); }))
    return;
  const int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
  for (int64_t b = 0; b < n; ++b)
    MapV(f(y) + b * c, c) = CMapM(f(x) + b * hw * c, hw, c).colwise().mean().transpose();
}

void global_avg_pool_backward(const Tensor& dy, const Tensor& dx) {
  if (bf16::widened("global_avg_pool_backward", {dy, dx},
                    [&](bf16::Widen& v) { global_avg_pool_backward(v.in(dy), v.out(dx)); }))
    return;
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3);
  const float inv = 1.0f / static_cast<float>(hw);
  parallel_for(n, dx.numel(), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t j = 0; j < c; ++j) f(dx)[(b * hw + p) * c + j] = f(dy)[b * c + j] * inv;
  });
}

}  // namespace geoloc::cpu
