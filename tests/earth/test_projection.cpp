#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "fixtures.hpp"
#include "geoloc/earth/projection.hpp"
#include "geoloc/error.hpp"
#include "geoloc/thread_pool.hpp"

using namespace geoloc;
using namespace geoloc::earth;

namespace {
// A raster whose colour is a smooth function of the position on the sphere (127 + 120 * unit
// vector), so any seam in projecting or sampling (wrap-around, poles) shows as a jump.
Raster smooth_raster(int w = 512) {
  image::Image img(w, w / 2);
  for (int y = 0; y < w / 2; ++y)
    for (int x = 0; x < w; ++x) {
      const geo::LatLng p{90.0 - (y + 0.5) * 180.0 / (w / 2), -180.0 + (x + 0.5) * 360.0 / w};
      const geo::Vec3 v = geo::to_unit(p);
      uint8_t* c = img.at(x, y);
      c[0] = static_cast<uint8_t>(std::lround(127 + 120 * v.x));
      c[1] = static_cast<uint8_t>(std::lround(127 + 120 * v.y));
      c[2] = static_cast<uint8_t>(std::lround(127 + 120 * v.z));
    }
  return Raster(std::move(img), "smooth");
}

int max_neighbour_difference(const std::vector<uint8_t>& v, int w, int h) {
  int worst = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        const int c = v[(y * w + x) * 3 + k];
        if (x + 1 < w) worst = std::max(worst, std::abs(c - v[(y * w + x + 1) * 3 + k]));
        if (y + 1 < h) worst = std::max(worst, std::abs(c - v[((y + 1) * w + x) * 3 + k]));
      }
  return worst;
}
}  // namespace

TEST_CASE("the centre pixel of a view samples the point itself") {
  const Raster& r = earth_test::imagery().rendering(Rendering::BlueMarbleJul);
  constexpr int kSize = 33;  // odd: pixel (16, 16) is centred on the view's centre
  for (const geo::LatLng p : {geo::LatLng{48.85, 2.35}, geo::LatLng{-33.9, 151.2}, geo::LatLng{0.0, 179.99},
                              geo::LatLng{71.0, -42.0}, geo::LatLng{-3.0, -62.0}}) {
    CAPTURE(geo::to_string(p));
    std::vector<uint8_t> v(kSize * kSize * 3);
    render_view(r, ViewGeometry{p, 37.0, 500.0}, kSize, kSize, v.data());
    const auto direct = r.sample(p);
    for (int k = 0; k < 3; ++k) CHECK(std::abs(v[(16 * kSize + 16) * 3 + k] - direct[k]) <= 1.0f);
    const ViewFrame f = view_frame({p, 37.0, 500.0});
    CHECK(geo::haversine_km(view_pixel_location(f, kSize, kSize, 16, 16), p) < 1e-6);
  }
}

TEST_CASE("view geometry: width on the ground and heading") {
  const geo::LatLng p{45.0, 10.0};
  const ViewFrame f = view_frame({p, 0.0, 600.0});
  // Pixel centres of the outer columns are (w/2 - 0.5) pixels from the centre; the gnomonic
  // projection makes that atan(tan(half) * (w - 1) / w) on the ground.
  const double edge = geo::haversine_km(view_pixel_location(f, 64, 64, -0.5, 31.5), p);
  CHECK(edge == doctest::Approx(300.0).epsilon(0.01));
  // Heading 0: up is north. Heading 90: up is east, so the top row lies east of the centre.
  CHECK(geo::initial_bearing_deg(p, view_pixel_location(f, 64, 64, 31.5, 0)) == doctest::Approx(0.0).epsilon(0.01));
  const ViewFrame east = view_frame({p, 90.0, 600.0});
  CHECK(geo::initial_bearing_deg(p, view_pixel_location(east, 64, 64, 31.5, 0)) ==
        doctest::Approx(90.0).epsilon(0.01));
  CHECK(geo::initial_bearing_deg(p, view_pixel_location(east, 64, 64, 63, 31.5)) ==
        doctest::Approx(180.0).epsilon(0.01));
}

