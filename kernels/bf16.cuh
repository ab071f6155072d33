#pragma once
// Internal to kernels/: storage <-> float for the kernels that take f32 or bf16 tensors. The bf16 paths
// load to float, compute in float and round once (nearest even) on store: the contract's "one rounding
// per output element", whose CPU reference is src/core/cpu/bf16.hpp.
#include <cuda_bf16.h>

#include <cstdint>

namespace geoloc::cuda::dev {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

}  // namespace geoloc::cuda::dev
