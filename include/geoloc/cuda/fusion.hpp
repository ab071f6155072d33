#pragma once
// Fusions of the memory-bound part of a ResNet (batch-norm apply, residual add, ReLU) that the backend
// contract lacks. Channels last: x is [..., C] and every per-channel vector has C elements. Each
// cuda:: function has a CPU reference of the same signature in cuda::ref (the spec the GPU tests use).
#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

/// y = act(x * scale[c] + shift[c] (+ residual)), act = ReLU when `relu`, identity otherwise.
/// residual may be undefined; y may alias x or residual.
void scale_shift_act(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& residual,
                     bool relu, const Tensor& y);

/// Folds batch-norm statistics into an affine map: scale = gamma * invstd, shift = beta - mean * scale.
void bn_fold(const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& invstd,
             const Tensor& scale, const Tensor& shift);

/// Training batch norm (the backend's batch_norm_forward_train contract) followed by y = relu(bn(x) +
/// residual) in the same apply pass: the tail of a ResNet block. residual may be undefined (then
/// y = relu(bn(x))). Saves mean/invstd and updates the running statistics exactly as the backend op.
void batch_norm_train_add_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const Tensor& running_mean, const Tensor& running_var, float momentum,
                               float eps, const Tensor& residual, const Tensor& y, const Tensor& save_mean,
                               const Tensor& save_invstd);

namespace ref {
void scale_shift_act(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& residual,
                     bool relu, const Tensor& y);
void bn_fold(const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& invstd,
             const Tensor& scale, const Tensor& shift);
void batch_norm_train_add_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const Tensor& running_mean, const Tensor& running_var, float momentum,
                               float eps, const Tensor& residual, const Tensor& y, const Tensor& save_mean,
                               const Tensor& save_invstd);
}  // namespace ref

}  // namespace geoloc::cuda
