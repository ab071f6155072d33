// The great-circle (haversine) loss of the CPU backend: per-sample math from geoloc/detail/haversine.hpp
// (shared with the CUDA kernel), one pass for the loss and its gradient.
#include "geoloc/detail/haversine.hpp"

#include <cstdint>

#include "bf16.hpp"
#include "common.hpp"

namespace geoloc::cpu {
using namespace detail;

void haversine_loss(const Tensor& pred, const Tensor& target, const Tensor& loss, const Tensor& dpred,
                    float grad_scale) {
  if (bf16::widened("haversine_loss", {pred, dpred}, [&](bf16::Widen& v) {
        haversine_loss(v.in(pred), v.in(target), v.out(loss), v.out(dpred), grad_scale);
      }))
    return;
  const int64_t n = pred.dim(0), d = pred.dim(1);
  const float *P = f(pred), *T = f(target);
  float* L = f(loss);
  float* G = dpred.defined() ? f(dpred) : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    float g[3];
    const float lat = T[2 * i], lng = T[2 * i + 1];
    L[i] = d == 3 ? math::sphere_angle_vec3(P + 3 * i, lat, lng, g)
                  : math::sphere_angle_latlng(P[2 * i], P[2 * i + 1], lat, lng, &g[0], &g[1]);
    if (G)
      for (int64_t j = 0; j < d; ++j) G[d * i + j] = grad_scale * g[j];
  }
}

}  // namespace geoloc::cpu
