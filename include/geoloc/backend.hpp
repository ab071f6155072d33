#pragma once
// The kernel layer under the autograd ops. `cpu::f` and `cuda::f` have identical signatures and
// contracts; `dispatch` picks by the tensors' device. Every function writes into outputs the caller
// has already allocated with the documented shape on the same device, and overwrites them (no
// accumulation) unless its comment says otherwise. Layouts: activations NHWC [N, H, W, C]; conv
// weights OHWI [Cout, KH, KW, Cin] (cuDNN's NHWC filter layout, "KRSC"); linear weights [C_out, D_in].
// Shapes are validated by the ops in ops.hpp before they reach this layer.
#include <cstdint>
#include <functional>

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

#define GEOLOC_BACKEND_DECLARATIONS                                                                           \
  /* y[N,Ho,Wo,Co] = conv(x[N,H,W,Ci], w[Co,KH,KW,Ci]) + bias[Co] (bias may be undefined) */                \
  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,                  \
                      const Conv2dArgs& a);                                                                   \
  /* dx = conv^T(dy, w) */                                                                                    \
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a);        \
  /* dw = sum over batch of x (*) dy; dbias = sum of dy over N,H,W (dbias may be undefined) */               \
  void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,       \
                              const Conv2dArgs& a);                                                           \
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
  void softmax_xent_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss,                      \
                         const Tensor& dlogits, float grad_scale);                                            \
  /* With soft targets [N,C] (rows sum to 1; a row of all zeros = ignored sample):                           \
     loss[N] = -sum_c t_c log softmax_c; dlogits = grad_scale * (sum_c t_c * softmax - t) */                 \
  void softmax_xent_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss,                     \
                         const Tensor& dlogits, float grad_scale);                                            \
  /* SGD (PyTorch semantics): g' = g + wd*p; buf = first ? g' : m*buf + (1-dampening)*g';                    \
     d = nesterov ? g' + m*buf : buf; p -= lr*d. momentum_buf may be undefined when momentum == 0. */         \
  void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, float lr,                \
                float momentum, float dampening, float weight_decay, bool nesterov, bool first_step);         \
  /* AdamW (decoupled weight decay, bias-corrected, step >= 1). */                                            \
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr,        \
                  float beta1, float beta2, float eps, float weight_decay, int64_t step);

namespace cpu {
GEOLOC_BACKEND_DECLARATIONS

// CPU-only inference fusion (no CUDA counterpart; nn/resnet.cpp calls it under `device.is_cpu()` and
// falls back to the separate ops elsewhere). Same values as conv2d -> batch_norm(eval) -> add -> relu,
// up to float rounding, in one pass over the output; checked by the nn parity tests (eval outputs).

/// conv2d followed by eval-mode batch norm (running statistics), plus the residual (may be undefined)
/// and ReLU if asked: BN is folded into a per-channel scale and shift applied in the GEMM's epilogue.
void conv2d_bn_fused_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& residual, bool relu, const Tensor& y, const Conv2dArgs& a);

// CPU-only training fusion (no CUDA counterpart; ops::batch_norm_act, used by nn/resnet.cpp on the CPU).

/// batch_norm_forward_train, then + residual (may be undefined), then ReLU if asked, all in the apply
/// pass: y = relu?((x - mean) * invstd * gamma + beta + residual). Same statistics and running updates.
void batch_norm_act_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& running_mean, const Tensor& running_var, float momentum,
                                  float eps, const Tensor& residual, bool relu, const Tensor& y,
                                  const Tensor& save_mean, const Tensor& save_invstd);
/// Gradients of relu(batch_norm_train(x)) (no residual) given dy of the ReLU's output: ReLU's backward is
/// folded into batch_norm_backward, its mask recomputed from x, beta and the saved statistics exactly as
/// the forward computed it (dgamma/dbeta/dx may be undefined).
void batch_norm_relu_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& save_mean, const Tensor& save_invstd, const Tensor& dx,
                              const Tensor& dgamma, const Tensor& dbeta);
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
