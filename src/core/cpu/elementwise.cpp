// Elementwise ops of the CPU backend: ReLU, add, axpy, scale, sums, f32 <-> bf16, fill, dropout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "bf16.hpp"
#include "common.hpp"
#include "geoloc/random.hpp"
namespace geoloc::cpu {
using namespace detail;

void relu_forward(const Tensor& x, const Tensor& y) {
  if (bf16::widened("relu_forward", {x, y}, [&](bf16::Widen& v) { relu_forward(v.in(x), v.out(y)); })) return;
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = math::relu(x_[i]);
  });
}

void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  if (bf16::widened("relu_backward", {dy, y, dx},
                    [&](bf16::Widen& v) { relu_backward(v.in(dy), v.in(y), v.out(dx)); }))
    return;
  const int64_t n = y.numel();
  const float *DY = f(dy), *Y = f(y);
  float* DX = f(dx);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict dy_ = DY;
    float* __restrict dx_ = DX;
    const float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dx_[i] = y_[i] > 0.0f ? dy_[i] : 0.0f;
  });
}

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  if (bf16::widened("add_forward", {a, b, y},
                    [&](bf16::Widen& v) { add_forward(v.in(a), v.in(b), v.out(y)); }))
    return;
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict a_ = A;
    float* __restrict y_ = Y;
    const float* __restrict b_ = B;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = a_[i] + b_[i];
  });
}

void add_relu_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  if (bf16::widened("add_relu_forward", {a, b, y},
                    [&](bf16::Widen& v) { add_relu_forward(v.in(a), v.in(b), v.out(y)); }))
    return;
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict a_ = A;
    float* __restrict y_ = Y;
    const float* __restrict b_ = B;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = math::relu(a_[i] + b_[i]);
  });
}

void axpy(float alpha, const Tensor& src, const Tensor& dst) {
  if (bf16::widened("axpy", {src, dst}, [&](bf16::Widen& v) { axpy(alpha, v.in(src), v.inout(dst)); }))
    return;
  const int64_t n = src.numel();
  const float* S = f(src);
  float* D = f(dst);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict s_ = S;
    float* __restrict d_ = D;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) d_[i] += alpha * s_[i];
  });
}

void scale(const Tensor& x, float alpha, const Tensor& y) {
  if (bf16::widened("scale", {x, y}, [&](bf16::Widen& v) { scale(v.in(x), alpha, v.out(y)); })) return;
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = alpha * x_[i];
  });
}

void mul_scalar(const Tensor& x, const Tensor& s, const Tensor& y) {
  if (bf16::widened("mul_scalar", {x, y}, [&](bf16::Widen& v) { mul_scalar(v.in(x), v.in(s), v.out(y)); }))
    return;
  const float alpha = *f(s);  // the same products as scale(x, s[0], y)
  scale(x, alpha, y);
}

void reduce_sum(const Tensor& x, float alpha, const Tensor& y) {
  if (bf16::widened("reduce_sum", {x}, [&](bf16::Widen& v) { reduce_sum(v.in(x), alpha, v.out(y)); })) return;
  const int64_t n = x.numel();
  const float* X = f(x);
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += X[i];
  *f(y) = static_cast<float>(static_cast<double>(alpha) * acc);
}

void convert(const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  if (src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
    const float* S = f(src);
    uint16_t* D = dst.data<uint16_t>();
    parallel_for(n, n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) D[i] = math::f32_to_bf16(S[i]);
    });
  } else if (src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
    const uint16_t* S = src.data<uint16_t>();
    float* D = f(dst);
    parallel_for(n, n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) D[i] = math::bf16_to_f32(S[i]);
    });
  } else if (n > 0) {
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
  }
}

void fill(const Tensor& y, float value) {
  if (bf16::widened("fill", {y}, [&](bf16::Widen& v) { fill(v.out(y), value); })) return;
  std::fill_n(f(y), y.numel(), value);
}

// ---------------------------------------------------------------- dropout
void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed) {
  if (bf16::widened("dropout_forward", {x, y},
                    [&](bf16::Widen& v) { dropout_forward(v.in(x), mask, v.out(y), p, seed); }))
    return;
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  uint8_t* M = mask.data<uint8_t>();
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    uint8_t* __restrict m_ = M;
    for (int64_t i = i0; i < i1; ++i) {
      m_[i] = random::dropout_keep(seed, static_cast<uint64_t>(i), p) ? 1 : 0;
      y_[i] = m_[i] ? x_[i] * keep_scale : 0.0f;
    }
  });
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p) {
  if (bf16::widened("dropout_backward", {dy, dx},
                    [&](bf16::Widen& v) { dropout_backward(v.in(dy), mask, v.out(dx), p); }))
    return;
  const int64_t n = dy.numel();
  const float* DY = f(dy);
  const uint8_t* M = mask.data<uint8_t>();
  float* DX = f(dx);
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict dy_ = DY;
    const uint8_t* __restrict m_ = M;
    float* __restrict dx_ = DX;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dx_[i] = m_[i] ? dy_[i] * keep_scale : 0.0f;
  });
}

}  // namespace geoloc::cpu
