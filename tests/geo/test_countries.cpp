#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "geoloc/error.hpp"
#include "geoloc/geo/countries.hpp"
#include "country_index.hpp"

using namespace geoloc::geo;

namespace {
const CountryIndex& index50() { return geoloc::test::country_index_50m(); }
}  // namespace

TEST_CASE("capital cities resolve to their ISO 3166-1 numeric code") {
  struct Capital {
    const char* name;
    LatLng where;
    int iso;
  };
  const Capital capitals[] = {
      {"Paris", {48.8566, 2.3522}, 250},       {"Canberra", {-35.2809, 149.13}, 36},
      {"Brasilia", {-15.7939, -47.8828}, 76},  {"Tokyo", {35.6762, 139.6503}, 392},
      {"Nairobi", {-1.2921, 36.8219}, 404},    {"Washington", {38.9072, -77.0369}, 840},
      {"Ottawa", {45.4215, -75.6972}, 124},    {"Buenos Aires", {-34.6037, -58.3816}, 32},
      {"New Delhi", {28.6139, 77.209}, 356},   {"Pretoria", {-25.7479, 28.2293}, 710},
      {"Maseru (Lesotho, a hole in South Africa)", {-29.31, 27.48}, 426},
      {"Bern", {46.948, 7.4474}, 756},         {"Wellington", {-41.2865, 174.7762}, 554},
      {"Chukotka west of 180", {67.0, 172.0}, 643}, {"Chukotka west of -180", {66.0, -172.0}, 643},
      {"Viti Levu (Fiji)", {-17.8, 178.0}, 242}, {"Taveuni (Fiji, east of 180)", {-16.85, -179.97}, 242},
  };
  for (const Capital& c : capitals) {
    const std::string name = c.name;
    CAPTURE(name);
    const Country* country = index50().lookup(c.where);
    REQUIRE(country != nullptr);
    CHECK(country->iso_n3 == c.iso);
    CHECK(index50().is_land(c.where));
  }
  CHECK(index50().lookup({48.8566, 2.3522})->name == "France");
}

TEST_CASE("Antarctica around the pole, disputed areas, the open sea") {
  CHECK(index50().country_code({-89.9, 0}) == 10);
  CHECK(index50().country_code({-80, 100}) == 10);
  // The data cut a 0.001-degree cap (111 m) around the pole out of Antarctica as a hole.
  CHECK(index50().is_land({-89.99, 0}));
  CHECK_FALSE(index50().is_land({-90, 0}));
  const Country* kosovo = index50().lookup({42.6629, 21.1655});  // Pristina
  REQUIRE(kosovo != nullptr);
  CHECK(kosovo->iso_n3 == -1);
  CHECK(kosovo->name == "Kosovo");

  const LatLng atlantic{30.0, -40.0};
  CHECK(index50().lookup(atlantic) == nullptr);
  CHECK(index50().country_code(atlantic) == -1);
  CHECK_FALSE(index50().is_land(atlantic));
  const LatLng points[] = {{48.8566, 2.3522}, atlantic};
  CHECK(index50().country_codes(points) == std::vector<int>{250, -1});
}

TEST_CASE("nearest land") {
  const LatLng paris{48.8566, 2.3522};
  const NearestLand on_land = index50().nearest_land(paris);
  CHECK(on_land.distance_km == 0.0);
  CHECK(on_land.point == paris);

  // In the Channel approaches, 60 km north of Ushant (48.46 N, 5.09 W), the closest land.
  const LatLng sea{49.0, -5.2};
  const NearestLand near = index50().nearest_land(sea);
  CHECK(near.distance_km > 50.0);
  CHECK(near.distance_km < 70.0);
  CHECK(haversine_km(sea, near.point) == doctest::Approx(near.distance_km).epsilon(1e-6));
  CHECK(index50().country_code(destination(sea, initial_bearing_deg(sea, near.point), near.distance_km + 1.0)) ==
        250);  // a little past the nearest point is France
  // Point Nemo is about 2700 km from the nearest land.
  const NearestLand nemo = index50().nearest_land({-48.876, -123.393});
  CHECK(nemo.distance_km == doctest::Approx(2690).epsilon(0.03));
}

TEST_CASE("loading is fast and errors are IoErrors") {
  const auto t0 = std::chrono::steady_clock::now();
  const CountryIndex idx = CountryIndex::load_default("110m");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(s < 1.0);
  CHECK(idx.countries().size() == 177);
  CHECK(idx.country_code({48.8566, 2.3522}) == 250);
  CHECK(index50().countries().size() == 241);
  CHECK_THROWS_AS(CountryIndex::load("/nonexistent.geojson", "/nonexistent.geojson"), geoloc::IoError);
  CHECK_THROWS_AS(index50().lookup({91, 0}), geoloc::ValueError);
}

TEST_CASE("country names by ISO code; none for the sea or a territory without a code") {
  const auto idx = geoloc::geo::CountryIndex::load_default("110m");
  CHECK(idx.name_of(392) == "Japan");
  CHECK(idx.name_of(250) == "France");
  CHECK(idx.name_of(-1).empty());
  CHECK(idx.name_of(999).empty());
}
