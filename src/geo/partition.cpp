#include "geoloc/geo/partition.hpp"

#include <s2/s2cell_id.h>
#include <s2/s2latlng.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <numeric>
#include <ostream>

#include "geoloc/atomic_file.hpp"
#include "geoloc/error.hpp"
#include "geoloc/geo/csv.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::geo {
namespace {

LatLng to_latlng(const S2Point& p) { return from_unit({p.x(), p.y(), p.z()}); }

// Shortest text that reads back to the same double, so that CSV round trips are exact.
void write_double(std::ostream& out, double v) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.write(buf, res.ptr - buf);
}

// Sorts chunks in parallel, then merges them pairwise: the sort dominates partitioning time. One
// chunk per thread of the pool; the sorted result is the same for any chunking.
void parallel_sort(std::vector<std::uint64_t>& v) {
  const int threads = num_threads();
  const std::size_t n = v.size();
  if (threads == 1 || n < (1u << 16)) {
    std::sort(v.begin(), v.end());
    return;
  }
  std::vector<std::size_t> bounds(threads + 1);
  for (int t = 0; t <= threads; ++t) bounds[t] = n * t / threads;
  run_tasks(threads, [&](std::int64_t t) { std::sort(v.begin() + bounds[t], v.begin() + bounds[t + 1]); });
  std::vector<std::uint64_t> merged(n);
  for (int width = 1; width < threads; width *= 2) {
    run_tasks((threads + 2 * width - 1) / (2 * width), [&](std::int64_t task) {
      const int t = static_cast<int>(task) * 2 * width;
      const std::size_t lo = bounds[t], mid = bounds[std::min(t + width, threads)],
                        hi = bounds[std::min(t + 2 * width, threads)];
      std::merge(v.begin() + lo, v.begin() + mid, v.begin() + mid, v.begin() + hi, merged.begin() + lo);
    });
    v.swap(merged);
  }
}

struct KeptRange {
  S2CellId cell;
  std::size_t lo, hi;  // range of the sorted leaves inside the cell
};

// The recursive split of every partitioning at once. `order` lists the partitionings by
// decreasing tau_max, so at each cell the ones that stop splitting form a prefix of those
// still active and the others continue into the children together.
class Splitter {
 public:
  Splitter(const std::vector<std::uint64_t>& leaves, const AdaptiveOptions& opt, std::vector<std::size_t> order)
      : leaves_(leaves), opt_(opt), order_(std::move(order)), kept_(order_.size()) {}

  std::vector<std::vector<KeptRange>> run() {
    for (std::size_t lo = 0; lo < leaves_.size();) {
      const S2CellId top = S2CellId(leaves_[lo]).parent(opt_.min_level);
      const std::size_t hi = end_of(top, lo, leaves_.size());
      split(top, lo, hi, 0);
      lo = hi;
    }
    return std::move(kept_);
  }

 private:
  // First index in [lo, hi) past the leaves of `cell` (leaves from lo on are >= cell.range_min()).
  std::size_t end_of(S2CellId cell, std::size_t lo, std::size_t hi) const {
    return std::upper_bound(leaves_.begin() + lo, leaves_.begin() + hi, cell.range_max().id()) - leaves_.begin();
  }

  void split(S2CellId cell, std::size_t lo, std::size_t hi, std::size_t first_active) {
    const auto count = static_cast<std::int64_t>(hi - lo);
    std::size_t k = first_active;
    for (; k < order_.size() && (count <= opt_.tau_max[order_[k]] || cell.level() == opt_.max_level); ++k)
      if (count >= opt_.tau_min) kept_[order_[k]].push_back({cell, lo, hi});
    if (k == order_.size()) return;
    for (S2CellId child = cell.child_begin(); child != cell.child_end(); child = child.next()) {
      const std::size_t child_hi = end_of(child, lo, hi);
      if (child_hi > lo) split(child, lo, child_hi, k);
      lo = child_hi;
    }
  }

  const std::vector<std::uint64_t>& leaves_;
  const AdaptiveOptions& opt_;
  std::vector<std::size_t> order_;
  std::vector<std::vector<KeptRange>> kept_;
};

}  // namespace

std::string cell_token(std::uint64_t id) { return S2CellId(id).ToToken(); }

std::uint64_t cell_from_token(std::string_view token) {
  const S2CellId id = S2CellId::FromToken(std::string(token));
  GEOLOC_CHECK(id.is_valid(), IoError, "'", token, "' is not a valid S2 cell token");
  return id.id();
}

std::uint64_t leaf_cell(LatLng p) { return S2CellId(S2LatLng::FromDegrees(p.lat, p.lng)).id(); }

// ---- Partition ----

