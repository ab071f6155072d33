#pragma once
// Coordinates on the sphere: latitude/longitude in degrees, unit vectors, great-circle geometry.
// Everything here is a sphere model of the Earth (the WGS84 flattening changes distances by < 0.5 %).
#include <span>
#include <string>
#include <string_view>

namespace geoloc::geo {

/// Mean Earth radius in km (IUGG R1), the default radius of every distance function.
inline constexpr double kEarthRadiusKm = 6371.0088;

/// A point on the Earth: latitude in [-90, 90], longitude in [-180, 180], degrees.
struct LatLng {
  double lat = 0.0;
  double lng = 0.0;
  friend bool operator==(const LatLng&, const LatLng&) = default;
};

/// A point in 3-D; unit length when it stands for a position on the sphere.
struct Vec3 {
  double x = 0.0, y = 0.0, z = 0.0;
};

/// Throws ValueError when `p` is NaN/infinite or out of range; `where` (e.g. "points row 17")
/// starts the message.
void validate(LatLng p, std::string_view where = "coordinate");
/// validate() on every point; the message names the first bad row ("<name> row <i>").
void validate_all(std::span<const LatLng> points, std::string_view name = "points");

/// The unit vector of `p` (x towards (0, 0), z towards the North Pole).
Vec3 to_unit(LatLng p);
/// The coordinate of direction `v` (any non-zero length); longitude in [-180, 180].
LatLng from_unit(Vec3 v);

/// Great-circle distance in km (haversine formula, accurate at all distances).
double haversine_km(LatLng a, LatLng b, double radius_km = kEarthRadiusKm);

/// Weighted mean position on the sphere: the normalised weighted sum of unit vectors, so it is
/// correct across the antimeridian and at the poles. Weights default to 1 and must be >= 0.
/// Throws ValueError when empty, when sizes differ, or when the points cancel out (e.g. two
/// antipodes), because the mean direction is then undefined.
LatLng spherical_mean(std::span<const LatLng> points, std::span<const double> weights = {});

/// Initial bearing (forward azimuth) from `from` to `to` in degrees clockwise from north, [0, 360).
double initial_bearing_deg(LatLng from, LatLng to);

/// The point reached from `from` after `distance_km` along the great circle leaving at `bearing_deg`.
LatLng destination(LatLng from, double bearing_deg, double distance_km, double radius_km = kEarthRadiusKm);

/// A short "lat, lng" text for messages.
std::string to_string(LatLng p);

}  // namespace geoloc::geo
