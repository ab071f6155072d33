#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>

#include "fixtures.hpp"
#include "geoloc/earth/views.hpp"
#include "geoloc/error.hpp"
#include "geoloc/thread_pool.hpp"

using namespace geoloc;
using namespace geoloc::earth;

namespace {
// A small configuration: every property the presets rely on, at a tenth of the cost.
EarthViewsConfig small_config(uint64_t seed = 7) {
  EarthViewsConfig c;
  c.seed = seed;
  c.image_size = 32;
  c.train_locations = 600;
  c.views_per_train_location = 3;
  c.test_unseen_rendering = 200;
  c.test_seen_rendering = 200;
  return c;
}

const EarthViews& small_views() {
  static const EarthViews v = build_earth_views(small_config(), earth_test::imagery(), earth_test::countries());
  return v;
}

bool same_split(const EarthSplit& a, const EarthSplit& b) {
  return a.images == b.images && a.location == b.location && a.rendering == b.rendering && a.scene == b.scene &&
         a.country == b.country && a.heading_deg == b.heading_deg && a.fov_km == b.fov_km;
}
}  // namespace

TEST_CASE("splits have the configured sizes and consistent arrays") {
  const EarthViews& v = small_views();
  CHECK(v.train.n() == 600 * 3);
  CHECK(v.test_unseen_rendering.n() == 200);
  CHECK(v.test_seen_rendering.n() == 200);
  for (const EarthSplit* s : {&v.train, &v.test_unseen_rendering, &v.test_seen_rendering}) {
    CAPTURE(s->name);
    CHECK(s->images.size() == s->n() * 32 * 32 * 3);
    CHECK(s->size == 32);
    for (size_t i = 0; i < s->n(); ++i) {
      REQUIRE(s->fov_km[i] >= 400.f);
      REQUIRE(s->fov_km[i] <= 1000.f);
      REQUIRE(s->heading_deg[i] >= 0.f);
      REQUIRE(s->heading_deg[i] < 360.f);
    }
  }
  // Views of one training location share its location and labels, and use distinct renderings.
  for (size_t i = 0; i < v.train.n(); i += 3) {
    REQUIRE(v.train.location_id[i] == v.train.location_id[i + 2]);
    REQUIRE(v.train.location[i] == v.train.location[i + 1]);
    REQUIRE(v.train.rendering[i] != v.train.rendering[i + 1]);
    REQUIRE(v.train.rendering[i] != v.train.rendering[i + 2]);
  }
}

TEST_CASE("renderings: held-out ones only in test_unseen_rendering") {
  const EarthViews& v = small_views();
  const std::set<int> held{static_cast<int>(Rendering::BlueMarbleMar), static_cast<int>(Rendering::OpenUniverse)};
  std::set<int> train_used, unseen_used, seen_used;
  for (int r : v.train.rendering) train_used.insert(r);
  for (int r : v.test_unseen_rendering.rendering) unseen_used.insert(r);
  for (int r : v.test_seen_rendering.rendering) seen_used.insert(r);
  CHECK(unseen_used == held);
  CHECK(train_used.size() == 6);
  for (int r : held) {
    CHECK(train_used.count(r) == 0);
    CHECK(seen_used.count(r) == 0);
  }
  CHECK(v.train_renderings == std::vector<int>{0, 2, 3, 4, 5, 6});
}

TEST_CASE("no training location within min_separation_km of a test location") {
  const EarthViews& v = small_views();
  double closest = 1e9;
  for (const EarthSplit* t : {&v.test_unseen_rendering, &v.test_seen_rendering})
    for (size_t i = 0; i < t->n(); ++i)
      for (size_t j = 0; j < v.train.n(); j += 3)
        closest = std::min(closest, geo::haversine_km(t->location[i], v.train.location[j]));
  CHECK(closest >= 50.0);
  // The constraint binds: without it, lights-weighted locations would come much closer (cities).
  EarthViewsConfig c = small_config();
  c.min_separation_km = 0.0;
  const EarthViews free = build_earth_views(c, earth_test::imagery(), earth_test::countries());
  double free_closest = 1e9;
  for (size_t i = 0; i < free.test_seen_rendering.n(); ++i)
    for (size_t j = 0; j < free.train.n(); j += 3)
      free_closest = std::min(free_closest, geo::haversine_km(free.test_seen_rendering.location[i], free.train.location[j]));
  CHECK(free_closest < 50.0);
}

