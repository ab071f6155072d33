#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/viz/chart.hpp"
#include "geoloc/viz/probability_map.hpp"

using namespace geoloc;
using namespace geoloc::viz;
namespace fs = std::filesystem;

namespace {

// Two classes: the northern (0) and southern (1) hemisphere. Counts its assign() calls so that the
// tests can see the renderer's cache at work.
class HemispherePartition final : public geo::Partition {
 public:
  std::size_t size() const override { return 2; }
  geo::LatLng center(std::size_t c) const override {
    return c == 0 ? geo::LatLng{45, 90} : geo::LatLng{-45, -90};
  }
  std::int64_t count(std::size_t) const override { return 0; }
  int assign(geo::LatLng p) const override {
    ++calls;
    return p.lat >= 0 ? 0 : 1;
  }
  mutable std::atomic<long> calls{0};
};

image::Image grey(int w, int h, uint8_t v) {
  image::Image img(w, h);
  std::fill(img.pixels.begin(), img.pixels.end(), v);
  return img;
}

bool same_pixel(const image::Image& a, const image::Image& b, int x, int y) {
  const uint8_t *p = a.at(x, y), *q = b.at(x, y);
  return p[0] == q[0] && p[1] == q[1] && p[2] == q[2];
}

Color pixel(const image::Image& img, int x, int y) {
  const uint8_t* p = img.at(x, y);
  return {p[0], p[1], p[2]};
}

ProbabilityMapSpec bare_spec() {
  ProbabilityMapSpec spec;
  spec.cell_borders = false;
  spec.colorbar = false;
  return spec;
}

}  // namespace

TEST_CASE("probability map: the class map is computed once and cached") {
  HemispherePartition part;
  MapRenderer r(part, grey(64, 32, 100), 256, 128);
  CHECK(r.width() == 256);
  CHECK(r.height() == 128);
  CHECK(part.calls.load() == 256 * 128);
  REQUIRE(r.class_map().size() == 256u * 128u);
  CHECK(r.class_map()[0] == 0);                // top-left: north
  CHECK(r.class_map()[256u * 127u] == 1);      // bottom-left: south
  CHECK(r.class_map()[256u * 63u + 10] == 0);  // the row just above the equator
  CHECK(r.class_map()[256u * 64u + 10] == 1);  // and just below
  const std::vector<float> p = {0.7f, 0.3f};
  const auto a = r.render(p, {});
  const auto b = r.render(p, {});
  CHECK(a == b);
  CHECK(part.calls.load() == 256 * 128);  // rendering reuses the cache
  // The background is the given image resized and darkened.
  CHECK(r.background().width == 256);
  CHECK(pixel(r.background(), 10, 10) == Color{60, 60, 60});
}

TEST_CASE("probability map: probabilities (1, 0) colour one hemisphere only") {
  HemispherePartition part;
  MapRenderer r(part, grey(64, 32, 100), 256, 128);
  const std::vector<float> p = {1.0f, 0.0f};
  const auto img = r.render(p, bare_spec());
  REQUIRE(img.width == 256);
  REQUIRE(img.height == 128);
  const auto [cx, cy] = r.to_pixel(part.center(0));  // the prediction cross is drawn there
  size_t north_changed = 0, north_total = 0;
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 256; ++x) {
      if (y >= 64) {
        CHECK(same_pixel(img, r.background(), x, y));  // south: untouched
      } else if (std::abs(x + 0.5 - cx) > 12 || std::abs(y + 0.5 - cy) > 12) {
        ++north_total;
        north_changed += !same_pixel(img, r.background(), x, y);
        // The top of inferno is a pale yellow: red and green well above blue.
        CHECK(pixel(img, x, y).g > pixel(img, x, y).b);
      }
    }
  CHECK(north_changed == north_total);

  // (0, 1) is the mirror image.
  const auto flipped = r.render(std::vector<float>{0.0f, 1.0f}, bare_spec());
  CHECK(same_pixel(flipped, r.background(), 200, 20));
  CHECK_FALSE(same_pixel(flipped, r.background(), 20, 100));

  // On the log scale a class 1000x less likely than the maximum is still visible (within 4
  // decades); on the linear scale it is not.
  ProbabilityMapSpec log_spec = bare_spec();
  log_spec.log_scale = true;
  const std::vector<float> q = {1.0f, 1e-3f};
  CHECK_FALSE(same_pixel(r.render(q, log_spec), r.background(), 20, 100));
  CHECK(same_pixel(r.render(q, bare_spec()), r.background(), 20, 100));
}

