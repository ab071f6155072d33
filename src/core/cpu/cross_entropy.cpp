// Softmax cross-entropy of the CPU backend: hard and soft targets, and several heads in one call.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bf16.hpp"
#include "common.hpp"

namespace geoloc::cpu {
using namespace detail;

void cross_entropy_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  if (bf16::widened("cross_entropy_hard", {logits, dlogits}, [&](bf16::Widen& v) {
        cross_entropy_hard(v.in(logits), labels, v.out(loss), v.out(dlogits), grad_scale);
      }))
    return;
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float* L = f(logits);
  const int32_t* Y = labels.data<int32_t>();
  float *LOSS = f(loss), *D = f(dlogits);
  parallel_for(n, n * c, [&](int64_t i0, int64_t i1) {
    const float* __restrict l_ = L;
    const int32_t* __restrict y_ = Y;
    float* __restrict loss_ = LOSS;
    float* __restrict d_ = D;
    for (int64_t i = i0; i < i1; ++i) {
      const float* row = l_ + i * c;
      float* drow = d_ + i * c;
      if (y_[i] < 0) {
        loss_[i] = 0.0f;
        std::fill_n(drow, c, 0.0f);
        continue;
      }
      float mx = *std::max_element(row, row + c);
      double se = 0.0;
      for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
      const float lse = mx + static_cast<float>(std::log(se));
      loss_[i] = lse - row[y_[i]];
      for (int64_t j = 0; j < c; ++j) drow[j] = grad_scale * std::exp(row[j] - lse);
      drow[y_[i]] -= grad_scale;
    }
  });
}

void cross_entropy_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  if (bf16::widened("cross_entropy_soft", {logits, dlogits}, [&](bf16::Widen& v) {
        cross_entropy_soft(v.in(logits), v.in(targets), v.out(loss), v.out(dlogits), grad_scale);
      }))
    return;
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float *L = f(logits), *T = f(targets);
  float *LOSS = f(loss), *D = f(dlogits);
  parallel_for(n, n * c, [&](int64_t i0, int64_t i1) {
    const float* __restrict l_ = L;
    float* __restrict loss_ = LOSS;
    const float* __restrict t_ = T;
    float* __restrict d_ = D;
    for (int64_t i = i0; i < i1; ++i) {
      const float *row = l_ + i * c, *t = t_ + i * c;
      float* drow = d_ + i * c;
      double tsum = 0.0;
      for (int64_t j = 0; j < c; ++j) tsum += t[j];
      float mx = *std::max_element(row, row + c);
      double se = 0.0;
      for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
      const float lse = mx + static_cast<float>(std::log(se));
      double l = 0.0;
      for (int64_t j = 0; j < c; ++j) l += static_cast<double>(t[j]) * (lse - row[j]);
      loss_[i] = static_cast<float>(l);
      for (int64_t j = 0; j < c; ++j)
        drow[j] = grad_scale * (static_cast<float>(tsum) * std::exp(row[j] - lse) - t[j]);
    }
  });
}

void cross_entropy_multihead(const std::vector<CrossEntropyHead>& heads) {
  for (const CrossEntropyHead& h : heads) {
    if (h.labels.defined())
      cross_entropy_hard(h.logits, h.labels, h.loss, h.dlogits, h.grad_scale);
    else
      cross_entropy_soft(h.logits, h.targets, h.loss, h.dlogits, h.grad_scale);
  }
}

}  // namespace geoloc::cpu
