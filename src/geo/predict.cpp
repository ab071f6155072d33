#include "geoloc/geo/predict.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {

void check_probs(const Partition& partition, std::span<const float> probs, const char* fn) {
  GEOLOC_CHECK(probs.size() == partition.size(), ValueError, fn, ": ", probs.size(), " probabilities for ",
               partition.size(), " classes");
  GEOLOC_CHECK(!probs.empty(), ValueError, fn, ": the partition has no classes");
}

// Distances from `truth` to every class centre, through unit vectors: the chord formula
// 2R asin(|a-b|/2) equals the haversine distance and costs no trigonometry per class beyond asin.
std::vector<double> distances_km(const Partition& partition, LatLng truth) {
  validate(truth, "soft target truth");
  const Vec3 t = to_unit(truth);
  std::vector<double> d(partition.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    const Vec3 c = to_unit(partition.center(i));
    const double dx = c.x - t.x, dy = c.y - t.y, dz = c.z - t.z;
    d[i] = 2.0 * kEarthRadiusKm * std::asin(std::min(1.0, 0.5 * std::sqrt(dx * dx + dy * dy + dz * dz)));
  }
  return d;
}

}  // namespace

LatLng predict_argmax(const Partition& partition, std::span<const float> probs) {
  check_probs(partition, probs, "predict_argmax");
  return partition.center(std::max_element(probs.begin(), probs.end()) - probs.begin());
}

LatLng predict_hierarchy(const Hierarchy& hierarchy, const CellPartition& finest,
                         std::span<const std::span<const float>> probs) {
  GEOLOC_CHECK(hierarchy.size() == finest.size(), ValueError, "predict_hierarchy: the hierarchy has ",
               hierarchy.size(), " finest cells but the partition ", finest.size());
  return finest.center(hierarchy.argmax(probs));
}

LatLng predict_top_k(const Partition& partition, std::span<const float> probs, int k) {
  check_probs(partition, probs, "predict_top_k");
  GEOLOC_CHECK(k >= 1, ValueError, "predict_top_k: k = ", k, " must be at least 1");
  std::vector<int> idx(probs.size());
  std::iota(idx.begin(), idx.end(), 0);
  const auto kk = std::min<std::size_t>(k, idx.size());
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  std::vector<LatLng> pts(kk);
  std::vector<double> w(kk);
  for (std::size_t i = 0; i < kk; ++i) {
    pts[i] = partition.center(idx[i]);
    w[i] = std::max(0.0f, probs[idx[i]]);
  }
  // All-zero top-k probabilities carry no preference: fall back to the unweighted mean.
  if (std::all_of(w.begin(), w.end(), [](double x) { return x == 0.0; })) std::fill(w.begin(), w.end(), 1.0);
  return spherical_mean(pts, w);
}

std::vector<float> soft_targets(const Partition& partition, LatLng truth, double tau_km) {
  GEOLOC_CHECK(tau_km > 0, ValueError, "soft_targets: tau ", tau_km, " km must be positive");
  GEOLOC_CHECK(partition.size() > 0, ValueError, "soft_targets: the partition has no classes");
  const std::vector<double> d = distances_km(partition, truth);
  const double dmin = *std::min_element(d.begin(), d.end());
  // Subtracting the minimum keeps the largest term at exp(0) = 1, so nothing underflows to an all-zero vector.
  std::vector<double> e(d.size());
  double sum = 0;
  for (std::size_t i = 0; i < d.size(); ++i) sum += e[i] = std::exp(-(d[i] - dmin) / tau_km);
  std::vector<float> y(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) y[i] = static_cast<float>(e[i] / sum);
  return y;
}

SparseTargets soft_targets_top_n(const Partition& partition, LatLng truth, double tau_km, int top_n) {
  GEOLOC_CHECK(tau_km > 0, ValueError, "soft_targets_top_n: tau ", tau_km, " km must be positive");
  GEOLOC_CHECK(top_n >= 1, ValueError, "soft_targets_top_n: top_n = ", top_n, " must be at least 1");
  GEOLOC_CHECK(partition.size() > 0, ValueError, "soft_targets_top_n: the partition has no classes");
  const std::vector<double> d = distances_km(partition, truth);
  std::vector<int> idx(d.size());
  std::iota(idx.begin(), idx.end(), 0);
  const auto n = std::min<std::size_t>(top_n, idx.size());
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int a, int b) { return d[a] < d[b]; });
  SparseTargets out;
  double sum = 0;
  std::vector<double> e(n);
  for (std::size_t i = 0; i < n; ++i) sum += e[i] = std::exp(-(d[idx[i]] - d[idx[0]]) / tau_km);
  for (std::size_t i = 0; i < n; ++i) {
    out.classes.push_back(idx[i]);
    out.weights.push_back(static_cast<float>(e[i] / sum));
  }
  return out;
}

std::pair<double, double> tangent_offset_km(LatLng origin, LatLng p) {
  const double d = haversine_km(origin, p);
  if (d == 0.0) return {0.0, 0.0};
  const double b = initial_bearing_deg(origin, p) * 3.14159265358979323846 / 180.0;
  return {d * std::sin(b), d * std::cos(b)};
}

LatLng from_tangent_offset_km(LatLng origin, double east_km, double north_km) {
  const double d = std::hypot(east_km, north_km);
  if (d == 0.0) return origin;
  return destination(origin, std::atan2(east_km, north_km) * 180.0 / 3.14159265358979323846, d);
}

std::vector<double> class_scales_km(const Partition& partition, double min_km) {
  const size_t n = partition.size();
  const std::vector<LatLng> c = partition.centers();
  std::vector<double> s(n, 1000.0);
  if (n < 2) return s;
  for (size_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < n; ++j)
      if (j != i) best = std::min(best, haversine_km(c[i], c[j]));
    s[i] = std::max(0.5 * best, min_km);
  }
  return s;
}

}  // namespace geoloc::geo
