#include <doctest/doctest.h>
#include <s2/s2cell_id.h>
#include <s2/s2latlng.h>

#include <cmath>
#include <numeric>

#include "geoloc/error.hpp"
#include "geoloc/geo/fishnet.hpp"
#include "geoloc/geo/hierarchy.hpp"
#include "geoloc/geo/kmeans.hpp"
#include "geoloc/geo/predict.hpp"
#include "geoloc/geo/synthetic.hpp"

using namespace geoloc::geo;

namespace {
std::vector<CellPartition> three_partitionings(const std::vector<LatLng>& points) {
  AdaptiveOptions opt;
  opt.tau_min = 10;
  opt.max_level = 18;
  opt.tau_max = {4000, 1000, 250};
  return build_adaptive_partitions(points, opt);
}
}  // namespace

TEST_CASE("hierarchy: each finest cell's ancestors contain it") {
  const auto parts = three_partitionings(synthetic_points(50000, 2));
  const Hierarchy h(parts);
  REQUIRE(h.size() == parts[2].size());
  REQUIRE(h.num_partitions() == 3);
  for (std::size_t f = 0; f < h.size(); ++f) {
    CHECK(h.ancestor(f, 2) == static_cast<int>(f));
    for (std::size_t p = 0; p < 2; ++p) {
      const int a = h.ancestor(f, p);
      // Built from the same points with the same tau_min, a coarse ancestor always exists.
      REQUIRE(a >= 0);
      CHECK(S2CellId(parts[p].cell(a).id).contains(S2CellId(parts[2].cell(f).id)));
    }
  }
}

TEST_CASE("hierarchy: scores are products, missing ancestors count as uniform") {
  // Coarse: cells around Paris and New York; fine: one inside the Paris cell, one in Sydney.
  auto cell_at = [](LatLng p, int level) { return S2CellId(S2LatLng::FromDegrees(p.lat, p.lng)).parent(level); };
  const S2CellId coarse = cell_at({48.86, 2.35}, 5);
  std::vector<Cell> c(2), f(2);
  c[0].id = coarse.id();
  c[1].id = cell_at({40.71, -74.0}, 5).id();
  f[0].id = coarse.child(1).id();
  f[1].id = cell_at({-33.87, 151.21}, 6).id();  // contained in no coarse cell
  const std::vector<CellPartition> parts = {CellPartition(c), CellPartition(f)};
  const Hierarchy h(parts);
  CHECK(h.ancestor(0, 0) == 0);
  CHECK(h.ancestor(1, 0) == -1);
  const std::vector<float> pc = {0.8f, 0.2f}, pf = {0.3f, 0.7f};
  const std::vector<std::span<const float>> probs = {pc, pf};
  const auto s = h.scores(probs);
  CHECK(s[0] == doctest::Approx(0.8 * 0.3));
  CHECK(s[1] == doctest::Approx(0.5 * 0.7));
  CHECK(h.argmax(probs) == 1);
  CHECK(predict_hierarchy(h, parts[1], probs) == parts[1].center(1));
  const std::vector<std::span<const float>> wrong = {pf};
  CHECK_THROWS_AS(h.scores(wrong), geoloc::ValueError);
}

TEST_CASE("predictions from probabilities") {
  const auto parts = three_partitionings(synthetic_points(30000, 4));
  const CellPartition& fine = parts[2];
  std::vector<float> probs(fine.size(), 0.0f);
  probs[3] = 0.6f;
  probs[5] = 0.4f;
  CHECK(predict_argmax(fine, probs) == fine.center(3));
  CHECK(haversine_km(predict_top_k(fine, probs, 1), fine.center(3)) < 1e-9);
  const LatLng pts[] = {fine.center(3), fine.center(5)};
  const double w[] = {0.6, 0.4};
  const LatLng mean = spherical_mean(pts, w);
  const LatLng interp = predict_top_k(fine, probs, 5);  // classes beyond the top two have weight 0
  CHECK(interp.lat == doctest::Approx(mean.lat));
  CHECK(interp.lng == doctest::Approx(mean.lng));
  CHECK_THROWS_AS(predict_argmax(fine, std::vector<float>(3)), geoloc::ValueError);
  CHECK_THROWS_AS(predict_top_k(fine, probs, 0), geoloc::ValueError);
}

TEST_CASE("haversine soft targets") {
  const KMeansPartition part({{0, 0}, {0, 1}, {0, 2}, {50, 50}});
  const LatLng truth{0, 0.2};
  const auto y = soft_targets(part, truth, 75.0);
  REQUIRE(y.size() == 4);
  CHECK(std::accumulate(y.begin(), y.end(), 0.0) == doctest::Approx(1.0));
  CHECK(y[0] > y[1]);
  CHECK(y[1] > y[2]);
  CHECK(y[3] < 1e-20);
  // The ratio of two classes is exp(-(d_i - d_j) / tau).
  const double d0 = haversine_km(truth, {0, 0}), d1 = haversine_km(truth, {0, 1});
  CHECK(y[1] / y[0] == doctest::Approx(std::exp(-(d1 - d0) / 75.0)).epsilon(1e-5));
  // A tiny tau approaches one-hot; no underflow to all zeros even for far truths.
  CHECK(soft_targets(part, truth, 1e-3)[0] == doctest::Approx(1.0));
  CHECK(soft_targets(part, {-60, -170}, 1.0) == soft_targets(part, {-60, -170}, 1.0));
  const auto far = soft_targets(part, {-60, -170}, 1.0);
  CHECK(std::accumulate(far.begin(), far.end(), 0.0) == doctest::Approx(1.0));

  const SparseTargets top = soft_targets_top_n(part, truth, 75.0, 2);
  REQUIRE(top.classes.size() == 2);
  CHECK(top.classes[0] == 0);
  CHECK(top.classes[1] == 1);
  CHECK(top.weights[0] + top.weights[1] == doctest::Approx(1.0));
  CHECK(top.weights[1] / top.weights[0] == doctest::Approx(y[1] / y[0]).epsilon(1e-5));
  CHECK_THROWS_AS(soft_targets(part, truth, 0.0), geoloc::ValueError);
}

