#pragma once
// Spherical k-means of training coordinates: clusters of unit vectors whose centroids are the
// classes (a data-driven alternative to S2 cells, e.g. for few classes).
#include <cstdint>
#include <span>
#include <vector>

#include "geoloc/geo/partition.hpp"

namespace geoloc::geo {

struct KMeansOptions {
  int k = 256;
  int max_iterations = 100;  // Lloyd iterations; stops earlier once no point changes cluster
  std::uint64_t seed = 0;    // seeds k-means++; the result is a function of points, options only
};

class KMeansPartition final : public Partition {
 public:
  /// Clusters `points` (k-means++ seeding, then Lloyd steps with cosine similarity).
  /// ValueError for invalid points or k outside 1..points.size().
  static KMeansPartition fit(std::span<const LatLng> points, const KMeansOptions& options);
  /// A partition from known centroids (e.g. loaded from a model); counts may be empty.
  KMeansPartition(std::vector<LatLng> centroids, std::vector<std::int64_t> counts = {});

  std::size_t size() const override { return centroids_.size(); }
  LatLng center(std::size_t c) const override { return centroids_.at(c); }
  std::int64_t count(std::size_t c) const override { return counts_.at(c); }
  /// The nearest centroid (never -1 for a valid point).
  int assign(LatLng p) const override;
  /// Centroid updates that fit() made before converging or reaching max_iterations.
  int iterations() const { return iterations_; }

 private:
  int nearest(const Vec3& u) const;

  std::vector<LatLng> centroids_;
  std::vector<Vec3> units_;
  std::vector<std::int64_t> counts_;
  int iterations_ = 0;
};

}  // namespace geoloc::geo