TEST_CASE("probability map: markers at the right pixels") {
  HemispherePartition part;
  MapRenderer r(part, grey(64, 32, 100), 1024, 512);
  CHECK(r.to_pixel({0, 0}) == std::array<double, 2>{512, 256});
  CHECK(r.to_pixel({90, -180}) == std::array<double, 2>{0, 0});
  const geo::LatLng back = r.to_latlng(512, 256);
  CHECK(back.lat == 0.0);
  CHECK(back.lng == 0.0);

  ProbabilityMapSpec spec = bare_spec();
  spec.prediction = geo::LatLng{0, 0};
  spec.truth = geo::LatLng{0, 90};
  const auto img = r.render(std::vector<float>{0.0f, 0.0f}, spec);
  // The cross is centred on (512, 256): the pixels whose centres lie on its diagonals are cyan.
  const Color cyan = rgb(0x38e8ff);
  CHECK(pixel(img, 511, 255) == cyan);
  CHECK(pixel(img, 512, 256) == cyan);
  CHECK(pixel(img, 508, 259) == cyan);  // on the other diagonal
  CHECK(same_pixel(img, r.background(), 512, 230));
  // The truth circle around (768, 256), green, hollow; its radius is 7 px per text scale, and
  // maps 900 px wide or more use scale 2.
  const Color ring = pixel(img, 782, 256);
  CHECK(ring.g > 200);
  CHECK(ring.r < 150);
  CHECK(same_pixel(img, r.background(), 768, 252));  // inside the ring, off the path
  // The great circle between them runs along the equator: white-ish pixels halfway.
  CHECK(pixel(img, 640, 256).r > 180);
  // The distance label ("10008 km", a quarter of the equator) sits just above the middle of the
  // path (which runs sideways there), clear of the line.
  const MapLayout plain = r.layout(std::vector<float>{0.0f, 0.0f}, spec);
  const MapLabel* d = plain.find("distance");  // of a named layout: a temporary's label dangles
  REQUIRE(d != nullptr);
  CHECK(d->text == "10008 km");
  CHECK(d->box.x0 < 640);
  CHECK(d->box.x1 > 640);
  CHECK(d->box.y1 <= 256 - 4);
  CHECK(d->box.y1 >= 256 - 20);
  size_t white = 0;
  for (int y = 215; y < 250; ++y)
    for (int x = 580; x < 700; ++x) white += pixel(img, x, y) == Color{255, 255, 255};
  CHECK(white > 50);
}

TEST_CASE("probability map: titles, colour bar and top-k change the picture only where drawn") {
  HemispherePartition part;
  MapRenderer r(part, grey(64, 32, 100), 512, 256);
  const std::vector<float> p = {0.6f, 0.4f};
  ProbabilityMapSpec spec;
  spec.title = "Top: 60%";
  spec.top_k = 2;
  spec.truth = geo::LatLng{-30, 20};
  const auto img = r.render(p, spec);
  const auto bare = r.render(p, bare_spec());
  CHECK_FALSE(same_pixel(img, bare, 10, 8));         // title band
  CHECK_FALSE(same_pixel(img, bare, 20, 240));       // colour bar box
  const auto [kx, ky] = r.to_pixel(part.center(1));  // the #2 label's dot
  CHECK(pixel(img, static_cast<int>(kx), static_cast<int>(ky)) == Color{255, 255, 255});
  CHECK(same_pixel(img, bare, 400, 150));  // elsewhere the same
}

namespace {
// A broken partition that answers a class it does not have.
class OutOfRangePartition final : public geo::Partition {
 public:
  std::size_t size() const override { return 1; }
  geo::LatLng center(std::size_t) const override { return {}; }
  std::int64_t count(std::size_t) const override { return 0; }
  int assign(geo::LatLng p) const override { return p.lat > 80 ? 5 : 0; }
};
}  // namespace

