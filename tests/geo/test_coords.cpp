#include <doctest/doctest.h>
#include <s2/s2earth.h>
#include <s2/s2latlng.h>

#include <cmath>
#include <string>

#include "geoloc/error.hpp"
#include "geoloc/geo/coords.hpp"

using namespace geoloc::geo;

namespace {
const LatLng kParis{48.8566, 2.3522}, kNewYork{40.7128, -74.0060};

double s2_distance_km(LatLng a, LatLng b) {
  return S2LatLng::FromDegrees(a.lat, a.lng).GetDistance(S2LatLng::FromDegrees(b.lat, b.lng)).radians() * kEarthRadiusKm;
}
}  // namespace

TEST_CASE("haversine: Paris to New York and agreement with s2geometry") {
  CHECK(haversine_km(kParis, kNewYork) == doctest::Approx(5837).epsilon(0.002));
  CHECK(haversine_km(kParis, kNewYork) == doctest::Approx(s2_distance_km(kParis, kNewYork)).epsilon(1e-9));
  CHECK(haversine_km(kParis, kParis) == 0.0);
  // antipodes: half the circumference; a custom radius scales linearly
  CHECK(haversine_km({0, 0}, {0, 180}) == doctest::Approx(M_PI * kEarthRadiusKm));
  CHECK(haversine_km({10, 20}, {-10, -160}, 1.0) == doctest::Approx(M_PI));
  CHECK(haversine_km({0, 179.5}, {0, -179.5}) == doctest::Approx(111.195).epsilon(1e-4));
}

TEST_CASE("unit vectors round trip, including poles") {
  for (LatLng p : {LatLng{0, 0}, LatLng{45, 90}, LatLng{-33.9, 151.2}, LatLng{89.9999, -120}, LatLng{-90, 0}}) {
    const Vec3 u = to_unit(p);
    CHECK(std::sqrt(u.x * u.x + u.y * u.y + u.z * u.z) == doctest::Approx(1.0));
    const S2Point s = S2LatLng::FromDegrees(p.lat, p.lng).ToPoint();
    CHECK(u.x == doctest::Approx(s.x()));
    CHECK(u.z == doctest::Approx(s.z()));
    const LatLng q = from_unit(u);
    CHECK(q.lat == doctest::Approx(p.lat));
    if (std::abs(p.lat) < 90) CHECK(q.lng == doctest::Approx(p.lng));
  }
}

TEST_CASE("spherical mean across the antimeridian and near the poles") {
  const LatLng across[] = {{10, 179}, {10, -179}};
  const LatLng m = spherical_mean(across);
  CHECK(std::abs(std::abs(m.lng) - 180) < 1e-9);  // a naive average of longitudes would give 0
  CHECK(m.lat == doctest::Approx(10.0).epsilon(1e-3));

  const LatLng polar[] = {{89, 0}, {89, 90}, {89, 180}, {89, -90}};
  CHECK(spherical_mean(polar).lat == doctest::Approx(90.0));

  const LatLng two[] = {{0, 0}, {0, 90}};
  const double w[] = {3, 1};
  const LatLng wm = spherical_mean(two, w);
  CHECK(wm.lat == doctest::Approx(0.0));
  CHECK(wm.lng == doctest::Approx(std::atan2(1.0, 3.0) * 180 / M_PI));

  const LatLng antipodes[] = {{0, 0}, {0, 180}};
  CHECK_THROWS_AS(spherical_mean(antipodes), geoloc::ValueError);
  CHECK_THROWS_AS(spherical_mean({}), geoloc::ValueError);
  const double negative[] = {1, -1};
  CHECK_THROWS_AS(spherical_mean(two, negative), geoloc::ValueError);
}

TEST_CASE("bearing and destination") {
  CHECK(initial_bearing_deg({0, 0}, {10, 0}) == doctest::Approx(0.0));
  CHECK(initial_bearing_deg({0, 0}, {0, 10}) == doctest::Approx(90.0));
  CHECK(initial_bearing_deg({0, 10}, {0, 0}) == doctest::Approx(270.0));
  CHECK(initial_bearing_deg(kParis, kNewYork) == doctest::Approx(291.79).epsilon(1e-3));
  // Round trip: going the computed distance along the computed bearing arrives at the target.
  const LatLng cases[][2] = {{kParis, kNewYork}, {{-33.87, 151.21}, {51.51, -0.13}}, {{89.5, 10}, {89.5, -170}},
                             {{10, 179.5}, {-5, -178}}};
  for (const auto& c : cases) {
    const LatLng d = destination(c[0], initial_bearing_deg(c[0], c[1]), haversine_km(c[0], c[1]));
    CHECK(haversine_km(d, c[1]) < 1e-6);
  }
  // 1000 km due north from the equator is 1000 / R radians of latitude.
  CHECK(destination({0, 30}, 0, 1000).lat == doctest::Approx(1000 / kEarthRadiusKm * 180 / M_PI));
  CHECK(destination({0, 30}, 0, 1000).lng == doctest::Approx(30.0));
}

TEST_CASE("validation names the row") {
  CHECK_NOTHROW(validate({90, -180}));
  CHECK_THROWS_AS(validate({91, 0}), geoloc::ValueError);
  CHECK_THROWS_AS(validate({0, 180.5}), geoloc::ValueError);
  const LatLng pts[] = {{0, 0}, {1, 1}, {NAN, 0}};
  try {
    validate_all(pts, "photos");
    FAIL("expected a ValueError");
  } catch (const geoloc::ValueError& e) {
    CHECK(std::string(e.what()).find("photos row 2") != std::string::npos);
    CHECK(std::string(e.what()).find("latitude") != std::string::npos);
  }
  const LatLng far[] = {{0, 0}, {91, 0}};
  CHECK_THROWS_WITH_AS(validate_all(far), doctest::Contains("points row 1: latitude 91"), geoloc::ValueError);
}
