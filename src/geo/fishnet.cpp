#include "geoloc/geo/fishnet.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {

struct XY {
  double x, y;  // longitude, latitude: the region's edges are straight in this plane
};

// Sutherland-Hodgman against the four sides of a box: exact for a convex clip window, and the
// (possibly degenerate) result of a concave subject still has the right area and centroid.
std::vector<XY> clip_to_box(std::vector<XY> poly, double x0, double y0, double x1, double y1) {
  auto clip = [&poly](auto inside, auto cross) {
    std::vector<XY> out;
    for (std::size_t i = 0; i < poly.size(); ++i) {
      const XY a = poly[i], b = poly[(i + 1) % poly.size()];
      const bool ia = inside(a), ib = inside(b);
      if (ia) out.push_back(a);
      if (ia != ib) out.push_back(cross(a, b));
    }
    poly = std::move(out);
  };
  auto at_x = [](double x) {
    return [x](XY a, XY b) { return XY{x, a.y + (b.y - a.y) * (x - a.x) / (b.x - a.x)}; };
  };
  auto at_y = [](double y) {
    return [y](XY a, XY b) { return XY{a.x + (b.x - a.x) * (y - a.y) / (b.y - a.y), y}; };
  };
  clip([=](XY p) { return p.x >= x0; }, at_x(x0));
  clip([=](XY p) { return p.x <= x1; }, at_x(x1));
  clip([=](XY p) { return p.y >= y0; }, at_y(y0));
  clip([=](XY p) { return p.y <= y1; }, at_y(y1));
  return poly;
}

// Area (|shoelace|) and centroid of a polygon in the lng/lat plane.
struct AreaCentroid {
  double area = 0;
  XY centroid{0, 0};
};
AreaCentroid area_centroid(const std::vector<XY>& poly) {
  double a2 = 0, cx = 0, cy = 0;
  for (std::size_t i = 0; i < poly.size(); ++i) {
    const XY p = poly[i], q = poly[(i + 1) % poly.size()];
    const double w = p.x * q.y - q.x * p.y;
    a2 += w;
    cx += (p.x + q.x) * w;
    cy += (p.y + q.y) * w;
  }
  if (std::abs(a2) < 1e-300) return {};
  return {std::abs(a2) / 2, {cx / (3 * a2), cy / (3 * a2)}};
}

// Even-odd rule with the half-open convention on y, so a ray through a vertex counts once.
bool inside_polygon(const std::vector<LatLng>& ring, LatLng p) {
  bool in = false;
  for (std::size_t i = 0, j = ring.size() - 1; i < ring.size(); j = i++) {
    const LatLng a = ring[i], b = ring[j];
    if ((a.lat > p.lat) != (b.lat > p.lat) &&
        p.lng < a.lng + (b.lng - a.lng) * (p.lat - a.lat) / (b.lat - a.lat))
      in = !in;
  }
  return in;
}

}  // namespace

std::vector<LatLng> bounding_box(double min_lat, double min_lng, double max_lat, double max_lng) {
  return {{min_lat, min_lng}, {min_lat, max_lng}, {max_lat, max_lng}, {max_lat, min_lng}};
}

int FishnetPartition::grid_cell(LatLng p) const {
  const double fr = (p.lat - min_lat_) / step_, fc = (p.lng - min_lng_) / step_;
  if (!(fr >= 0 && fr <= rows_ && fc >= 0 && fc <= cols_)) return -1;
  // A point on the north or east edge of the grid belongs to the last row or column.
  const int r = std::min(static_cast<int>(fr), rows_ - 1), c = std::min(static_cast<int>(fc), cols_ - 1);
  return r * cols_ + c;
}

int FishnetPartition::assign(LatLng p) const {
  const int g = grid_cell(p);
  if (g < 0 || class_of_cell_[g] < 0 || !inside_polygon(region_, p)) return -1;
  return class_of_cell_[g];
}

