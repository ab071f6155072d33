#include "geoloc/geo/kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "geoloc/error.hpp"
#include "geoloc/random.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::geo {
namespace {

double dot(const Vec3& a, const Vec3& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

// Points per task of the pool: each point is a few (k) dot products.
constexpr std::size_t kChunk = 4096;

// k-means++ (Arthur & Vassilvitskii 2007): each new seed is drawn with probability proportional
// to the squared chord distance 2(1 - cos) to the nearest seed so far.
std::vector<Vec3> seed_plus_plus(const std::vector<Vec3>& u, int k, random::Rng& gen) {
  std::mt19937_64& rng = gen.engine();
  std::vector<Vec3> seeds{u[std::uniform_int_distribution<std::size_t>(0, u.size() - 1)(rng)]};
  std::vector<double> d2(u.size());
  parallel_for(u.size(), kChunk, [&](std::size_t i) { d2[i] = 2.0 * (1.0 - dot(u[i], seeds[0])); });
  while (static_cast<int>(seeds.size()) < k) {
    double total = 0;
    for (double v : d2) total += std::max(v, 0.0);
    std::size_t pick = 0;
    if (total > 0) {
      double r = std::uniform_real_distribution<double>(0.0, total)(rng);
      while (pick + 1 < u.size() && (r -= std::max(d2[pick], 0.0)) > 0) ++pick;
    } else {  // every point coincides with a seed: any point will do
      pick = std::uniform_int_distribution<std::size_t>(0, u.size() - 1)(rng);
    }
    seeds.push_back(u[pick]);
    const Vec3 s = seeds.back();
    parallel_for(u.size(), kChunk, [&](std::size_t i) { d2[i] = std::min(d2[i], 2.0 * (1.0 - dot(u[i], s))); });
  }
  return seeds;
}

}  // namespace

KMeansPartition::KMeansPartition(std::vector<LatLng> centroids, std::vector<std::int64_t> counts)
    : centroids_(std::move(centroids)), counts_(std::move(counts)) {
  GEOLOC_CHECK(!centroids_.empty(), ValueError, "KMeansPartition: no centroids");
  validate_all(centroids_, "centroids");
  if (counts_.empty()) counts_.assign(centroids_.size(), 0);
  GEOLOC_CHECK(counts_.size() == centroids_.size(), ValueError, "KMeansPartition: ", centroids_.size(),
               " centroids but ", counts_.size(), " counts");
  for (const LatLng& c : centroids_) units_.push_back(to_unit(c));
}

int KMeansPartition::nearest(const Vec3& u) const {
  int best = 0;
  double best_dot = -2.0;
  for (std::size_t c = 0; c < units_.size(); ++c) {
    const double d = dot(u, units_[c]);
    if (d > best_dot) {
      best_dot = d;
      best = static_cast<int>(c);
    }
  }
  return best;
}

int KMeansPartition::assign(LatLng p) const { return nearest(to_unit(p)); }

KMeansPartition KMeansPartition::fit(std::span<const LatLng> points, const KMeansOptions& opt) {
  validate_all(points);
  GEOLOC_CHECK(opt.k >= 1 && static_cast<std::size_t>(opt.k) <= points.size(), ValueError, "k-means: k = ", opt.k,
               " must be between 1 and the number of points (", points.size(), ")");
  GEOLOC_CHECK(opt.max_iterations >= 0, ValueError, "k-means: max_iterations ", opt.max_iterations, " is negative");
  std::vector<Vec3> u(points.size());
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = to_unit(points[i]);
  random::Rng rng(opt.seed);
  std::vector<Vec3> seeds = seed_plus_plus(u, opt.k, rng);
  std::vector<LatLng> start(seeds.size());
  std::transform(seeds.begin(), seeds.end(), start.begin(), from_unit);
  KMeansPartition part(std::move(start));

  std::vector<int> label(u.size(), -1);
  const std::size_t chunks = (u.size() + kChunk - 1) / kChunk;
  std::vector<std::int64_t> changed(chunks);
  auto relabel = [&] {  // returns how many points changed cluster
    // One count per fixed chunk of points, summed in chunk order: the same for any thread count.
    run_tasks(static_cast<std::int64_t>(chunks), [&](std::int64_t t) {
      const std::size_t i0 = static_cast<std::size_t>(t) * kChunk, i1 = std::min(u.size(), i0 + kChunk);
      std::int64_t n = 0;
      for (std::size_t i = i0; i < i1; ++i) {
        const int c = part.nearest(u[i]);
        n += c != label[i];
        label[i] = c;
      }
      changed[t] = n;
    });
    std::int64_t total = 0;
    for (std::int64_t n : changed) total += n;
    return total;
  };
  for (int it = 0; it < opt.max_iterations; ++it) {
    if (relabel() == 0) break;
    part.iterations_ = it + 1;
    // Sums in point order, not per thread, so the result does not depend on the thread count.
    std::vector<Vec3> sum(part.units_.size());
    for (std::size_t i = 0; i < u.size(); ++i) {
      Vec3& s = sum[label[i]];
      s.x += u[i].x;
      s.y += u[i].y;
      s.z += u[i].z;
    }
    for (std::size_t c = 0; c < sum.size(); ++c) {
      const double len = std::sqrt(dot(sum[c], sum[c]));
      if (len > 1e-12) {  // an emptied (or cancelled-out) cluster keeps its previous centroid
        part.units_[c] = {sum[c].x / len, sum[c].y / len, sum[c].z / len};
        part.centroids_[c] = from_unit(part.units_[c]);
      }
    }
  }
  relabel();  // the last update moved the centroids after the labels were taken
  std::fill(part.counts_.begin(), part.counts_.end(), 0);
  for (int c : label) ++part.counts_[c];
  return part;
}

}  // namespace geoloc::geo
