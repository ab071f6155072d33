#pragma once
// Mixed precision on the GPU (geoloc train --precision bf16): bf16 NHWC activations and gradients, f32
// master weights (the optimiser's), bf16 working copies of the conv/linear weights made in every forward
// (ops::to_dtype), batch-norm parameters and statistics in f32, losses in f32. The bf16 rules of a call are
// backend.hpp's (one dtype per call except the listed f32 arguments; compute in float, one rounding per
// output). On CUDA these functions have bf16 paths: conv2d_forward / backward_data / backward_filter without
// bias (cuDNN tensor-core math), linear_forward (bias in the epilogue) and linear_backward without dbias
// (cuBLASLt, CUBLAS_COMPUTE_32F), relu_forward / backward, add_forward, add_relu_forward, axpy, scale, fill,
// mul_scalar (s f32), reduce_sum (x bf16, y f32), dropout_forward / backward, max_pool2d_forward / backward
// (bf16 dx summed in an f32 scratch, rounded once), global_avg_pool_forward / backward,
// cross_entropy_hard / soft / multihead (logits and dlogits bf16, loss f32), and convert (f32 <-> bf16).
// Not yet (CudaError "not implemented: ..."): batch norm (train, eval, backward, the act fusions),
// conv2d_bn_act_forward, conv/linear bias gradients and conv bias in bf16, bf16 gradients in sgd_step /
// adamw_step, haversine_loss (the coordinate heads convert their output to f32 first). So
// `geoloc train --device cuda --precision bf16` builds and reaches the batch norm, where it stops. Every one
// of them works on the CPU (the bf16 reference). The rounding is math::f32_to_bf16
// (geoloc/detail/math.hpp), the CPU twin of __float2bfloat16_rn.
#include "geoloc/backend.hpp"
