// Optimiser steps of the CPU backend (SGD with momentum / Nesterov, AdamW).
#include <cmath>
#include <cstdint>
#include <vector>

#include "bf16.hpp"
#include "common.hpp"

namespace geoloc::cpu {
using namespace detail;

namespace {
void sgd_one(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, float lr, float momentum,
             float dampening, float weight_decay, bool nesterov, bool first_step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad);
  float* B = momentum_buf.defined() ? f(momentum_buf) : nullptr;
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    float* __restrict p_ = P;
    float* __restrict b_ = B;
    float* __restrict g_ = G;
    for (int64_t i = i0; i < i1; ++i) {
      float dummy = 0.0f;
      float& b = b_ ? b_[i] : dummy;
      p_[i] = math::sgd_update(p_[i], g_[i], b, lr, b_ ? momentum : 0.0f, dampening, weight_decay, nesterov,
                               first_step);
    }
  });
}

void adamw_one(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
               float beta2, float eps, float weight_decay, int64_t step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad), *M = f(m), *V = f(v);
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    float* __restrict p_ = P;
    float* __restrict g_ = G;
    float* __restrict m_ = M;
    float* __restrict v_ = V;
    for (int64_t i = i0; i < i1; ++i)
      p_[i] = math::adamw_update(p_[i], g_[i], m_[i], v_[i], lr, beta1, beta2, eps, weight_decay, bc1, bc2);
  });
}
}  // namespace

// One tensor after the other; each tensor's elements are spread over the pool. A bf16 gradient (of a bf16
// working copy) is widened, exactly; parameters and states are the f32 masters.
void sgd_step(const std::vector<OptimSlot>& slots, float lr, float momentum, float dampening, bool nesterov,
              bool first_step) {
  for (const OptimSlot& s : slots)
    if (s.grad.defined())
      sgd_one(s.param, bf16::Widen().in(s.grad), s.state1, lr, momentum, dampening, s.weight_decay, nesterov,
              first_step);
}

void adamw_step(const std::vector<OptimSlot>& slots, float lr, float beta1, float beta2, float eps, int64_t step) {
  for (const OptimSlot& s : slots)
    if (s.grad.defined())
      adamw_one(s.param, bf16::Widen().in(s.grad), s.state1, s.state2, lr, beta1, beta2, eps, s.weight_decay,
                step);
}

}  // namespace geoloc::cpu
