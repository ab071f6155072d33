#pragma once
// Mixed precision on the GPU: bf16 activations/weights with float32 master weights. On CUDA, these
// backend functions accept bf16 tensors (all arguments of one call in the same dtype; compute in float,
// one rounding to bf16 per output): conv2d_forward / backward_data / backward_filter without bias
// (cuDNN tensor-core math), linear_forward (bias in the epilogue) and linear_backward without dbias
// (cuBLASLt, CUBLAS_COMPUTE_32F), relu_forward / backward, add_forward, add_relu_forward, axpy, scale,
// fill, and convert (f32 <-> bf16, the master-weight step). Every other backend function and bf16 bias
// gradients throw CudaError("not implemented: ..."). The rounding is math::f32_to_bf16
// (geoloc/detail/math.hpp), the CPU twin of __float2bfloat16_rn.
#include "geoloc/backend.hpp"
