#pragma once
// Fused optimiser steps: every parameter tensor of a model updated in one kernel launch (a table of
// pointers and sizes passed by value, up to kMaxFusedParams tensors per launch; more are split into
// several launches). The per-element math is the backend's (geoloc/detail/math.hpp), so the result is
// the same as calling cuda::sgd_step / cuda::adamw_step once per tensor; cuda::ref:: does exactly that
// with the CPU backend.
#include <cstdint>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

/// One parameter tensor and its optimiser state. SGD: state1 = momentum buffer (undefined when
/// momentum == 0), state2 unused. AdamW: state1 = m, state2 = v. Per-tensor weight decay, so that biases
/// and norm parameters can be excluded from decay.
struct ParamSlot {
  Tensor param;
  Tensor grad;
  Tensor state1;
  Tensor state2;
  float weight_decay = 0.0f;
};

constexpr int kMaxFusedParams = 192;

/// SGD with PyTorch semantics for every slot (see backend.hpp sgd_step).
void fused_sgd_step(const std::vector<ParamSlot>& slots, float lr, float momentum, float dampening,
                    bool nesterov, bool first_step);
/// AdamW for every slot (see backend.hpp adamw_step), step >= 1.
void fused_adamw_step(const std::vector<ParamSlot>& slots, float lr, float beta1, float beta2, float eps,
                      int64_t step);

namespace ref {
void fused_sgd_step(const std::vector<ParamSlot>& slots, float lr, float momentum, float dampening,
                    bool nesterov, bool first_step);
void fused_adamw_step(const std::vector<ParamSlot>& slots, float lr, float beta1, float beta2, float eps,
                      int64_t step);
}  // namespace ref

}  // namespace geoloc::cuda
