#pragma once
// Mixed precision on the GPU: bf16 activations/weights with float32 master weights. On CUDA, these
// backend functions accept bf16 tensors (all arguments of one call in the same dtype; compute in float,
// one rounding to bf16 per output): conv2d_forward / backward_data / backward_filter without bias
// (cuDNN tensor-core math), linear_forward (bias in the epilogue) and linear_backward without dbias
// (cuBLASLt, CUBLAS_COMPUTE_32F), relu_forward / backward, add_forward, add_relu_forward, axpy, scale,
// fill. Every other backend function and bf16 bias gradients throw CudaError("not implemented: ...").
#include <cstdint>

#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

/// dst = src converted between f32 and bf16 (round to nearest even), or copied when the dtypes agree.
/// Same number of elements, one CUDA device. The master-weight step: convert(master_f32, working_bf16).
void convert(const Tensor& src, const Tensor& dst);

namespace ref {
/// f32 -> bf16 rounding to nearest even (NaN stays NaN), as the GPU's __float2bfloat16_rn.
uint16_t f32_to_bf16(float v);
float bf16_to_f32(uint16_t v);
/// CPU reference of cuda::convert (CPU tensors).
void convert(const Tensor& src, const Tensor& dst);
}  // namespace ref

}  // namespace geoloc::cuda
