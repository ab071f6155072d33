#include "geoloc/earth/projection.hpp"

#include <bit>
#include <cmath>
#include <numbers>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::earth {
namespace {
constexpr double kDeg = std::numbers::pi / 180.0;

geo::Vec3 normalised(geo::Vec3 v) {
  const double n = std::sqrt(v.x * v.x + v.y * v.y + v.z * v.z);
  return {v.x / n, v.y / n, v.z / n};
}

// atan2 accurate to about 1e-5 rad (0.003 source pixels) written with selects only, so that the
// per-pixel loop vectorises; std::atan2 would make it several times slower.
inline float fast_atan2(float y, float x) {
  const float ax = std::fabs(x), ay = std::fabs(y);
  // Plain comparisons rather than fmax/fmin, whose NaN rules stop GCC from vectorising.
  const float mx = ax > ay ? ax : ay, mn = ax > ay ? ay : ax;
  const float a = mn / (mx > 1e-30f ? mx : 1e-30f);
  const float s = a * a;
  // Minimax polynomial for atan on [0, 1].
  float r = ((-0.0464964749f * s + 0.15931422f) * s - 0.327622764f) * s * a + a;
  r = ay > ax ? 1.57079637f - r : r;
  r = x < 0.f ? 3.14159274f - r : r;
  return y < 0.f ? -r : r;
}
// sqrt(q) for q >= 0 to ~1e-6 relative, from the classic reciprocal-square-root bit trick and two
// Newton steps: std::sqrt must be able to set errno, which keeps GCC from vectorising the loop.
inline float sqrt_nonneg(float q) {
  float y = std::bit_cast<float>(0x5f3759dfu - (std::bit_cast<uint32_t>(q) >> 1));
  y = y * (1.5f - 0.5f * q * y * y);
  y = y * (1.5f - 0.5f * q * y * y);
  return q * y;  // 0 for q = 0 (y stays finite)
}

// Pass 1 of render_view (vectorised): pixel -> direction -> continuous source coordinates. The
// direction needs no normalising: both atan2s are scale-invariant.
void source_coordinates(const Raster& raster, const ViewFrame& f, int width, int height, float* xs, float* ys) {
  const float scale = static_cast<float>(2.0 * f.half_tan / width);
  const float cx = static_cast<float>(f.centre.x), cy = static_cast<float>(f.centre.y),
              cz = static_cast<float>(f.centre.z);
  const float rx = static_cast<float>(f.right.x), ry = static_cast<float>(f.right.y),
              rz = static_cast<float>(f.right.z);
  const float ux = static_cast<float>(f.up.x), uy = static_cast<float>(f.up.y), uz = static_cast<float>(f.up.z);
  const float px_per_rad_x = static_cast<float>(raster.width() / (2.0 * std::numbers::pi));
  const float px_per_rad_y = static_cast<float>(raster.height() / std::numbers::pi);
  for (int row = 0; row < height; ++row) {
    const float b = (0.5f * height - row - 0.5f) * scale;
    const float bx = cx + b * ux, by = cy + b * uy, bz = cz + b * uz;
    float* xr = xs + row * width;
    float* yr = ys + row * width;
    for (int col = 0; col < width; ++col) {
      const float a = (col + 0.5f - 0.5f * width) * scale;
      const float dx = bx + a * rx, dy = by + a * ry, dz = bz + a * rz;
      const float lat = fast_atan2(dz, sqrt_nonneg(dx * dx + dy * dy));
      const float lng = fast_atan2(dy, dx);
      xr[col] = (lng + 3.14159265f) * px_per_rad_x - 0.5f;
      yr[col] = (1.57079633f - lat) * px_per_rad_y - 0.5f;
    }
  }
}
}  // namespace

ViewFrame view_frame(const ViewGeometry& g) {
  geo::validate(g.centre, "view centre");
  GEOLOC_CHECK(std::isfinite(g.heading_deg), ValueError, "view heading ", g.heading_deg, " is not finite");
  GEOLOC_CHECK(g.fov_km > 0.0 && g.fov_km < 10000.0, ValueError, "view fov ", g.fov_km,
               " km is outside (0, 10000)");
  ViewFrame f;
  f.centre = geo::to_unit(g.centre);
  // East = z x c; at a pole it vanishes, and any tangent direction will do.
  geo::Vec3 east{-f.centre.y, f.centre.x, 0.0};
  if (std::hypot(east.x, east.y) < 1e-12) east = {0.0, 1.0, 0.0};
  east = normalised(east);
  const geo::Vec3 c = f.centre;
  const geo::Vec3 north{c.y * east.z - c.z * east.y, c.z * east.x - c.x * east.z, c.x * east.y - c.y * east.x};
  // Up points along the heading (clockwise from north); right is up turned 90 degrees clockwise.
  const double h = g.heading_deg * kDeg, ch = std::cos(h), sh = std::sin(h);
  f.up = {ch * north.x + sh * east.x, ch * north.y + sh * east.y, ch * north.z + sh * east.z};
  f.right = {ch * east.x - sh * north.x, ch * east.y - sh * north.y, ch * east.z - sh * north.z};
  f.half_tan = std::tan(g.fov_km / 2.0 / geo::kEarthRadiusKm);
  return f;
}

geo::LatLng view_pixel_location(const ViewFrame& f, int width, int height, double col, double row) {
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "view size ", width, "x", height, " must be positive");
  const double scale = 2.0 * f.half_tan / width;  // tangent-plane units per pixel (square pixels)
  const double a = (col + 0.5 - width / 2.0) * scale, b = (height / 2.0 - row - 0.5) * scale;
  return geo::from_unit({f.centre.x + a * f.right.x + b * f.up.x, f.centre.y + a * f.right.y + b * f.up.y,
                         f.centre.z + a * f.right.z + b * f.up.z});
}

void render_view(const Raster& raster, const ViewFrame& f, int width, int height, uint8_t* out, float* scratch) {
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "view size ", width, "x", height, " must be positive");
  GEOLOC_CHECK(raster.width() > 0, ValueError, "render_view: empty raster");
  const int n = width * height;
  float* xs = scratch;
  float* ys = scratch + n;
  source_coordinates(raster, f, width, height, xs, ys);
  // Pass 2 (gathers): bilinear samples.
  for (int i = 0; i < n; ++i) {
    float rgb[3];
    raster.sample(xs[i], ys[i], rgb);
    for (int k = 0; k < 3; ++k) out[i * 3 + k] = static_cast<uint8_t>(rgb[k] + 0.5f);
  }
}

void render_view(const Raster& raster, const ViewGeometry& g, int width, int height, uint8_t* out) {
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "view size ", width, "x", height, " must be positive");
  std::vector<float> scratch(2 * static_cast<size_t>(width) * height);
  render_view(raster, view_frame(g), width, height, out, scratch.data());
}

}  // namespace geoloc::earth
