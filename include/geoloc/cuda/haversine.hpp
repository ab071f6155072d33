#pragma once
// Great-circle (haversine) distance loss between predicted coordinates and true (lat, lng), with its
// gradient, in one pass. The per-sample math below is shared by the CUDA kernel (float); the CPU
// reference cuda::ref::haversine_loss evaluates the same formulas in double as an independent check.
#include <cstdint>

#include "geoloc/detail/math.hpp"  // GEOLOC_HD
#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

/// Mean Earth radius (IUGG), km: losses are in kilometres.
constexpr double kEarthRadiusKm = 6371.0088;

enum class CoordFormat : uint8_t {
  LatLngDeg = 0,   ///< pred [N,2]: latitude, longitude in degrees
  UnitVector = 1,  ///< pred [N,3]: a point in R^3, normalised inside the loss (need not be unit length)
};

/// loss[N] = great-circle distance (km) from pred to target ([N,2] lat/lng degrees);
/// dpred = grad_scale * d loss / d pred (same shape as pred; may be undefined: no gradient).
/// Where the gradient is undefined (pred == target, antipodal points, a zero 3-vector) it is 0.
void haversine_loss(const Tensor& pred, const Tensor& target, CoordFormat format, float grad_scale,
                    const Tensor& loss, const Tensor& dpred);

namespace ref {
/// CPU reference in double precision, same contract (CPU tensors).
void haversine_loss(const Tensor& pred, const Tensor& target, CoordFormat format, float grad_scale,
                    const Tensor& loss, const Tensor& dpred);
}  // namespace ref

namespace hav {
constexpr float kDegToRad = 0.017453292519943295f;

/// Distance (km) from pred (lat, lng degrees) to target (lat, lng degrees); g = d distance / d pred.
GEOLOC_HD float latlng_loss(float plat, float plng, float tlat, float tlng, float& g_lat, float& g_lng) {
  const float R = static_cast<float>(kEarthRadiusKm);
  const float p1 = plat * kDegToRad, p2 = tlat * kDegToRad;
  // differences taken in degrees, where they are exact for nearby points (Sterbenz), then scaled: taking
  // them in radians would lose ~0.6 m to the rounding of each angle
  const float dp = (plat - tlat) * kDegToRad, dl = (plng - tlng) * kDegToRad;
  const float sp = sinf(0.5f * dp), sl = sinf(0.5f * dl), c1 = cosf(p1), c2 = cosf(p2);
  float a = sp * sp + c1 * c2 * sl * sl;
  a = a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a);
  const float d = 2.0f * R * atan2f(sqrtf(a), sqrtf(1.0f - a));
  if (a <= 0.0f || a >= 1.0f) {
    g_lat = g_lng = 0.0f;
  } else {
    // d = 2R asin(sqrt a)  =>  dd/da = R / sqrt(a (1 - a))
    const float dd_da = R / sqrtf(a * (1.0f - a));
    const float da_dp1 = 0.5f * sinf(dp) - sinf(p1) * c2 * sl * sl;
    const float da_dl1 = 0.5f * c1 * c2 * sinf(dl);
    g_lat = dd_da * da_dp1 * kDegToRad;
    g_lng = dd_da * da_dl1 * kDegToRad;
  }
  return d;
}

/// Distance (km) from the direction of pred (x, y, z) to target (lat, lng degrees); g = d distance / d pred.
GEOLOC_HD float unitvec_loss(float x, float y, float z, float tlat, float tlng, float& gx, float& gy,
                             float& gz) {
  const float R = static_cast<float>(kEarthRadiusKm);
  const float p2 = tlat * kDegToRad, l2 = tlng * kDegToRad;
  const float tx = cosf(p2) * cosf(l2), ty = cosf(p2) * sinf(l2), tz = sinf(p2);
  const float nrm = sqrtf(x * x + y * y + z * z);
  gx = gy = gz = 0.0f;
  if (!(nrm > 0.0f)) return 0.5f * 3.14159265358979f * R;  // no direction: a quarter circle, no gradient
  const float ux = x / nrm, uy = y / nrm, uz = z / nrm;
  const float c = ux * tx + uy * ty + uz * tz;
  const float cx = uy * tz - uz * ty, cy = uz * tx - ux * tz, cz = ux * ty - uy * tx;
  const float s = sqrtf(cx * cx + cy * cy + cz * cz);
  const float d = R * atan2f(s, c);
  if (s > 1e-7f) {
    // d theta / d u on the sphere = -(t - c u) / s; through the normalisation divide by |p|
    const float k = -R / (s * nrm);
    gx = k * (tx - c * ux);
    gy = k * (ty - c * uy);
    gz = k * (tz - c * uz);
  }
  return d;
}
}  // namespace hav

}  // namespace geoloc::cuda
