#pragma once
// Partitions of the Earth into classes for classification heads. `Partition` is the common
// interface (S2 cells, lat/lng grids and k-means clusters all implement it); `CellPartition` is
// the adaptive S2 partitioning of PlaNet (Weyand et al. 2016) and Müller-Budack et al. (ECCV 2018).
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

/// A set of classes, each with a representative coordinate; assign() maps a point to its class.
class Partition {
 public:
  virtual ~Partition() = default;
  /// Number of classes; class ids are 0 .. size()-1.
  virtual std::size_t size() const = 0;
  /// The coordinate predicted for class `c` (the mean of its training points where known).
  virtual LatLng center(std::size_t c) const = 0;
  /// Number of training points of class `c` (0 where the partition was not built from points).
  virtual std::int64_t count(std::size_t c) const = 0;
  /// The class containing `p`, or -1 when `p` lies in no class (a dropped cell, outside the grid).
  virtual int assign(LatLng p) const = 0;

  /// assign() for many points, in parallel. Validates them first (ValueError naming the row).
  std::vector<int> assign_all(std::span<const LatLng> points) const;
  /// center(c) for every class.
  std::vector<LatLng> centers() const;
  /// assign(p), or where `p` lies in no class, the class with the nearest center (the cell a
  /// partitioning with gaps gives a point, e.g. for the mean error between cell centroids).
  /// -1 only for an empty partition.
  int assign_nearest(LatLng p) const;
  /// center(assign_nearest(p)) of every point, in parallel. ValueError for an empty partition.
  std::vector<LatLng> cell_centers_of(std::span<const LatLng> points) const;
};

/// One S2 cell of a partitioning.
struct Cell {
  std::uint64_t id = 0;     // S2CellId
  int level = 0;            // S2 level, 0 (face) .. 30 (leaf, about 1 cm)
  std::int64_t count = 0;   // training points inside
  LatLng mean;              // spherical mean of those points
  LatLng s2_center;         // centre of the cell itself
};

/// The S2 token (hex id without trailing zeros) of a cell id, e.g. "47a1".
std::string cell_token(std::uint64_t id);
/// The cell id of a token; IoError when the token is not a valid S2 cell.
std::uint64_t cell_from_token(std::string_view token);
/// The leaf (level-30) cell id containing `p`.
std::uint64_t leaf_cell(LatLng p);

/// A set of disjoint S2 cells, one class each (class id = position in cells()).
class CellPartition final : public Partition {
 public:
  CellPartition() = default;
  /// Takes the cells in class order; level and s2_center are recomputed from the ids.
  /// ValueError on an invalid id, a duplicate, two cells where one contains the other, a negative count
  /// or a mean that is not a valid coordinate.
  explicit CellPartition(std::vector<Cell> cells);

  std::size_t size() const override { return cells_.size(); }
  LatLng center(std::size_t c) const override { return cells_.at(c).mean; }
  std::int64_t count(std::size_t c) const override { return cells_.at(c).count; }
  int assign(LatLng p) const override;

  /// The class of the kept cell equal to or containing cell `id` (any level, leaves included), or -1.
  int assign_cell(std::uint64_t id) const;
  const std::vector<Cell>& cells() const { return cells_; }
  const Cell& cell(std::size_t c) const { return cells_.at(c); }
  /// Total number of training points in the kept cells.
  std::int64_t total_count() const;
  /// Number of cells per S2 level (index = level, 0..30).
  std::vector<std::size_t> cells_per_level() const;

  /// Reads the ECCV 2018 format: `class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean`,
  /// optionally preceded by `num_images: N` and `min_concept_probability: p` lines. Class labels
  /// must be 0..n-1 (any order). IoError naming the line otherwise.
  static CellPartition read_csv(const std::string& path);
  /// The same for the text of such a file in memory; `name` labels errors (the path, for a file).
  static CellPartition parse_csv(std::string_view text, const std::string& name);
  /// Writes the same format (header line, rows in class order), atomically.
  void write_csv(const std::string& path) const;

 private:
  std::vector<Cell> cells_;
  std::unordered_map<std::uint64_t, int> class_of_;  // cell id -> class
  std::uint32_t level_mask_ = 0;                     // bit l set when some cell has level l
};

/// Parameters of the adaptive subdivision. A cell holding more than tau_max points is split into
/// its four children (until max_level); cells with fewer than tau_min points are dropped.
struct AdaptiveOptions {
  int min_level = 2;
  int max_level = 30;
  std::int64_t tau_min = 50;
  std::vector<std::int64_t> tau_max = {1000};  // one partitioning per value, any order
};

/// Builds one partitioning per options.tau_max in a single pass over the points (leaf ids
/// computed and sorted once; each partitioning is a recursive split over sorted ranges).
/// Result i belongs to tau_max[i]; cells are in S2 (Hilbert curve) order.
/// ValueError naming the row for an invalid point, or for inconsistent options.
std::vector<CellPartition> build_adaptive_partitions(std::span<const LatLng> points, const AdaptiveOptions& options);

}  // namespace geoloc::geo