TEST_CASE("spherical k-means finds separated clusters, deterministically") {
  std::vector<LatLng> pts;
  const LatLng centres[] = {{10, 179.5}, {-40, 20}, {60, -100}};  // one straddles the antimeridian
  for (const LatLng& c : centres)
    for (int i = 0; i < 200; ++i) pts.push_back(destination(c, i * 37.0, 5.0 + (i % 10) * 10.0));
  KMeansOptions opt;
  opt.k = 3;
  opt.seed = 9;
  const KMeansPartition km = KMeansPartition::fit(pts, opt);
  REQUIRE(km.size() == 3);
  for (const LatLng& c : centres) {
    const int k = km.assign(c);
    CHECK(haversine_km(km.center(k), c) < 20.0);
    CHECK(km.count(k) == 200);
  }
  const KMeansPartition again = KMeansPartition::fit(pts, opt);
  for (std::size_t k = 0; k < 3; ++k) CHECK(again.center(k) == km.center(k));
  opt.k = 0;
  CHECK_THROWS_AS(KMeansPartition::fit(pts, opt), geoloc::ValueError);
}

TEST_CASE("fishnet over a box and a triangle, with border cells merged") {
  FishnetOptions opt;
  opt.cell_deg = 1.0;
  opt.merge_below = 0.3;
  // 3.2 x 2 degrees: the last column is 0.2 wide and merges into its western neighbours.
  const FishnetPartition box = FishnetPartition::build(bounding_box(40, 10, 42, 13.2), opt);
  CHECK(box.rows() == 2);
  CHECK(box.cols() == 4);
  CHECK(box.size() == 6);
  CHECK(box.assign({40.5, 13.1}) == box.assign({40.5, 12.5}));
  CHECK(box.assign({41.5, 13.1}) == box.assign({41.5, 12.5}));
  CHECK(box.assign({40.5, 10.5}) != box.assign({41.5, 10.5}));
  CHECK(box.assign({39.9, 11}) == -1);
  CHECK(haversine_km(box.center(box.assign({40.5, 10.5})), {40.5, 10.5}) < 1.0);

  // A right triangle: the corner piece east of lng 4 covers 2 % of its cell and joins its west neighbour.
  const std::vector<LatLng> tri = {{0, 0}, {0, 4.2}, {4.2, 0}};
  const FishnetPartition t = FishnetPartition::build(tri, opt);
  CHECK(t.assign({3.5, 3.5}) == -1);  // outside the triangle, inside its box
  CHECK(t.assign({0.05, 4.1}) >= 0);
  CHECK(t.assign({0.05, 4.1}) == t.assign({0.5, 3.5}));
  CHECK(t.assign({4.05, 0.05}) == t.assign({3.5, 0.5}));
  for (std::size_t c = 0; c < t.size(); ++c) CHECK(t.assign(t.center(c)) == static_cast<int>(c));

  // With points, sparse cells merge into the busiest neighbouring class and centres are point means.
  std::vector<LatLng> pts(100, LatLng{40.5, 10.5});
  pts.push_back({41.5, 12.5});
  const FishnetPartition byc = FishnetPartition::build(bounding_box(40, 10, 42, 13.2), opt, pts);
  CHECK(byc.size() == 1);  // the empty cells grow onto the only busy one, pass by pass
  CHECK(byc.count(0) == 101);
  CHECK_THROWS_AS(FishnetPartition::build(std::vector<LatLng>{{0, 0}, {1, 1}}, opt), geoloc::ValueError);
}

TEST_CASE("tangent-plane offsets round trip; class scales are half the distance to the nearest centre") {
  const LatLng origin{48.8, 2.3};
  for (const LatLng p : {LatLng{48.8, 2.3}, LatLng{50.1, 8.7}, LatLng{40.4, -3.7}, LatLng{-33.9, 151.2}}) {
    const auto [east, north] = tangent_offset_km(origin, p);
    CHECK(std::hypot(east, north) == doctest::Approx(haversine_km(origin, p)));
    CHECK(haversine_km(from_tangent_offset_km(origin, east, north), p) < 1e-3);
  }
  const auto [e, n] = tangent_offset_km(origin, {50.8, 2.3});  // due north
  CHECK(std::fabs(e) < 1e-6);
  CHECK(n == doctest::Approx(haversine_km(origin, {50.8, 2.3})));
  const KMeansPartition three({{0.0, 0.0}, {0.0, 10.0}, {0.0, 30.0}});
  const auto s = class_scales_km(three);
  REQUIRE(s.size() == 3);
  CHECK(s[0] == doctest::Approx(0.5 * haversine_km({0.0, 0.0}, {0.0, 10.0})));
  CHECK(s[2] == doctest::Approx(0.5 * haversine_km({0.0, 10.0}, {0.0, 30.0})));
}