FishnetPartition FishnetPartition::build(std::span<const LatLng> region, const FishnetOptions& opt,
                                         std::span<const LatLng> points) {
  GEOLOC_CHECK(region.size() >= 3, ValueError, "fishnet: the region needs at least 3 vertices, got ", region.size());
  GEOLOC_CHECK(opt.cell_deg > 0 && opt.cell_deg <= 90, ValueError, "fishnet: cell_deg ", opt.cell_deg,
               " must be in (0, 90]");
  GEOLOC_CHECK(opt.merge_below >= 0, ValueError, "fishnet: merge_below ", opt.merge_below, " is negative");
  validate_all(region, "fishnet region");
  validate_all(points);

  FishnetPartition f;
  f.region_.assign(region.begin(), region.end());
  if (f.region_.front() == f.region_.back()) f.region_.pop_back();  // a closed ring repeats its start
  double max_lat = -90, max_lng = -180;
  f.min_lat_ = 90;
  f.min_lng_ = 180;
  for (const LatLng& p : f.region_) {
    f.min_lat_ = std::min(f.min_lat_, p.lat);
    f.min_lng_ = std::min(f.min_lng_, p.lng);
    max_lat = std::max(max_lat, p.lat);
    max_lng = std::max(max_lng, p.lng);
  }
  f.step_ = opt.cell_deg;
  f.rows_ = std::max(1, static_cast<int>(std::ceil((max_lat - f.min_lat_) / f.step_ - 1e-9)));
  f.cols_ = std::max(1, static_cast<int>(std::ceil((max_lng - f.min_lng_) / f.step_ - 1e-9)));
  const std::size_t ncell = static_cast<std::size_t>(f.rows_) * f.cols_;
  GEOLOC_CHECK(ncell <= 50'000'000, ValueError, "fishnet: ", f.rows_, " x ", f.cols_, " cells is too many");

  // Area (weighted by cos(latitude), i.e. proportional to the true area) and centroid per cell.
  std::vector<XY> poly(f.region_.size());
  std::transform(f.region_.begin(), f.region_.end(), poly.begin(), [](LatLng p) { return XY{p.lng, p.lat}; });
  std::vector<double> fraction(ncell, 0.0), area(ncell, 0.0);
  std::vector<XY> centroid(ncell);
  for (int r = 0; r < f.rows_; ++r)
    for (int c = 0; c < f.cols_; ++c) {
      const double x0 = f.min_lng_ + c * f.step_, y0 = f.min_lat_ + r * f.step_;
      const AreaCentroid ac = area_centroid(clip_to_box(poly, x0, y0, x0 + f.step_, y0 + f.step_));
      const std::size_t g = static_cast<std::size_t>(r) * f.cols_ + c;
      fraction[g] = ac.area / (f.step_ * f.step_);
      area[g] = ac.area * std::cos(ac.centroid.y * std::numbers::pi / 180);
      centroid[g] = ac.centroid;
    }

  std::vector<int> cell_of_point(points.size(), -1);
  std::vector<std::int64_t> cell_count(ncell, 0);
  for (std::size_t i = 0; i < points.size(); ++i) {
    const int g = f.grid_cell(points[i]);
    if (g >= 0 && fraction[g] > 0 && inside_polygon(f.region_, points[i])) ++cell_count[cell_of_point[i] = g];
  }
  // share: what is compared with merge_below; weight: what "heaviest neighbour" compares.
  std::vector<double> share = fraction, weight = area;
  if (!points.empty()) {  // with points, "small" means few points relative to the average cell
    const auto used = std::count_if(fraction.begin(), fraction.end(), [](double x) { return x > 0; });
    const double mean = static_cast<double>(std::count_if(cell_of_point.begin(), cell_of_point.end(),
                                                           [](int g) { return g >= 0; })) / std::max<double>(1, used);
    for (std::size_t g = 0; g < ncell; ++g)
      if (fraction[g] > 0) {
        share[g] = mean > 0 ? cell_count[g] / mean : 1.0;
        weight[g] = static_cast<double>(cell_count[g]);
      }
  }

  // Full-size cells become classes in grid order. Small cells then join the heaviest class among
  // their neighbours, in passes, so that a run of slivers grows onto the nearest full cell; a
  // small cell never reached that way (an islet) becomes a class of its own.
  f.class_of_cell_.assign(ncell, -1);
  std::vector<double> class_weight;
  std::vector<std::size_t> pending;
  auto found_class = [&](std::size_t g) {
    f.class_of_cell_[g] = static_cast<int>(class_weight.size());
    class_weight.push_back(weight[g]);
  };
  for (std::size_t g = 0; g < ncell; ++g)
    if (fraction[g] > 0) {
      if (share[g] >= opt.merge_below)
        found_class(g);
      else
        pending.push_back(g);
    }
  for (bool progress = true; progress && !pending.empty();) {
    progress = false;
    std::vector<std::pair<std::size_t, int>> joins;  // decided on the previous pass's state
    std::vector<std::size_t> still;
    for (std::size_t g : pending) {
      const int r = static_cast<int>(g) / f.cols_, c = static_cast<int>(g) % f.cols_;
      int best = -1;
      // Cells sharing an edge first; corner neighbours only when no edge neighbour has a class.
      for (bool diagonal : {false, true}) {
        for (int dr = -1; dr <= 1; ++dr)
          for (int dc = -1; dc <= 1; ++dc) {
            const int rr = r + dr, cc = c + dc;
            if ((dr != 0 && dc != 0) != diagonal || rr < 0 || rr >= f.rows_ || cc < 0 || cc >= f.cols_) continue;
            if (const int k = f.class_of_cell_[rr * f.cols_ + cc];
                k >= 0 && (best < 0 || class_weight[k] > class_weight[best]))
              best = k;
          }
        if (best >= 0) break;
      }
      if (best >= 0)
        joins.emplace_back(g, best);
      else
        still.push_back(g);
    }
    for (const auto& [g, k] : joins) {
      f.class_of_cell_[g] = k;
      class_weight[k] += weight[g];
      progress = true;
    }
    pending = std::move(still);
  }
  for (std::size_t g : pending) found_class(g);

  // Centres: the mean of the class's points where it has any, else its area-weighted centroid.
  const std::size_t nclass = class_weight.size();
  f.counts_.assign(nclass, 0);
  std::vector<std::vector<LatLng>> members(nclass);
  std::vector<std::vector<double>> piece_areas(nclass);
  for (std::size_t i = 0; i < points.size(); ++i)
    if (cell_of_point[i] >= 0) {
      const int k = f.class_of_cell_[cell_of_point[i]];
      ++f.counts_[k];
      members[k].push_back(points[i]);
    }
  std::vector<std::vector<LatLng>> pieces(nclass);
  for (std::size_t g = 0; g < ncell; ++g)
    if (const int k = f.class_of_cell_[g]; k >= 0 && f.counts_[k] == 0) {
      pieces[k].push_back({centroid[g].y, centroid[g].x});
      piece_areas[k].push_back(area[g]);
    }
  f.centers_.resize(nclass);
  for (std::size_t k = 0; k < nclass; ++k)
    f.centers_[k] = f.counts_[k] > 0 ? spherical_mean(members[k]) : spherical_mean(pieces[k], piece_areas[k]);
  return f;
}

}  // namespace geoloc::geo
