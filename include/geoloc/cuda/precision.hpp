#pragma once
// Mixed precision on the GPU (geoloc train --precision bf16): bf16 NHWC activations and gradients, f32
// master weights (the optimiser's), bf16 working copies of the conv/linear weights made in every forward
// (ops::to_dtype), batch-norm parameters and statistics in f32, per-sample losses in f32. The bf16 rules of a
// call are backend.hpp's (one dtype per call except the listed f32 arguments; compute in float, one rounding
// per output). On CUDA every training function has a bf16 path: conv2d_forward (without bias) /
// backward_data / backward_filter (cuDNN tensor-core math; dbias by the own column sum), linear_forward (bias
// in the epilogue) and linear_backward (cuBLASLt, CUBLAS_COMPUTE_32F; dbias by the own column sum), the five
// batch-norm functions (x, y, residual, dy, dx, dresidual bf16; sums in double; gamma, beta, statistics,
// dgamma, dbeta f32), conv2d_bn_act_forward, relu_forward / backward, add_forward, add_relu_forward, axpy,
// scale, fill, mul_scalar (s f32), reduce_sum (x bf16, y f32), dropout_forward / backward,
// max_pool2d_forward / backward (bf16 dx summed in an f32 scratch, rounded once), global_avg_pool_forward /
// backward, cross_entropy_hard / soft / multihead (logits and dlogits bf16, loss f32), haversine_loss (pred
// and dpred bf16, target and loss f32), sgd_step / adamw_step (bf16 grads; params and states f32), and
// convert (f32 <-> bf16). Exceptions: conv2d_forward with a bf16 bias stays CudaError "not implemented"
// (cuDNN would add the bias to an already rounded output: two roundings; the ResNet convs have no bias), and
// conv2d_bn_act_forward in bf16 rounds twice (cuDNN writes the convolution in bf16 before the batch-norm
// epilogue; the CPU reference rounds once). knn_topk is f32 only. Every bf16 path of an own kernel runs
// under the emulator against the CPU reference (the op table's bf16 rows, ctest cuda_emu_op_table); none has
// run on a GPU yet. The rounding is math::f32_to_bf16 (geoloc/detail/math.hpp), the CPU twin of
// __float2bfloat16_rn.
#include "geoloc/backend.hpp"
