// Geography on geoloc's thread pool: the same results for any pool size, and exceptions thrown inside
// a parallel loop reach the caller with their type.
#include <doctest/doctest.h>

#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/geo/kmeans.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/geo/synthetic.hpp"
#include "geoloc/thread_pool.hpp"

using namespace geoloc::geo;

namespace {
// Restores the pool's size when a test case ends, failed or not.
struct PoolSize {
  int saved = geoloc::num_threads();
  ~PoolSize() { geoloc::set_num_threads(saved); }
};

struct Fit {
  std::vector<LatLng> centers;
  std::vector<std::int64_t> counts;
  int iterations;
};

Fit fit_with(int threads, const std::vector<LatLng>& points) {
  geoloc::set_num_threads(threads);
  KMeansOptions opt;
  opt.k = 40;
  opt.seed = 3;
  const KMeansPartition km = KMeansPartition::fit(points, opt);
  Fit f{km.centers(), {}, km.iterations()};
  for (std::size_t c = 0; c < km.size(); ++c) f.counts.push_back(km.count(c));
  return f;
}

// A partition whose assign() fails for northern points: stands for any error inside the loop.
struct Failing : Partition {
  std::size_t size() const override { return 1; }
  LatLng center(std::size_t) const override { return {}; }
  std::int64_t count(std::size_t) const override { return 0; }
  int assign(LatLng p) const override {
    if (p.lat > 50) throw geoloc::ValueError("north of 50");
    return 0;
  }
};
}  // namespace

TEST_CASE("k-means gives the same clusters with 1, 2 and 3 threads") {
  PoolSize keep;
  const std::vector<LatLng> points = synthetic_points(30000, 5);  // several chunks of 4096 points
  const Fit a = fit_with(1, points), b = fit_with(2, points), c = fit_with(3, points);
  REQUIRE(a.iterations > 1);
  CHECK(a.centers == b.centers);
  CHECK(a.centers == c.centers);
  CHECK(a.counts == b.counts);
  CHECK(a.counts == c.counts);
  CHECK(a.iterations == b.iterations);
  CHECK(a.iterations == c.iterations);
}

TEST_CASE("synthetic points and adaptive partitions do not depend on the pool size") {
  PoolSize keep;
  AdaptiveOptions opt;
  opt.tau_min = 10;
  opt.tau_max = {500, 2000};
  auto run = [&](int threads) {
    geoloc::set_num_threads(threads);
    const std::vector<LatLng> points = synthetic_points(70000, 8);  // > 65536: the sort runs in parallel
    std::vector<std::vector<Cell>> cells;
    for (const CellPartition& p : build_adaptive_partitions(points, opt)) cells.push_back(p.cells());
    return std::make_pair(points, cells);
  };
  const auto one = run(1), two = run(2), three = run(3);
  CHECK(one.first == two.first);
  CHECK(one.first == three.first);
  REQUIRE(one.second.size() == 2);
  for (std::size_t p = 0; p < 2; ++p)
    for (const auto* other : {&two.second, &three.second}) {
      REQUIRE((*other)[p].size() == one.second[p].size());
      for (std::size_t c = 0; c < one.second[p].size(); ++c) {
        CHECK((*other)[p][c].id == one.second[p][c].id);
        CHECK((*other)[p][c].count == one.second[p][c].count);
        CHECK((*other)[p][c].mean == one.second[p][c].mean);
      }
    }
}

TEST_CASE("an exception inside a parallel geography loop reaches the caller as itself") {
  PoolSize keep;
  const std::vector<LatLng> points = synthetic_points(20000, 1);
  for (int threads : {1, 2}) {
    geoloc::set_num_threads(threads);
    CHECK_THROWS_AS(Failing().assign_all(points), geoloc::ValueError);
    CHECK_THROWS_WITH(Failing().assign_all(points), "north of 50");
  }
}