TEST_CASE("location sources follow the shares; sea and land draws are where they claim") {
  const EarthViews& v = small_views();
  const auto& ci = earth_test::countries();
  int lights = 0, land = 0, sea = 0, lights_on_land = 0;
  for (size_t i = 0; i < v.train.n(); i += 3) {
    const bool on_land = ci.is_land(v.train.location[i]);
    switch (v.train.source[i]) {
      case LocationSource::Lights: ++lights; lights_on_land += on_land; break;
      case LocationSource::Land: ++land; REQUIRE(on_land); break;
      case LocationSource::Sea: ++sea; REQUIRE_FALSE(on_land); break;
    }
  }
  CHECK(lights == 360);  // exact counts: 60 / 30 / 10 % of 600
  CHECK(land == 180);
  CHECK(sea == 60);
  // Night lights are on land, apart from a few coastal cities whose pixel straddles the coast.
  CHECK(lights_on_land >= 0.85 * lights);
  // Uniform land draws cover the whole globe's land: some in the southern hemisphere, some in Antarctica.
  int south = 0;
  for (size_t i = 0; i < v.train.n(); i += 3)
    if (v.train.source[i] == LocationSource::Land && v.train.location[i].lat < 0) ++south;
  CHECK(south > 20);
}

TEST_CASE("scene labels: a labelled share of training, full labels in the test sets") {
  const EarthViews& v = small_views();
  int labelled = 0;
  for (size_t i = 0; i < v.train.n(); i += 3) {
    REQUIRE(v.train.scene[i] == v.train.scene[i + 1]);
    if (v.train.scene[i] >= 0) {
      ++labelled;
      REQUIRE(v.train.scene[i] == v.train.scene_truth[i]);
    }
  }
  CHECK(labelled == 180);  // 30 % of 600 locations
  for (const EarthSplit* t : {&v.test_unseen_rendering, &v.test_seen_rendering})
    for (size_t i = 0; i < t->n(); ++i) {
      REQUIRE(t->scene[i] >= 0);
      REQUIRE(t->scene[i] < kNumScenes);
      REQUIRE(t->scene[i] == t->scene_truth[i]);
    }
  // Sea draws are water; their country is -1.
  for (size_t i = 0; i < v.train.n(); ++i)
    if (v.train.source[i] == LocationSource::Sea) {
      REQUIRE(v.train.scene_truth[i] == static_cast<int>(Scene::Water));
      REQUIRE(v.train.country[i] == -1);
    }
  // Countries are those of the polygons.
  for (size_t i = 0; i < v.test_seen_rendering.n(); i += 17)
    CHECK(v.test_seen_rendering.country[i] == earth_test::countries().country_code(v.test_seen_rendering.location[i]));
}

TEST_CASE("deterministic: same seed, same bytes, for any size of the thread pool; another seed differs") {
  const int saved = num_threads();
  EarthViewsConfig c = small_config(11);
  c.train_locations = 200;
  c.test_unseen_rendering = c.test_seen_rendering = 60;
  set_num_threads(1);
  const EarthViews a = build_earth_views(c, earth_test::imagery(), earth_test::countries());
  set_num_threads(2);
  const EarthViews b = build_earth_views(c, earth_test::imagery(), earth_test::countries());
  set_num_threads(3);
  const EarthViews d = build_earth_views(c, earth_test::imagery(), earth_test::countries());
  set_num_threads(saved);
  CHECK(same_split(a.train, b.train));
  CHECK(same_split(a.train, d.train));
  CHECK(same_split(a.test_unseen_rendering, b.test_unseen_rendering));
  CHECK(same_split(a.test_seen_rendering, d.test_seen_rendering));
  c.seed = 12;
  const EarthViews e = build_earth_views(c, earth_test::imagery(), earth_test::countries());
  CHECK_FALSE(a.train.images == e.train.images);
  CHECK_FALSE(a.test_seen_rendering.location == e.test_seen_rendering.location);
}