std::vector<int> Partition::assign_all(std::span<const LatLng> points) const {
  validate_all(points);
  std::vector<int> classes(points.size());
  parallel_for(points.size(), 4096, [&](std::size_t i) { classes[i] = assign(points[i]); });
  return classes;
}

std::vector<LatLng> Partition::centers() const {
  std::vector<LatLng> out(size());
  for (std::size_t c = 0; c < out.size(); ++c) out[c] = center(c);
  return out;
}

int Partition::assign_nearest(LatLng p) const {
  if (const int c = assign(p); c >= 0) return c;
  int best = -1;
  double best_km = 0;
  for (std::size_t c = 0; c < size(); ++c)
    if (const double d = haversine_km(p, center(c)); best < 0 || d < best_km) {
      best = static_cast<int>(c);
      best_km = d;
    }
  return best;
}

std::vector<LatLng> Partition::cell_centers_of(std::span<const LatLng> points) const {
  validate_all(points);
  GEOLOC_CHECK(size() > 0, ValueError, "cell centres: the partition has no classes");
  std::vector<LatLng> out(points.size());
  const auto n = static_cast<std::ptrdiff_t>(points.size());
#pragma omp parallel for schedule(dynamic, 64)
  for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = center(static_cast<std::size_t>(assign_nearest(points[i])));
  return out;
}

// ---- CellPartition ----

CellPartition::CellPartition(std::vector<Cell> cells) : cells_(std::move(cells)) {
  class_of_.reserve(cells_.size());
  for (std::size_t c = 0; c < cells_.size(); ++c) {
    Cell& cell = cells_[c];
    const S2CellId id(cell.id);
    GEOLOC_CHECK(id.is_valid(), ValueError, "cell ", c, ": ", cell.id, " is not a valid S2 cell id");
    GEOLOC_CHECK(class_of_.emplace(cell.id, static_cast<int>(c)).second, ValueError, "cell ", id.ToToken(),
                 " appears twice");
    GEOLOC_CHECK(cell.count >= 0, ValueError, "cell ", id.ToToken(), " has a negative count ", cell.count);
    if (!(cell.mean.lat >= -90.0 && cell.mean.lat <= 90.0 && cell.mean.lng >= -180.0 && cell.mean.lng <= 180.0))
      validate(cell.mean, detail::cat("cell ", id.ToToken(), " mean"));  // throws, naming the problem
    cell.level = id.level();
    cell.s2_center = to_latlng(id.ToPoint());
    level_mask_ |= 1u << cell.level;
  }
  // S2 cells are either nested or disjoint, so sorted by range start, overlaps show up between neighbours.
  std::vector<S2CellId> sorted;
  sorted.reserve(cells_.size());
  for (const Cell& c : cells_) sorted.emplace_back(c.id);
  std::sort(sorted.begin(), sorted.end(), [](S2CellId a, S2CellId b) { return a.range_min() < b.range_min(); });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    GEOLOC_CHECK(!sorted[i - 1].intersects(sorted[i]), ValueError, "cells ", sorted[i - 1].ToToken(), " and ",
                 sorted[i].ToToken(), " overlap (one contains the other)");
}

int CellPartition::assign_cell(std::uint64_t id) const {
  const S2CellId cell(id);
  if (!cell.is_valid()) return -1;
  // Only the levels that occur need a hash lookup, from the finest present at or above the cell.
  std::uint32_t levels = level_mask_ & ((2u << cell.level()) - 1);
  while (levels) {
    const int level = 31 - std::countl_zero(levels);
    if (auto it = class_of_.find(cell.parent(level).id()); it != class_of_.end()) return it->second;
    levels &= ~(1u << level);
  }
  return -1;
}

int CellPartition::assign(LatLng p) const { return assign_cell(leaf_cell(p)); }

std::int64_t CellPartition::total_count() const {
  return std::accumulate(cells_.begin(), cells_.end(), std::int64_t{0},
                         [](std::int64_t s, const Cell& c) { return s + c.count; });
}

std::vector<std::size_t> CellPartition::cells_per_level() const {
  std::vector<std::size_t> n(S2CellId::kMaxLevel + 1, 0);
  for (const Cell& c : cells_) ++n[c.level];
  return n;
}

CellPartition CellPartition::read_csv(const std::string& path) { return parse_csv(read_text_file(path), path); }

