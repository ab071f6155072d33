#pragma once
// A regular latitude/longitude grid ("fishnet") clipped to a region, as used by country-scale
// geolocation: each grid cell inside the region is a class; slivers on the border are merged
// into a neighbour so that no class is tiny.
#include <span>
#include <vector>

#include "geoloc/geo/partition.hpp"

namespace geoloc::geo {

struct FishnetOptions {
  double cell_deg = 1.0;     // grid step, degrees of latitude and of longitude
  double merge_below = 0.25; // a cell whose fraction (see build) is below this joins a neighbour
};

/// The ring of a latitude/longitude box, usable as a fishnet region.
std::vector<LatLng> bounding_box(double min_lat, double min_lng, double max_lat, double max_lng);

class FishnetPartition final : public Partition {
 public:
  /// Grid over `region`, a simple polygon (one ring, edges straight in lat/lng, not crossing the
  /// antimeridian). Without points, a cell's fraction is the part of its area inside the region;
  /// with points, it is its number of points over the mean per cell, and class centres are the
  /// spherical means of the points (else area centroids). A small cell joins the neighbouring
  /// (8-connected) full-size cell with the largest area or count; one without such a neighbour
  /// stays a class of its own. ValueError on a degenerate region or options.
  static FishnetPartition build(std::span<const LatLng> region, const FishnetOptions& options,
                                std::span<const LatLng> points = {});

  std::size_t size() const override { return centers_.size(); }
  LatLng center(std::size_t c) const override { return centers_.at(c); }
  std::int64_t count(std::size_t c) const override { return counts_.at(c); }
  /// The class of the grid cell holding `p`, or -1 outside the region.
  int assign(LatLng p) const override;

  /// Grid geometry: rows from min_lat northwards, columns from min_lng eastwards.
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 private:
  int grid_cell(LatLng p) const;  // row-major grid index, or -1 outside the grid box

  std::vector<LatLng> region_;
  double min_lat_ = 0, min_lng_ = 0, step_ = 1;
  int rows_ = 0, cols_ = 0;
  std::vector<int> class_of_cell_;  // grid cell -> class (-1: no part inside the region)
  std::vector<LatLng> centers_;
  std::vector<std::int64_t> counts_;
};

}  // namespace geoloc::geo