TEST_CASE("probability map: invalid input") {
  OutOfRangePartition broken;
  CHECK_THROWS_AS(MapRenderer(broken, image::Image{}, 128, 64), ValueError);
  HemispherePartition part;
  MapRenderer r(part, image::Image{}, 128, 64);  // no background: plain dark
  CHECK(pixel(r.background(), 5, 5) == rgb(0x1b2430));
  CHECK_THROWS_AS(r.render(std::vector<float>{1.0f}), ShapeError);
  CHECK_THROWS_AS(r.render(std::vector<float>{1.0f, -0.1f}), ValueError);
  CHECK_THROWS_AS(r.render(std::vector<float>{1.0f, NAN}), ValueError);
  ProbabilityMapSpec spec;
  spec.truth = geo::LatLng{95, 0};
  CHECK_THROWS_AS(r.render(std::vector<float>{1.0f, 0.0f}, spec), ValueError);
  spec.truth.reset();
  spec.log_decades = 0;
  CHECK_THROWS_AS(r.render(std::vector<float>{1.0f, 0.0f}, spec), ValueError);
  CHECK_THROWS_AS(MapRenderer(part, image::Image{}, 16, 8), ValueError);
  CHECK_THROWS_AS(MapRenderer(part, image::Image{}, 128, 64, 0.0), ValueError);
  CHECK_THROWS_AS(MapRenderer(part, std::string("/nonexistent-geoloc-dir/earth.jpg"), 128, 64), IoError);
}

TEST_CASE("probability map: written atomically") {
  HemispherePartition part;
  MapRenderer r(part, grey(64, 32, 100), 128, 64);
  const std::vector<float> p = {0.5f, 0.5f};
  const std::string path = (fs::temp_directory_path() / "geoloc_viz_test_map.png").string();
  fs::remove(path);
  r.write(path, p);
  const auto img = image::decode_file(path);
  CHECK(img.width == 128);
  CHECK(img.height == 64);
  fs::remove(path);
  CHECK_THROWS_AS(r.write("/nonexistent-geoloc-dir/map.png", p), IoError);
  CHECK_FALSE(fs::exists("/nonexistent-geoloc-dir"));
}

TEST_CASE("probability map: the default background decodes") {
  const std::string bg = default_background_path();
  if (!fs::exists(bg)) {
    MESSAGE("skipped: no background at ", bg);
    return;
  }
  HemispherePartition part;
  MapRenderer r(part, bg, 256, 128);
  // Blue Marble: the middle of the Pacific is dark blue, blue above red.
  const Color pacific = pixel(r.background(), 10, 64);
  CHECK(pacific.b > pacific.r);
}

namespace {

// 10-degree cells: 18 rows x 36 columns, row 0 at the north pole, column 0 at -180.
class GridPartition final : public geo::Partition {
 public:
  std::size_t size() const override { return 18 * 36; }
  geo::LatLng center(std::size_t c) const override {
    return {85.0 - 10.0 * static_cast<double>(c / 36), -175.0 + 10.0 * static_cast<double>(c % 36)};
  }
  std::int64_t count(std::size_t) const override { return 0; }
  int assign(geo::LatLng p) const override {
    const int row = std::clamp(static_cast<int>((90.0 - p.lat) / 10.0), 0, 17);
    const int col = std::clamp(static_cast<int>((p.lng + 180.0) / 10.0), 0, 35);
    return row * 36 + col;
  }
};

// Probabilities falling off with the distance from `around`, so the top 3 crowd around it.
std::vector<float> peaked(const geo::Partition& part, geo::LatLng around) {
  std::vector<float> p(part.size());
  double sum = 0;
  for (size_t c = 0; c < p.size(); ++c) sum += p[c] = static_cast<float>(std::exp(-geo::haversine_km(part.center(c), around) / 800.0));
  for (float& v : p) v = static_cast<float>(v / sum);
  return p;
}

std::string describe(const MapLayout& lay) {
  std::string s;
  for (const auto& l : lay.labels)
    s += l.role + " '" + l.text + "' [" + std::to_string(l.box.x0) + "," + std::to_string(l.box.y0) + " - " +
         std::to_string(l.box.x1) + "," + std::to_string(l.box.y1) + ")\n";
  return s;
}

// Every label inside the map, no two intersecting; the distance label present, right and clear of
// the markers.
void check_layout(const MapRenderer& r, const MapLayout& lay, const ProbabilityMapSpec& spec) {
  INFO(describe(lay));
  for (size_t i = 0; i < lay.labels.size(); ++i) {
    CHECK_MESSAGE(lay.labels[i].box.inside(r.width(), r.height()), lay.labels[i].role, " outside the map");
    for (size_t j = i + 1; j < lay.labels.size(); ++j)
      CHECK_MESSAGE(!lay.labels[i].box.intersects(lay.labels[j].box), lay.labels[i].role, " '",
                    lay.labels[i].text, "' overlaps ", lay.labels[j].role, " '", lay.labels[j].text, "'");
  }
  CHECK((lay.find("title") != nullptr) == !spec.title.empty());
  CHECK((lay.find("legend") != nullptr) == spec.colorbar);
  CHECK((lay.find("top_k") != nullptr) == (spec.top_k > 0));
  const MapLabel* d = lay.find("distance");
  REQUIRE((d != nullptr) == spec.truth.has_value());
  if (!d) return;
  const double km = geo::haversine_km(*spec.prediction, *spec.truth);
  char want[32];
  std::snprintf(want, sizeof want, km < 10 ? "%.1f km" : "%.0f km", km);
  CHECK(d->text == want);
  CHECK(d->text.front() != '-');
  for (const auto& m : lay.markers)
    if (m.role != "dot") CHECK_MESSAGE(!d->box.intersects(m.box), "the distance label covers the ", m.role);
}

}  // namespace

