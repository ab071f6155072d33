#pragma once
// From class probabilities to a coordinate, and from a coordinate to soft class targets.
#include <span>
#include <utility>
#include <vector>

#include "geoloc/geo/hierarchy.hpp"
#include "geoloc/geo/partition.hpp"

namespace geoloc::geo {

/// The centre of the most probable class. ValueError when probs.size() != partition.size().
LatLng predict_argmax(const Partition& partition, std::span<const float> probs);

/// The mean of the finest cell with the best hierarchical score (see Hierarchy::scores).
/// `finest` is the partitioning the hierarchy was built with last.
LatLng predict_hierarchy(const Hierarchy& hierarchy, const CellPartition& finest,
                         std::span<const std::span<const float>> probs);

/// "Centroid interpolation": the spherical mean of the centres of the k most probable classes,
/// weighted by their probabilities. k = 1 is predict_argmax.
LatLng predict_top_k(const Partition& partition, std::span<const float> probs, int k);

/// Haversine-smoothed targets (PIGEON, Haas et al. 2024): y_i proportional to
/// exp(-(d_i - min_j d_j) / tau_km), d_i the distance from `truth` to centre(i); sums to 1.
std::vector<float> soft_targets(const Partition& partition, LatLng truth, double tau_km);

/// The same targets restricted to the top_n nearest classes (renormalised), in decreasing weight.
struct SparseTargets {
  std::vector<int> classes;
  std::vector<float> weights;
};
/// The (east, north) offset in km of `p` from `origin` in origin's tangent plane (azimuthal
/// equidistant: the great-circle distance along the initial bearing), and its inverse.
std::pair<double, double> tangent_offset_km(LatLng origin, LatLng p);
LatLng from_tangent_offset_km(LatLng origin, double east_km, double north_km);
/// The size of each class for the hybrid head's offsets: half the distance from its centre to the
/// nearest other centre, at least min_km (a single class: 1000 km).
std::vector<double> class_scales_km(const Partition& partition, double min_km = 10.0);

SparseTargets soft_targets_top_n(const Partition& partition, LatLng truth, double tau_km, int top_n);

}  // namespace geoloc::geo
