#pragma once
// The kernel layer under the autograd ops. `cpu::f` and `cuda::f` have identical signatures and
// contracts; `dispatch` picks by the tensors' device. Every function writes into outputs the caller
// has already allocated with the documented shape on the same device, and overwrites them (no
// accumulation) unless its comment says otherwise. Layouts: activations NHWC [N, H, W, C]; conv
// weights OHWI [Cout, KH, KW, Cin] (cuDNN's NHWC filter layout, "KRSC"); linear weights [C_out, D_in].
// Shapes are validated by the ops in ops.hpp before they reach this layer.
//
// bf16 (mixed precision): the float tensors of one call are all f32 or all bf16 (a mix is a ShapeError),
// computed in float with one round-to-nearest-even per output element, except these, f32 always: the
// batch-norm parameters, running and saved statistics and dgamma/dbeta; the losses' per-sample loss,
// soft targets and haversine target; reduce_sum's y (x may be bf16); mul_scalar's s; the optimisers' params
// and states (the f32 masters: a slot's grad may be bf16, the gradient of a bf16 working copy). Masks (U8),
// labels, argmax and indices keep their dtypes; knn_topk is f32 only; convert is f32 <-> bf16. The CUDA
// twins may deviate where geoloc/cuda/precision.hpp says (conv2d_bn_act_forward rounds twice; no bf16 conv
// bias). The CPU
// twins are the reference for every bf16 function (src/core/cpu/bf16.hpp: widen the bf16 inputs, run the
// f32 code, round each output once); which CUDA twins have bf16 kernels: geoloc/cuda/precision.hpp.
#include <cstdint>
#include <functional>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc {

struct Conv2dArgs {
  int stride = 1;
  int pad = 0;
};
struct Pool2dArgs {
  int kernel = 2;
  int stride = 2;
  int pad = 0;
};