TEST_CASE("views over the poles and the antimeridian have no seams") {
  const Raster r = smooth_raster();
  constexpr int kSize = 64;
  for (const geo::LatLng p : {geo::LatLng{90.0, 0.0}, geo::LatLng{89.8, -120.0}, geo::LatLng{-90.0, 0.0},
                              geo::LatLng{0.0, 180.0}, geo::LatLng{-20.0, -179.9}, geo::LatLng{65.0, 180.0}}) {
    CAPTURE(geo::to_string(p));
    std::vector<uint8_t> v(kSize * kSize * 3);
    const ViewGeometry g{p, 23.0, 1500.0};
    render_view(r, g, kSize, kSize, v.data());
    // 1500 km across 64 pixels: at most 120 * 0.0037 = 0.44 levels per pixel, plus rounding;
    // a seam (wrong column or row) would jump by tens of levels.
    CHECK(max_neighbour_difference(v, kSize, kSize) <= 2);
    // And every pixel shows the colour of the point view_pixel_location says it shows.
    const ViewFrame f = view_frame(g);
    int worst = 0;
    for (int y = 0; y < kSize; y += 7)
      for (int x = 0; x < kSize; x += 5) {
        const geo::Vec3 u = geo::to_unit(view_pixel_location(f, kSize, kSize, x, y));
        const double want[3] = {127 + 120 * u.x, 127 + 120 * u.y, 127 + 120 * u.z};
        for (int k = 0; k < 3; ++k)
          worst = std::max(worst, static_cast<int>(std::lround(std::abs(v[(y * kSize + x) * 3 + k] - want[k]))));
      }
    // The raster's own pixels are 0.7 degrees: bilinear interpolation of a sinusoid is good to ~1 level.
    CHECK(worst <= 2);
  }
}

TEST_CASE("real imagery: the north-pole view is as smooth as a mid-latitude one") {
  const Raster& r = earth_test::imagery().rendering(Rendering::BlueMarbleJan);
  std::vector<uint8_t> pole(64 * 64 * 3), across(64 * 64 * 3);
  render_view(r, ViewGeometry{{90.0, 0.0}, 0.0, 800.0}, 64, 64, pole.data());
  render_view(r, ViewGeometry{{-16.5, 180.0}, 0.0, 800.0}, 64, 64, across.data());  // Fiji, on the antimeridian
  // 800 km over 64 pixels magnifies the 20 km source pixels ~1.6x: neighbours differ by a fraction
  // of a source pixel's contrast; a seam would show the whole jump between unrelated columns.
  CHECK(max_neighbour_difference(pole, 64, 64) <= 40);
  CHECK(max_neighbour_difference(across, 64, 64) <= 80);
}

TEST_CASE("bilinear sampling wraps in longitude and continues over the poles") {
  image::Image img(8, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) img.at(x, y)[0] = static_cast<uint8_t>(10 * x + y);
  const Raster r(std::move(img), "tiny");
  float c[3];
  r.sample(-0.5f, 1.0f, c);  // halfway between the last column and the first
  CHECK(c[0] == doctest::Approx(0.5 * (70 + 1) + 0.5 * (0 + 1)));
  r.sample(7.5f, 2.0f, c);
  CHECK(c[0] == doctest::Approx(0.5 * (70 + 2) + 0.5 * (0 + 2)));
  r.sample(2.0f, -0.5f, c);  // above the top row: halfway to the top row of column 2 + 4
  CHECK(c[0] == doctest::Approx(0.5 * 20 + 0.5 * 60));
  r.sample(5.0f, 3.5f, c);  // below the bottom row: column 5 + 4 = 1
  CHECK(c[0] == doctest::Approx(0.5 * 53 + 0.5 * 13));
}

TEST_CASE("projection input checks") {
  CHECK_THROWS_AS(view_frame({{91.0, 0.0}, 0.0, 500.0}), ValueError);
  CHECK_THROWS_AS(view_frame({{0.0, 0.0}, 0.0, 0.0}), ValueError);
  CHECK_THROWS_AS(view_frame({{0.0, 0.0}, NAN, 500.0}), ValueError);
  std::vector<uint8_t> v(12);
  CHECK_THROWS_AS(render_view(earth_test::imagery().night_lights(), ViewGeometry{}, 0, 2, v.data()), ValueError);
  CHECK_THROWS_AS(Raster(image::Image(10, 10), "square"), ValueError);
  CHECK_THROWS_AS(EarthImagery::load("/nonexistent/earth"), IoError);
  CHECK_THROWS_AS(rendering_name(8), ValueError);
}

TEST_CASE("a corrupt raster fails the parallel load with an IoError naming it") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("geoloc-earth-corrupt-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(GEOLOC_DATA_DIR "/earth"))
    if (f.path().extension() == ".jpg") fs::create_symlink(f.path(), dir / f.path().filename());
  const std::string bad = std::string(rendering_file(2));
  fs::remove(dir / bad);
  std::ofstream(dir / bad) << "not a JPEG";
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    try {
      EarthImagery::load(dir.string());
      FAIL("loading a corrupt raster did not throw");
    } catch (const IoError& e) {
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
    }
  }
  set_num_threads(saved);
  fs::remove_all(dir);
}
