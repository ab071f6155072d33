#pragma once
// Several S2 partitionings seen as one hierarchy (Müller-Budack et al., ECCV 2018): every cell of
// the finest partitioning is scored by the product of the probabilities of the cells containing
// it, one per partitioning.
#include <span>
#include <vector>

#include "geoloc/geo/partition.hpp"

namespace geoloc::geo {

class Hierarchy {
 public:
  /// `partitions` ordered from coarse to fine; the last one is the finest. Only the containment
  /// relation is stored, so the partitions need not outlive the hierarchy.
  explicit Hierarchy(std::span<const CellPartition> partitions);

  /// Number of partitionings (levels of the hierarchy).
  std::size_t num_partitions() const { return sizes_.size(); }
  /// Number of cells of the finest partitioning.
  std::size_t size() const { return sizes_.empty() ? 0 : sizes_.back(); }
  /// The class in partitioning `p` whose cell contains finest cell `fine`, or -1 when partitioning
  /// `p` has no such cell (its cell there was dropped, or it is split finer than `fine`).
  int ancestor(std::size_t fine, std::size_t p) const { return ancestors_.at(fine * sizes_.size() + p); }

  /// Hierarchical score of each finest cell: the product over partitionings of probs[p][ancestor].
  /// A missing ancestor contributes 1/size(p), the probability of a head that knows nothing about
  /// that region, so such cells are neither favoured nor excluded.
  /// probs[p] must have one entry per class of partitioning p (ValueError otherwise).
  std::vector<double> scores(std::span<const std::span<const float>> probs) const;
  /// The finest class with the highest score (ties: the lowest class id).
  int argmax(std::span<const std::span<const float>> probs) const;

 private:
  std::vector<std::size_t> sizes_;  // classes per partitioning
  std::vector<int> ancestors_;      // [fine][partitioning], row-major
};

}  // namespace geoloc::geo
