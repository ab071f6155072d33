#pragma once
// Differentiable operations. Each checks its inputs (throwing ShapeError that names both shapes),
// runs the kernel of the inputs' device (backend.hpp) and, when an input requires a gradient and
// grad mode is on, records its backward. All tensors of one call must be on one device.
// Float inputs are f32 or bf16, one dtype per call (a mix is a ShapeError naming both), except the
// batch-norm parameters and running statistics and the soft targets, always f32; outputs and gradients
// have their tensor's dtype; the losses' values are f32 whatever the logits' dtype; mse_loss is f32 only.
#include <cstdint>
#include <functional>
#include <vector>

#include "geoloc/autograd.hpp"
#include "geoloc/backend.hpp"

namespace geoloc::ops {

/// x [N,H,W,Ci] NHWC, w [Co,KH,KW,Ci], bias [Co] or undefined -> [N,Ho,Wo,Co].
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = {}, int stride = 1, int pad = 0);

/// Batch norm over N,H,W (x [N,H,W,C]) or over N (x [N,C]). In training mode it uses the batch
/// statistics and updates running_mean/running_var in place (momentum as PyTorch's); in eval mode it
/// uses the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum = 0.1f, float eps = 1e-5f);

/// relu?(batch_norm(x, training=true) + residual) as one op (residual may be undefined): the same values,
/// running-statistics updates and gradients as batch_norm -> add -> relu, with fewer passes over memory
/// (the BN apply, residual add and ReLU are one pass; without a residual the ReLU backward is folded into
/// the BN backward). nn/resnet.cpp uses it for every block in training, on every device.
Tensor batch_norm_act(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                      const Tensor& running_var, float momentum, float eps, const Tensor& residual, bool relu);

/// What synchronised batch norm needs from a data-parallel run (comm.hpp's Communicator, adapted by the
/// trainer): the in-place sum over every process of an f32 CPU tensor (the same values on every process
/// afterwards; it may throw, e.g. CommError on a timeout), how many processes there are and which one
/// this is. Every process must make the same calls in the same order.
struct CrossReplica {
  std::function<void(const Tensor&)> all_reduce_sum;
  int size = 1;
  int rank = 0;
};

/// Training batch norm with the statistics of the whole global batch: the mean and variance over the rows
/// of every process (each computes its own with batch_norm_stats; one all-reduce gathers them, combined
/// in double as parallel variances are), so every process normalises with, and updates its running
/// statistics to, the same values as one process holding the whole batch. Backward: one all-reduce of the
/// per-channel sums of dy and dy * xhat, then batch_norm_backward_dx; dgamma and dbeta are this process's
/// share (the gradient all-reduce adds them up). Not fused with the residual add and ReLU.
Tensor batch_norm_sync(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, float momentum, float eps, const CrossReplica& replicas);

/// While one is alive on a thread, batch_norm in training mode and batch_norm_act on that thread are
/// batch_norm_sync over `replicas` (batch_norm_act then adds the residual and applies the ReLU as separate
/// ops): the trainer's --sync-bn, without changes to the models. Guards nest; the previous one is restored.
class SyncBatchNormGuard {
 public:
  explicit SyncBatchNormGuard(CrossReplica replicas);
  ~SyncBatchNormGuard();
  SyncBatchNormGuard(const SyncBatchNormGuard&) = delete;
  SyncBatchNormGuard& operator=(const SyncBatchNormGuard&) = delete;

 private:
  CrossReplica replicas_;
  const CrossReplica* prev_;
};

/// Inference fusion, not differentiable (ValueError if any input needs a gradient): relu?(batch_norm_eval(
/// conv2d(x, w, stride, pad)) + residual), the BN folded into the convolution's epilogue from the current
/// running statistics (nothing cached: changed weights are always seen). residual may be undefined.
Tensor conv2d_bn_act(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                     const Tensor& running_mean, const Tensor& running_var, float eps, const Tensor& residual,
                     bool relu, int stride, int pad);

Tensor relu(const Tensor& x);
/// a + b, same shapes.
Tensor add(const Tensor& a, const Tensor& b);
/// relu(a + b) in one pass (ResNet's residual join).
Tensor add_relu(const Tensor& a, const Tensor& b);
/// alpha * x.
Tensor scale(const Tensor& x, float alpha);
/// x [N,H,W,C] -> [N,Ho,Wo,C]; padding is -infinity (as PyTorch).
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad = 0);
/// x [N,H,W,C] -> [N,C], the mean over H and W.
Tensor global_avg_pool(const Tensor& x);
/// x [N,D], w [C,D], bias [C] or undefined -> [N,C].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});
/// x converted between f32 and bf16 (round to nearest even; x itself when already of dtype t); the
/// gradient is converted back to x's dtype. Mixed precision: the f32 master weights enter a bf16 forward
/// through it, so their gradients arrive in f32.
Tensor to_dtype(const Tensor& x, DType t);
/// Same data, another shape of the same element count (a view; gradients reshape back).
Tensor reshape(const Tensor& x, const Shape& shape);
/// [N, ...] -> [N, rest].
Tensor flatten(const Tensor& x);
/// Inverted dropout with probability p; identity when !training or p == 0. Deterministic in seed.
Tensor dropout(const Tensor& x, float p, bool training, uint64_t seed);

/// Mean softmax cross-entropy over the samples whose label is >= 0 (labels I32 [N]); a batch with
/// no labelled sample gives 0 with zero gradient.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
/// Mean cross-entropy against probability targets [N,C]; rows of all zeros are ignored samples.
Tensor cross_entropy_soft(const Tensor& logits, const Tensor& targets);
/// One target of cross_entropy_multihead: exactly one of labels (I32 [N]) and soft ([N,C]) is defined.
/// Best kept on the CPU: the labelled-sample count is taken there, and each is uploaded once.
struct CrossEntropyTarget {
  Tensor labels;
  Tensor soft;
};
/// cross_entropy / cross_entropy_soft of several heads in one backend call (one kernel launch on the
/// GPU); returns each head's mean loss (one-element tensors on the logits' device, each differentiable).
/// Nothing is read back to the host when the targets are CPU tensors.
std::vector<Tensor> cross_entropy_multihead(const std::vector<Tensor>& logits,
                                            const std::vector<CrossEntropyTarget>& targets);
/// ValueError naming `what` and the first non-finite element of a host tensor (an f32 CPU tensor); a
/// device tensor is not read back (that would wait for the device), so inputs are best checked on the
/// host before they are uploaded, as the losses do with their targets.
void check_finite(const Tensor& t, const char* what);
/// Mean squared error over all elements.
Tensor mse_loss(const Tensor& pred, const Tensor& target);
/// sum_i weights[i] * terms[i] for one-element tensors (the multitask loss).
Tensor weighted_sum(const std::vector<Tensor>& terms, const std::vector<float>& weights);

}  // namespace geoloc::ops