CellPartition CellPartition::parse_csv(std::string_view text, const std::string& path) {
  enum Column { kLabel, kToken, kCount, kLat, kLng };
  static constexpr const char* kNames[] = {"class_label", "hex_id", "imgs_per_cell", "latitude_mean",
                                           "longitude_mean"};
  std::vector<int> column;  // empty until the header has been read
  std::vector<Cell> cells;
  std::vector<long long> labels;
  for_each_csv_row(text, path, [&](const CsvRow& row) {
    if (column.empty()) {
      // The ECCV 2018 files start with "num_images: N" and "min_concept_probability: p".
      if (row.fields.size() == 1 && row.fields[0].find(':') != std::string::npos) return;
      for (const char* name : kNames) {
        column.push_back(find_column(row.fields, name));
        if (column.back() < 0) row.fail(detail::cat("the header has no '", name, "' column"));
      }
      return;
    }
    Cell cell;
    try {
      cell.id = cell_from_token(row.fields.at(column[kToken]));
    } catch (const std::exception& e) {
      row.fail(detail::cat("hex_id: ", e.what()));
    }
    cell.count = row.integer(column[kCount], "imgs_per_cell");
    if (cell.count < 0) row.fail(detail::cat("imgs_per_cell ", cell.count, " is negative"));
    cell.mean = {row.number(column[kLat], "latitude_mean"), row.number(column[kLng], "longitude_mean")};
    try {
      validate(cell.mean, "mean");
    } catch (const ValueError& e) {
      row.fail(e.what());
    }
    labels.push_back(row.integer(column[kLabel], "class_label"));
    cells.push_back(cell);
  });
  GEOLOC_CHECK(!column.empty(), IoError, path, ": no header line");
  // Labels may come in any order but must number the classes 0..n-1.
  std::vector<Cell> ordered(cells.size());
  std::vector<bool> seen(cells.size(), false);
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const long long label = labels[i];
    GEOLOC_CHECK(label >= 0 && label < static_cast<long long>(cells.size()) && !seen[label], IoError, path,
                 ": class labels must be 0..", cells.size() - 1, " without repeats (found ", label, ")");
    seen[label] = true;
    ordered[label] = cells[i];
  }
  try {
    return CellPartition(std::move(ordered));
  } catch (const ValueError& e) {
    throw IoError(detail::cat(path, ": ", e.what()));
  }
}

void CellPartition::write_csv(const std::string& path) const {
  write_file_atomic(path, [this](std::ostream& out) {
    out << "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n";
    for (std::size_t c = 0; c < cells_.size(); ++c) {
      const Cell& cell = cells_[c];
      out << c << ',' << cell_token(cell.id) << ',' << cell.count << ',';
      write_double(out, cell.mean.lat);
      out << ',';
      write_double(out, cell.mean.lng);
      out << '\n';
    }
  });
}

// ---- adaptive construction ----

std::vector<CellPartition> build_adaptive_partitions(std::span<const LatLng> points, const AdaptiveOptions& opt) {
  GEOLOC_CHECK(opt.min_level >= 0 && opt.min_level <= opt.max_level && opt.max_level <= S2CellId::kMaxLevel,
               ValueError, "adaptive partition: need 0 <= min_level <= max_level <= 30 (got ", opt.min_level, ", ",
               opt.max_level, ")");
  GEOLOC_CHECK(opt.tau_min >= 0, ValueError, "adaptive partition: tau_min ", opt.tau_min, " is negative");
  GEOLOC_CHECK(!opt.tau_max.empty(), ValueError, "adaptive partition: no tau_max given");
  for (std::int64_t t : opt.tau_max)
    GEOLOC_CHECK(t >= 1, ValueError, "adaptive partition: tau_max ", t, " must be at least 1");
  validate_all(points);

  std::vector<std::uint64_t> leaves(points.size());
  parallel_for(points.size(), 4096, [&](std::size_t i) { leaves[i] = leaf_cell(points[i]); });
  parallel_sort(leaves);

  std::vector<std::size_t> order(opt.tau_max.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return opt.tau_max[a] > opt.tau_max[b]; });
  const auto kept = Splitter(leaves, opt, std::move(order)).run();

  std::vector<CellPartition> result;
  result.reserve(kept.size());
  for (const auto& ranges : kept) {
    std::vector<Cell> cells(ranges.size());
    // Means come from the leaf-cell centres (< 1 cm from the original points), which avoids
    // carrying a permutation of the points through the sort.
    parallel_for(ranges.size(), 16, [&](std::size_t c) {
      const KeptRange& r = ranges[c];
      S2Point sum(0, 0, 0);
      for (std::size_t i = r.lo; i < r.hi; ++i) sum += S2CellId(leaves[i]).ToPoint();
      cells[c].id = r.cell.id();
      cells[c].count = static_cast<std::int64_t>(r.hi - r.lo);
      cells[c].mean = to_latlng(sum);
    });
    result.emplace_back(std::move(cells));
  }
  return result;
}

}  // namespace geoloc::geo