TEST_CASE("an error inside the parallel location draw reaches the caller as geoloc::Error") {
  const int saved = num_threads();
  // Nearly every region is a test region and no training location may come within 1999 km of a
  // test location: the training draws run out of tries, on every thread.
  EarthViewsConfig c = small_config(5);
  c.train_locations = 6;
  c.test_unseen_rendering = c.test_seen_rendering = 40;
  c.share_lights = 1.0;
  c.share_land = c.share_sea = 0.0;
  c.test_block_share = 0.99;
  c.min_separation_km = 1999.0;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    CHECK_THROWS_AS(build_earth_views(c, earth_test::imagery(), earth_test::countries()), Error);
    try {
      build_earth_views(c, earth_test::imagery(), earth_test::countries());
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("no location found") != std::string::npos);
    }
  }
  set_num_threads(saved);
}

TEST_CASE("the quick preset builds in well under 3 s") {
  const auto t0 = std::chrono::steady_clock::now();
  const EarthViews v = build_earth_views(EarthViewsConfig::quick(), earth_test::imagery(), earth_test::countries());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("quick preset: ", v.train.n(), " + ", v.test_unseen_rendering.n(), " + ", v.test_seen_rendering.n(),
          " views of ", v.train.size, "x", v.train.size, " in ", s, " s");
  CHECK(v.train.n() == 3000);
  CHECK(v.test_unseen_rendering.n() == 500);
  CHECK(v.test_seen_rendering.n() == 500);
  CHECK(s < 3.0);
}

TEST_CASE("normalised batches, colour histograms, contact sheets") {
  const EarthSplit& s = small_views().test_seen_rendering;
  const Tensor t = normalised_batch(s, 5, 3);
  CHECK(t.shape() == Shape{3, 32, 32, 3});
  const float* f = t.data<float>();
  const image::Normalization norm;
  for (int k = 0; k < 3; ++k)
    CHECK(f[k] == doctest::Approx((s.view(5)[k] / 255.f - norm.mean[k]) / norm.std[k]).epsilon(1e-5));
  const Tensor u = normalised_batch(s, std::vector<size_t>{7, 2});
  CHECK(u.data<float>()[0] == doctest::Approx((s.view(7)[0] / 255.f - norm.mean[0]) / norm.std[0]).epsilon(1e-5));
  CHECK_THROWS_AS(normalised_batch(s, s.n() - 1, 2), ValueError);
  CHECK(s.images_u8().shape() == Shape{200, 32, 32, 3});

  const std::vector<float> h = colour_histogram(s.view(0), 32, 32);
  CHECK(h.size() == 64);
  CHECK(std::accumulate(h.begin(), h.end(), 0.0) == doctest::Approx(1.0));
  const uint8_t white[3 * 4] = {255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0};
  const std::vector<float> hw = colour_histogram(white, 2, 2, 2);
  CHECK(hw[7] == doctest::Approx(0.5));  // (1, 1, 1)
  CHECK(hw[0] == doctest::Approx(0.5));  // (0, 0, 0)
  CHECK_THROWS_AS(colour_histogram(white, 2, 2, 17), ValueError);
  const Tensor hs = colour_histograms(s);
  CHECK(hs.shape() == Shape{200, 64});
  CHECK(hs.data<float>()[64 * 3 + 5] == doctest::Approx(colour_histogram(s.view(3), 32, 32)[5]));

  const std::string path = (std::filesystem::temp_directory_path() / "geoloc_earth_sheet_test.png").string();
  save_contact_sheet(s, path, 10, 4, 2);
  const image::Image sheet = image::decode_file(path);
  CHECK(sheet.width == 4 * 64 + 5 * 2);
  CHECK(sheet.height == 3 * 64 + 4 * 2);
  CHECK(std::equal(s.view(0), s.view(0) + 3, sheet.at(2, 2)));
  std::filesystem::remove(path);
}

TEST_CASE("config validation names the bad field") {
  auto bad = [](auto mutate) {
    EarthViewsConfig c = EarthViewsConfig::quick();
    mutate(c);
    return c;
  };
  CHECK_THROWS_AS(bad([](auto& c) { c.image_size = 2; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.fov_km_min = 900; c.fov_km_max = 500; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.held_out_renderings = {}; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.held_out_renderings = {1, 1}; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.held_out_renderings = {9}; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.labelled_share = 1.5; }).validate(), ValueError);
  CHECK_THROWS_AS(bad([](auto& c) { c.share_sea = -0.1; }).validate(), ValueError);
  CHECK_THROWS_WITH_AS(bad([](auto& c) { c.train_locations = 0; }).validate(), doctest::Contains("train_locations"),
                       ValueError);
  EarthViewsConfig::default_().validate();
  EarthViewsConfig::large().validate();
}
