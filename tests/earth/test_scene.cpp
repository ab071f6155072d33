#include <doctest/doctest.h>

#include <string>

#include "fixtures.hpp"
#include "geoloc/earth/scene.hpp"
#include "geoloc/error.hpp"

using namespace geoloc;
using namespace geoloc::earth;

TEST_CASE("scene rule on known places") {
  struct Place {
    const char* name;
    geo::LatLng p;
    Scene want;
  };
  const Place places[] = {
      {"Sahara (Algeria)", {23.0, 10.0}, Scene::Desert},     {"Rub al Khali", {22.0, 47.0}, Scene::Desert},
      {"Australian outback", {-25.0, 130.0}, Scene::Desert}, {"Amazon", {-3.0, -62.0}, Scene::Forest},
      {"Congo basin", {0.0, 20.0}, Scene::Forest},           {"Siberian taiga", {60.0, 100.0}, Scene::Forest},
      {"Greenland interior", {72.0, -40.0}, Scene::IceSnow}, {"East Antarctica", {-80.0, 0.0}, Scene::IceSnow},
      {"mid-Pacific", {0.0, -150.0}, Scene::Water},          {"Lake Superior", {47.7, -87.5}, Scene::Water},
      {"Tokyo", {35.68, 139.7}, Scene::Urban},               {"Paris", {48.86, 2.35}, Scene::Urban},
      {"Himalaya (Everest)", {28.0, 86.9}, Scene::Mountain}, {"Caucasus", {43.0, 43.0}, Scene::Mountain},
      {"Norwegian mountains", {61.5, 8.5}, Scene::Mountain}, {"Iowa crops", {41.5, -93.5}, Scene::Grass},
      {"Pampas", {-35.0, -62.0}, Scene::Grass},
  };
  for (const Place& pl : places) {
    CAPTURE(pl.name);
    const Scene got = scene_at(earth_test::imagery(), earth_test::countries(), pl.p);
    CHECK(std::string(scene_name(static_cast<int>(got))) == std::string(scene_name(static_cast<int>(pl.want))));
  }
}

TEST_CASE("scene rule precedence on hand-made features") {
  SceneFeatures f;
  f.land = true;
  f.summer = f.winter = {0.1f, 0.16f, 0.05f};  // dark green
  CHECK(classify_scene(f) == Scene::Forest);
  f.summer = {0.2f, 0.25f, 0.1f};  // lighter green
  CHECK(classify_scene(f) == Scene::Grass);
  f.summer = f.winter = {0.78f, 0.66f, 0.49f};  // sand
  CHECK(classify_scene(f) == Scene::Desert);
  f.relief = 0.08f;
  CHECK(classify_scene(f) == Scene::Mountain);
  f.lights = 0.5f;
  CHECK(classify_scene(f) == Scene::Urban);  // lights beat relief
  f.land = false;
  CHECK(classify_scene(f) == Scene::Water);  // and the sea beats everything
  SceneFeatures snow;
  snow.land = true;
  snow.summer = snow.winter = {0.95f, 0.96f, 0.97f};
  CHECK(classify_scene(snow) == Scene::IceSnow);
  snow.summer = {0.2f, 0.25f, 0.1f};  // snow in winter only: seasonal, not ice
  CHECK(classify_scene(snow) == Scene::Grass);
  SceneFeatures lake;
  lake.land = true;
  lake.summer = lake.winter = {0.01f, 0.01f, 0.03f};
  CHECK(classify_scene(lake) == Scene::Water);
  CHECK(scene_name(6) == "mountain");
  CHECK_THROWS_AS(scene_name(7), ValueError);
}

TEST_CASE("countries of known places") {
  const auto& ci = earth_test::countries();
  CHECK(ci.country_code({48.86, 2.35}) == 250);    // France
  CHECK(ci.country_code({35.68, 139.7}) == 392);   // Japan
  CHECK(ci.country_code({-3.0, -62.0}) == 76);     // Brazil
  CHECK(ci.country_code({72.0, -40.0}) == 304);    // Greenland
  CHECK(ci.country_code({-25.0, 130.0}) == 36);    // Australia
  CHECK(ci.country_code({0.0, -150.0}) == -1);     // sea
}