/// Output size of a convolution or pooling window along one axis.
inline int64_t conv_out_size(int64_t in, int64_t k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/// One head of cross_entropy_multihead. logits [N,C] f32; exactly one of labels (I32 [N], label < 0 =
/// ignored sample) and targets ([N,C] probabilities, a zero row = ignored sample) is defined; loss [N]
/// and dlogits [N,C] are overwritten; dlogits = grad_scale * d loss / d logits. Heads may differ in N and C.
struct CrossEntropyHead {
  Tensor logits;
  Tensor labels;
  Tensor targets;
  Tensor loss;
  Tensor dlogits;
  float grad_scale = 1.0f;
};

/// One parameter tensor and its optimiser state for sgd_step / adamw_step. SGD: state1 = momentum
/// buffer (undefined when momentum == 0), state2 unused. AdamW: state1 = m, state2 = v. Per-tensor
/// weight decay, so that biases and norm parameters can be excluded from decay.
struct OptimSlot {
  Tensor param;
  Tensor grad;
  Tensor state1;
  Tensor state2;
  float weight_decay = 0.0f;
};

enum class KnnMetric : uint8_t {
  InnerProduct = 0,  ///< score = q . r, best = largest (cosine similarity for unit-length embeddings)
  L2 = 1,            ///< score = |q - r|^2, best = smallest
};

/// Largest k of knn_topk.
constexpr int kKnnMaxK = 1024;

#define GEOLOC_BACKEND_DECLARATIONS                                                                           \
  /* y[N,Ho,Wo,Co] = conv(x[N,H,W,Ci], w[Co,KH,KW,Ci]) + bias[Co] (bias may be undefined) */                \
  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,                  \
                      const Conv2dArgs& a);                                                                   \
  /* dx = conv^T(dy, w) */                                                                                    \
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a);        \
  /* dw = sum over batch of x (*) dy; dbias = sum of dy over N,H,W (dbias may be undefined) */               \
  void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,       \
                              const Conv2dArgs& a);                                                           \
  /* Inference fusion: conv2d (no bias) followed by eval batch norm (running statistics folded into a       \
     per-channel scale and shift), + residual (may be undefined), ReLU if `relu`: one pass over y. */          \
  void conv2d_bn_act_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,       \
                             const Tensor& running_mean, const Tensor& running_var, float eps,                \
                             const Tensor& residual, bool relu, const Tensor& y, const Conv2dArgs& a);        \
  /* Training batch norm over N,H,W per channel: y = (x-mean)*invstd*gamma + beta; saves mean and            \
     invstd = 1/sqrt(var_biased + eps); running stats: r = (1-momentum)*r + momentum*batch (unbiased var) */ \
  void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,                     \
                                const Tensor& running_mean, const Tensor& running_var, float momentum,        \
                                float eps, const Tensor& y, const Tensor& save_mean,                          \
                                const Tensor& save_invstd);                                                   \
  /* Eval batch norm with the running statistics. */                                                         \
  void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,                      \
                               const Tensor& running_mean, const Tensor& running_var, float eps,              \
                               const Tensor& y);                                                              \
  /* Gradients of the training batch norm (dgamma/dbeta may be undefined). */                                 \
  void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,   \
                           const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,                 \
                           const Tensor& dbeta);                                                              \
  /* Synchronised batch norm, step 1: mean [C] and biased variance var [C] of x's rows (x [..., C]), summed   \
     in double as batch_norm_forward_train; one process's share, combined across processes by ops.cpp.      \
     Zero rows: mean and var are 0. */                                                                         \
  void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var);                              \
  /* Synchronised batch norm's dx, from per-channel sums over every process's rows (count of them):         \
     dx = gamma*invstd*(dy - sum_dy/count - xhat*sum_dy_xhat/count), xhat = (x - mean)*invstd. sum_dy and    \
     sum_dy_xhat are batch_norm_backward's dbeta and dgamma summed over the processes; all vectors f32 [C]. */ \
  void batch_norm_backward_dx(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,     \
                              const Tensor& invstd, const Tensor& sum_dy, const Tensor& sum_dy_xhat,          \
                              double count, const Tensor& dx);                                                \
  /* Fusion: batch_norm_forward_train, then + residual (may be undefined), then ReLU if `relu`, in the      \
     apply pass: y = relu?((x - mean) * invstd * gamma + beta + residual). Same statistics and running stats. */ \
  void batch_norm_act_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,                 \
                                    const Tensor& running_mean, const Tensor& running_var, float momentum,    \
                                    float eps, const Tensor& residual, bool relu, const Tensor& y,             \
                                    const Tensor& save_mean, const Tensor& save_invstd);                       \
  /* Gradients of batch_norm_act_forward_train given dy of its output y. dresidual (defined when the forward   \
     had a residual) receives the gradient at the residual input, relu ? dy * (y > 0) : dy, and the ReLU mask \
     is taken from y; without a residual the mask is recomputed from x, beta and the saved statistics (y may \
     still be passed; implementations may read it). dx, dgamma, dbeta may be undefined. */                   \
  void batch_norm_act_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& gamma,       \
                               const Tensor& beta, const Tensor& save_mean, const Tensor& save_invstd,        \
                               bool relu, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,        \
                               const Tensor& dresidual);                                                      \
  void relu_forward(const Tensor& x, const Tensor& y);                                                        \
  /* dx = dy where y > 0 */                                                                                   \
  void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx);                                    \
  /* y = a + b (same shapes) */                                                                               \
  void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);                                        \
  /* y = relu(a + b): the residual join of a ResNet block */                                                  \
  void add_relu_forward(const Tensor& a, const Tensor& b, const Tensor& y);                                   \
  /* dst += alpha * src (same shapes): gradient accumulation */                                               \
  void axpy(float alpha, const Tensor& src, const Tensor& dst);                                               \
  /* y = alpha * x */                                                                                         \
  void scale(const Tensor& x, float alpha, const Tensor& y);                                                  \
  /* y = x * s[0], s a one-element tensor on x's device (a gradient scaled by an upstream scalar without     \
     reading it back to the host) */                                                                           \
  void mul_scalar(const Tensor& x, const Tensor& s, const Tensor& y);                                         \
  /* y[0] = alpha * (sum of all elements of x), accumulated in double; y is a one-element tensor */           \
  void reduce_sum(const Tensor& x, float alpha, const Tensor& y);                                             \
  void fill(const Tensor& y, float value);                                                                    \
  /* y[N,Ho,Wo,C] = max over the window; argmax[N,Ho,Wo,C] (I32) = flat index h*W+w of the max in x */       \
  void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a);       \
  /* dx = 0, then dx[argmax] += dy */                                                                         \
  void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx);                         \
  /* y[N,C] = mean over H,W of x[N,H,W,C] */                                                                  \
  void global_avg_pool_forward(const Tensor& x, const Tensor& y);                                             \
  void global_avg_pool_backward(const Tensor& dy, const Tensor& dx);                                          \
  /* y[N,C] = x[N,D] w[C,D]^T + bias[C] (bias may be undefined) */                                            \
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y);                 \
  /* dx = dy w; dw = dy^T x; dbias = sum dy (any of dx, dw, dbias may be undefined) */                        \
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,                  \
                       const Tensor& dw, const Tensor& dbias);                                                \
  /* Inverted dropout: mask (U8) = 1 with probability 1-p from a counter-based hash of (seed, index), the     \
     same on every device; y = x * mask / (1-p) */                                                            \
  void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed);         \
  void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p);                     \
  /* Softmax cross-entropy with hard labels (I32 [N]; label < 0 = ignored sample: loss 0, gradient 0):       \
     loss[N] = logsumexp(logits) - logits[label]; dlogits = grad_scale * (softmax - onehot) */                \
  void cross_entropy_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss,                     \
                          const Tensor& dlogits, float grad_scale);                                           \
  /* With soft targets [N,C] (rows sum to 1; a row of all zeros = ignored sample):                           \
     loss[N] = -sum_c t_c log softmax_c; dlogits = grad_scale * (sum_c t_c * softmax - t) */                 \
  void cross_entropy_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss,                    \
                          const Tensor& dlogits, float grad_scale);                                           \
  /* Fusion: every head's cross_entropy_hard / cross_entropy_soft (by which target is defined) in one call    \
     (one kernel launch on the GPU). All heads on one device. */                                              \
  void cross_entropy_multihead(const std::vector<CrossEntropyHead>& heads);                                   \
  /* Great-circle loss, radians on the unit sphere: loss[N] = angle between pred and target (lat, lng          \
     radians [N,2]); pred is [N,3] (any non-zero 3-vector, normalised inside) or [N,2] (lat, lng radians).     \
     dpred = grad_scale * d loss / d pred (may be undefined); 0 where the gradient does not exist. The        \
     per-sample math is geoloc/detail/haversine.hpp, shared by both backends. */                              \
  void haversine_loss(const Tensor& pred, const Tensor& target, const Tensor& loss, const Tensor& dpred,      \
                      float grad_scale);                                                                      \
  /* SGD (PyTorch semantics) on every slot (one launch for all tensors on the GPU):                        \
     g' = g + wd*p; buf = first ? g' : m*buf + (1-dampening)*g'; d = nesterov ? g' + m*buf : buf;             \
     p -= lr*d. A slot whose grad is undefined is skipped. */                                                 \
  void sgd_step(const std::vector<OptimSlot>& slots, float lr, float momentum, float dampening, bool nesterov, \
                bool first_step);                                                                             \
  /* AdamW (decoupled weight decay, bias-corrected, step >= 1) on every slot. */                              \
  void adamw_step(const std::vector<OptimSlot>& slots, float lr, float beta1, float beta2, float eps,         \
                  int64_t step);                                                                              \
  /* The k best references of each query: queries [M,D], refs [R,D] f32; scores [M,k] f32 and index [M,k]     \
     i32, best first, ties broken by the smaller reference index; where R < k the missing entries have index \
     -1 and score -inf (InnerProduct) or +inf (L2). 1 <= k <= kKnnMaxK. ref_chunk: references per tile       \
     (0 = the backend's choice; a tuning knob that never changes the result). */                              \
  void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,     \
                const Tensor& index, int64_t ref_chunk);                                                      \
  /* dst = src converted between f32 and bf16 (round to nearest even, NaN stays NaN), or copied when the     \
     dtypes agree; same number of elements. */                                                                 \
  void convert(const Tensor& src, const Tensor& dst);

namespace cpu {
GEOLOC_BACKEND_DECLARATIONS

}  // namespace cpu

namespace cuda {
GEOLOC_BACKEND_DECLARATIONS
/// True when geoloc was built with CUDA and a device is present.
bool available();
/// Host<->device and device<->device copies of raw bytes (synchronous with respect to the host).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
/// The caching device allocator.
Allocator& allocator(int device);
/// Blocks until the device has finished all work.
void synchronize();
}  // namespace cuda

}  // namespace geoloc
