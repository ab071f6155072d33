#include "geoloc/geo/coords.hpp"

#include <cmath>
#include <numbers>

#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {
constexpr double kDeg = std::numbers::pi / 180.0;
}

void validate(LatLng p, std::string_view where) {
  GEOLOC_CHECK(std::isfinite(p.lat), ValueError, where, ": latitude ", p.lat, " is not a finite number");
  GEOLOC_CHECK(std::isfinite(p.lng), ValueError, where, ": longitude ", p.lng, " is not a finite number");
  GEOLOC_CHECK(p.lat >= -90.0 && p.lat <= 90.0, ValueError, where, ": latitude ", p.lat, " is outside [-90, 90]");
  GEOLOC_CHECK(p.lng >= -180.0 && p.lng <= 180.0, ValueError, where, ": longitude ", p.lng,
               " is outside [-180, 180]");
}

void validate_all(std::span<const LatLng> points, std::string_view name) {
  for (std::size_t i = 0; i < points.size(); ++i) {
    const LatLng p = points[i];
    // The cheap test first; only a bad point pays for building the message.
    if (!(p.lat >= -90.0 && p.lat <= 90.0 && p.lng >= -180.0 && p.lng <= 180.0))
      validate(p, detail::cat(name, " row ", i));
  }
}

Vec3 to_unit(LatLng p) {
  const double phi = p.lat * kDeg, lam = p.lng * kDeg;
  const double c = std::cos(phi);
  return {c * std::cos(lam), c * std::sin(lam), std::sin(phi)};
}

LatLng from_unit(Vec3 v) {
  // atan2 on both axes keeps full precision near the poles, where asin(z) would not.
  return {std::atan2(v.z, std::hypot(v.x, v.y)) / kDeg, std::atan2(v.y, v.x) / kDeg};
}

double haversine_km(LatLng a, LatLng b, double radius_km) {
  const double dphi = (b.lat - a.lat) * kDeg, dlam = (b.lng - a.lng) * kDeg;
  const double s1 = std::sin(dphi / 2), s2 = std::sin(dlam / 2);
  double h = s1 * s1 + std::cos(a.lat * kDeg) * std::cos(b.lat * kDeg) * s2 * s2;
  h = std::min(1.0, h);  // rounding can push antipodal pairs just above 1
  return 2.0 * radius_km * std::asin(std::sqrt(h));
}

LatLng spherical_mean(std::span<const LatLng> points, std::span<const double> weights) {
  GEOLOC_CHECK(!points.empty(), ValueError, "spherical_mean: no points");
  GEOLOC_CHECK(weights.empty() || weights.size() == points.size(), ValueError, "spherical_mean: ", points.size(),
               " points but ", weights.size(), " weights");
  Vec3 s;
  double total = 0.0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const double w = weights.empty() ? 1.0 : weights[i];
    GEOLOC_CHECK(w >= 0.0 && std::isfinite(w), ValueError, "spherical_mean: weight ", i, " is ", w);
    const Vec3 u = to_unit(points[i]);
    s.x += w * u.x;
    s.y += w * u.y;
    s.z += w * u.z;
    total += w;
  }
  GEOLOC_CHECK(total > 0.0, ValueError, "spherical_mean: the weights sum to zero");
  // A resultant much shorter than the total weight means the points nearly cancel (spread over
  // the whole sphere or antipodal); its direction is then noise.
  const double len = std::sqrt(s.x * s.x + s.y * s.y + s.z * s.z);
  GEOLOC_CHECK(len > 1e-12 * total, ValueError, "spherical_mean: the points cancel out (e.g. antipodes); "
               "their mean position is undefined");
  return from_unit(s);
}

double initial_bearing_deg(LatLng from, LatLng to) {
  const double p1 = from.lat * kDeg, p2 = to.lat * kDeg, dl = (to.lng - from.lng) * kDeg;
  const double y = std::sin(dl) * std::cos(p2);
  const double x = std::cos(p1) * std::sin(p2) - std::sin(p1) * std::cos(p2) * std::cos(dl);
  const double b = std::atan2(y, x) / kDeg;
  return b < 0 ? b + 360.0 : b;
}

LatLng destination(LatLng from, double bearing_deg, double distance_km, double radius_km) {
  GEOLOC_CHECK(radius_km > 0, ValueError, "destination: radius ", radius_km, " km is not positive");
  // Rotating the start vector in the plane spanned by it and the local bearing direction is
  // exact everywhere, including at the poles where the lat/lng formulae lose precision.
  const double d = distance_km / radius_km, th = bearing_deg * kDeg;
  const double p1 = from.lat * kDeg, l1 = from.lng * kDeg;
  const Vec3 u = to_unit(from);
  const Vec3 north{-std::sin(p1) * std::cos(l1), -std::sin(p1) * std::sin(l1), std::cos(p1)};
  const Vec3 east{-std::sin(l1), std::cos(l1), 0.0};
  const double cn = std::cos(th), ce = std::sin(th), cd = std::cos(d), sd = std::sin(d);
  return from_unit({u.x * cd + (north.x * cn + east.x * ce) * sd, u.y * cd + (north.y * cn + east.y * ce) * sd,
                    u.z * cd + (north.z * cn + east.z * ce) * sd});
}

std::string to_string(LatLng p) { return detail::cat(p.lat, ", ", p.lng); }

}  // namespace geoloc::geo