TEST_CASE("probability map: labels never overlap, wherever the prediction and the truth are") {
  GridPartition part;
  // Corners and edges of the map, the antimeridian, under the top-k list and the legend, the
  // middle, and the case of issue #12 (prediction in South America, truth in eastern Siberia).
  const std::vector<geo::LatLng> places = {
      {89, -179}, {89, 179}, {-89, -179}, {-89, 179}, {90, 180}, {-90, -180}, {85, 0},   {-85, 0},
      {0, -179.9}, {0, 179.9}, {75, 150},  {70, 120},  {-75, -150}, {-70, -130}, {0, 0},  {-38, -70},
      {76, 118}};
  for (const auto& [w, h, scale] : {std::array<int, 3>{1024, 512, 0}, {512, 256, 0}, {800, 400, 2}}) {
    MapRenderer r(part, image::Image{}, w, h);
    for (const geo::LatLng pred : places)
      for (const geo::LatLng truth : places) {
        ProbabilityMapSpec spec;
        spec.title = "test_seen_rendering view 0: the median of 1000";
        spec.text_scale = scale;
        spec.log_scale = true;
        spec.top_k = 3;
        spec.prediction = pred;
        spec.truth = truth;
        for (const geo::LatLng around : {pred, truth}) {
          const int width = w;  // CAPTURE's lambda cannot take a structured binding (clang < 16)
          CAPTURE(width);
          CAPTURE(geo::to_string(pred));
          CAPTURE(geo::to_string(truth));
          check_layout(r, r.layout(peaked(part, around), spec), spec);
        }
      }
    // The worst case drawn in full, in each corner: prediction and truth at the same corner point,
    // and a hair apart.
    for (const geo::LatLng corner : {geo::LatLng{88, -178}, {88, 178}, {-88, -178}, {-88, 178}})
      for (const double apart : {0.0, 1.0}) {
        ProbabilityMapSpec spec;
        spec.title = "worst case";
        spec.top_k = 3;
        spec.prediction = corner;
        spec.truth = geo::LatLng{corner.lat - apart * (corner.lat > 0 ? 1 : -1), corner.lng};
        const auto probs = peaked(part, corner);
        const MapLayout lay = r.layout(probs, spec);
        check_layout(r, lay, spec);
        const image::Image img = r.render(probs, spec);
        // The distance label is drawn where the layout says: white text inside its box.
        const MapLabel* d = lay.find("distance");
        REQUIRE(d != nullptr);
        size_t white = 0;
        for (int y = d->box.y0; y < d->box.y1; ++y)
          for (int x = d->box.x0; x < d->box.x1; ++x) white += pixel(img, x, y) == Color{255, 255, 255};
        CHECK(white > 20);
      }
  }
}

TEST_CASE("probability map: the list and the legend move off the markers when they can") {
  GridPartition part;
  MapRenderer r(part, image::Image{}, 1024, 512);
  ProbabilityMapSpec spec;
  spec.title = "t";
  spec.top_k = 3;
  spec.prediction = geo::LatLng{-38, -70};
  spec.truth = geo::LatLng{76, 150};   // under the top-right corner, where the list goes by default
  const MapLayout lay = r.layout(peaked(part, *spec.prediction), spec);
  check_layout(r, lay, spec);
  for (const auto& m : lay.markers)
    if (m.role != "dot")
      for (const char* role : {"top_k", "legend"}) CHECK_FALSE(lay.find(role)->box.intersects(m.box));
  // Nothing in the way: the list top right, the legend bottom left.
  spec.truth = geo::LatLng{10, 10};
  const MapLayout plain = r.layout(peaked(part, *spec.prediction), spec);
  CHECK(plain.find("top_k")->box.x1 > 1000);
  CHECK(plain.find("legend")->box.x0 < 20);
  CHECK(plain.find("legend")->box.y1 > 490);
}
