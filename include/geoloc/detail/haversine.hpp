#pragma once
// Per-element great-circle math of the backend's haversine_loss, shared by the CPU backend
// (src/core/cpu/haversine.cpp) and the CUDA kernel (kernels/haversine.cu). Everything is in radians on the
// unit sphere; multiply by geo::kEarthRadiusKm (geoloc/geo/coords.hpp, the library's one radius) for km.
#include "geoloc/detail/math.hpp"

namespace geoloc::math {

/// Great-circle angle between the direction of v (any non-zero 3-vector, normalised here) and the
/// point (lat, lng) in radians. Uses atan2(|u x t|, u . t), accurate at every distance (haversine's
/// asin loses precision near the antipode). Writes d(angle)/d(v) into g[3]. Where the gradient does
/// not exist (v at the target or its antipode, or |v| == 0) it is taken as 0.
GEOLOC_HD float sphere_angle_vec3(const float v[3], float lat, float lng, float g[3]) {
  const float tx = cosf(lat) * cosf(lng), ty = cosf(lat) * sinf(lng), tz = sinf(lat);
  const float norm = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  g[0] = g[1] = g[2] = 0.0f;
  if (!(norm > 0.0f)) return 0.0f;
  const float ux = v[0] / norm, uy = v[1] / norm, uz = v[2] / norm;
  const float cx = uy * tz - uz * ty, cy = uz * tx - ux * tz, cz = ux * ty - uy * tx;
  const float s = sqrtf(cx * cx + cy * cy + cz * cz);  // sin(angle)
  const float c = ux * tx + uy * ty + uz * tz;         // cos(angle)
  const float angle = atan2f(s, c);
  if (s > 1e-12f) {
    // d angle / d u = -(t - c u) / s  (the component of t orthogonal to u, pointing towards t)
    const float gu[3] = {-(tx - c * ux) / s, -(ty - c * uy) / s, -(tz - c * uz) / s};
    // d u / d v = (I - u u^T) / |v|; gu is already orthogonal to u
    const float dot = gu[0] * ux + gu[1] * uy + gu[2] * uz;
    g[0] = (gu[0] - dot * ux) / norm;
    g[1] = (gu[1] - dot * uy) / norm;
    g[2] = (gu[2] - dot * uz) / norm;
  }
  return angle;
}

/// Great-circle angle between (lat1, lng1) and (lat2, lng2), radians, by the haversine formula in its
/// atan2 form; writes d/d lat1 and d/d lng1 (0 where the points coincide or are antipodal).
GEOLOC_HD float sphere_angle_latlng(float lat1, float lng1, float lat2, float lng2, float* dlat1, float* dlng1) {
  const float sdlat = sinf(0.5f * (lat1 - lat2)), sdlng = sinf(0.5f * (lng1 - lng2));
  const float c1 = cosf(lat1), c2 = cosf(lat2);
  float a = sdlat * sdlat + c1 * c2 * sdlng * sdlng;
  a = fminf(fmaxf(a, 0.0f), 1.0f);
  const float angle = 2.0f * atan2f(sqrtf(a), sqrtf(1.0f - a));
  *dlat1 = *dlng1 = 0.0f;
  const float denom = sqrtf(a * (1.0f - a));  // d angle / d a = 1 / sqrt(a (1 - a))
  if (denom > 1e-12f) {
    // da/dlat1 = sin(dlat/2)cos(dlat/2) - sin(lat1) cos(lat2) sin^2(dlng/2); da/dlng1 = c1 c2 sin(dlng)/2
    const float da_dlat = 0.5f * sinf(lat1 - lat2) - sinf(lat1) * c2 * sdlng * sdlng;
    const float da_dlng = 0.5f * c1 * c2 * sinf(lng1 - lng2);
    *dlat1 = da_dlat / denom;
    *dlng1 = da_dlng / denom;
  }
  return angle;
}

}  // namespace geoloc::math
