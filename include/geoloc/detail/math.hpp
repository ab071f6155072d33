#pragma once
// Per-element math shared by the CPU backend and the CUDA kernels, so that the CPU tests already
// check the arithmetic and the GPU tests check indexing and launches.
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GEOLOC_HD __host__ __device__ __forceinline__
#else
#define GEOLOC_HD inline
#endif

namespace geoloc::math {

/// max(x, 0) with NaN propagated, as PyTorch's relu (-0 gives +0).
GEOLOC_HD float relu(float x) { return x > 0.0f || x != x ? x : 0.0f; }

/// One SGD update (PyTorch semantics); returns the new parameter and updates buf.
GEOLOC_HD float sgd_update(float p, float g, float& buf, float lr, float momentum, float dampening, float wd,
                           bool nesterov, bool first_step) {
  float d = g + wd * p;
  if (momentum != 0.0f) {
    buf = first_step ? d : momentum * buf + (1.0f - dampening) * d;
    d = nesterov ? d + momentum * buf : buf;
  }
  return p - lr * d;
}

/// One AdamW update with decoupled weight decay; bc1 = 1 - beta1^step, bc2 = 1 - beta2^step.
GEOLOC_HD float adamw_update(float p, float g, float& m, float& v, float lr, float beta1, float beta2, float eps,
                             float wd, float bc1, float bc2) {
  p *= 1.0f - lr * wd;
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  float denom = sqrtf(v / bc2) + eps;
  return p - lr * (m / bc1) / denom;
}

/// f32 -> bf16 bits, rounding to nearest even; a NaN stays a (quiet) NaN with its sign. The CPU twin of
/// the GPU's __float2bfloat16_rn.
GEOLOC_HD uint16_t f32_to_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
/// bf16 bits -> f32 (exact).
GEOLOC_HD float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

}  // namespace geoloc::math
