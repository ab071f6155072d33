#include "geoloc/viz/probability_map.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "geoloc/error.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/image/transforms.hpp"

namespace geoloc::viz {
namespace {

constexpr Color kBlack = rgb(0x000000);
constexpr Color kWhite = rgb(0xffffff);
constexpr Color kPrediction = rgb(0x38e8ff);  // cyan: apart from every colour of the heat maps
constexpr Color kTruth = rgb(0x66ff66);       // green, likewise
constexpr Color kEmptyBackground = rgb(0x1b2430);

std::string percent(double p) {
  char buf[32];
  const double v = p * 100;
  if (v >= 9.95)
    std::snprintf(buf, sizeof buf, "%.0f%%", v);
  else if (v >= 0.995)
    std::snprintf(buf, sizeof buf, "%.1f%%", v);
  else if (v >= 1e-4)
    // Two significant digits however small: 0.37%, 0.0037%.
    std::snprintf(buf, sizeof buf, "%.*f%%", 1 - static_cast<int>(std::floor(std::log10(v))), v);
  else if (v > 0)
    std::snprintf(buf, sizeof buf, "%.0e%%", v);
  else
    std::snprintf(buf, sizeof buf, "0%%");
  return buf;
}

std::string km_text(double km) {
  char buf[32];
  std::snprintf(buf, sizeof buf, km < 10 ? "%.1f km" : "%.0f km", km);
  return buf;
}

// Points along the great circle from a to b (spherical interpolation of the unit vectors).
std::vector<geo::LatLng> great_circle(geo::LatLng a, geo::LatLng b, int n) {
  const geo::Vec3 u = geo::to_unit(a), v = geo::to_unit(b);
  const double dot = std::clamp(u.x * v.x + u.y * v.y + u.z * v.z, -1.0, 1.0);
  const double omega = std::acos(dot);
  std::vector<geo::LatLng> pts;
  if (omega < 1e-9 || std::abs(omega - M_PI) < 1e-9) return {a, b};  // same point, or antipodes (any path)
  for (int i = 0; i <= n; ++i) {
    const double t = static_cast<double>(i) / n;
    const double wa = std::sin((1 - t) * omega) / std::sin(omega), wb = std::sin(t * omega) / std::sin(omega);
    pts.push_back(geo::from_unit({wa * u.x + wb * v.x, wa * u.y + wb * v.y, wa * u.z + wb * v.z}));
  }
  return pts;
}

}  // namespace

std::string default_background_path() { return geo::data_dir() + "/earth/nasa-bmng-07_2048.jpg"; }

MapRenderer::MapRenderer(const geo::Partition& partition, const image::Image& background, int width,
                         int height, double brightness)
    : partition_(&partition), width_(width), height_(height) {
  build(background, brightness);
}

MapRenderer::MapRenderer(const geo::Partition& partition, const std::string& background_path, int width,
                         int height, double brightness)
    : partition_(&partition), width_(width), height_(height) {
  build(image::decode_file(background_path), brightness);
}

void MapRenderer::build(const image::Image& background, double brightness) {
  GEOLOC_CHECK(width_ >= 64 && height_ >= 32, ValueError, "MapRenderer: size must be at least 64x32, got ",
               width_, "x", height_);
  GEOLOC_CHECK(brightness > 0 && brightness <= 1, ValueError,
               "MapRenderer: brightness must be in (0, 1], got ", brightness);
  GEOLOC_CHECK(partition_->size() > 0, ValueError, "MapRenderer: the partition has no classes");

  if (background.empty()) {
    Canvas plain(width_, height_, kEmptyBackground);
    background_ = plain.take();
  } else {
    background_ = image::resize(background, width_, height_);
    for (uint8_t& v : background_.pixels) v = static_cast<uint8_t>(std::lround(v * brightness));
  }

  // The cache: one assignment per pixel centre, done once for every map drawn with this renderer.
  std::vector<geo::LatLng> centres(static_cast<size_t>(width_) * height_);
  for (int y = 0; y < height_; ++y)
    for (int x = 0; x < width_; ++x)
      centres[static_cast<size_t>(y) * width_ + x] = to_latlng(x + 0.5, y + 0.5);
  class_of_pixel_ = partition_->assign_all(centres);
  // render() indexes per-class tables with these; a partition answering outside its own range
  // would otherwise read out of bounds there.
  const int n = static_cast<int>(partition_->size());
  for (size_t i = 0; i < class_of_pixel_.size(); ++i)
    GEOLOC_CHECK(class_of_pixel_[i] >= -1 && class_of_pixel_[i] < n, ValueError,
                 "MapRenderer: the partition assigned ", geo::to_string(centres[i]), " to class ",
                 class_of_pixel_[i], " but has ", n, " classes");

  border_.assign(class_of_pixel_.size(), 0);
  for (int y = 0; y < height_; ++y)
    for (int x = 0; x < width_; ++x) {
      const size_t i = static_cast<size_t>(y) * width_ + x;
      const int c = class_of_pixel_[i];
      // Only differences inside the map: the left and right edges are the same meridian.
      border_[i] = (x + 1 < width_ && class_of_pixel_[i + 1] != c) ||
                   (y + 1 < height_ && class_of_pixel_[i + static_cast<size_t>(width_)] != c);
    }
}

std::array<double, 2> MapRenderer::to_pixel(geo::LatLng p) const {
  return {(p.lng + 180.0) / 360.0 * width_, (90.0 - p.lat) / 180.0 * height_};
}

geo::LatLng MapRenderer::to_latlng(double x, double y) const {
  return {90.0 - y / height_ * 180.0, x / width_ * 360.0 - 180.0};
}

image::Image MapRenderer::render(std::span<const float> probs, const ProbabilityMapSpec& spec) const {
  const geo::Partition& part = *partition_;
  GEOLOC_CHECK(probs.size() == part.size(), ShapeError, "probability map '", spec.title, "': ", probs.size(),
               " probabilities for a partition of ", part.size(), " classes");
  for (size_t i = 0; i < probs.size(); ++i)
    GEOLOC_CHECK(std::isfinite(probs[i]) && probs[i] >= 0, ValueError, "probability map '", spec.title,
                 "': probability ", i, " is ", probs[i], " (must be finite and >= 0)");
  GEOLOC_CHECK(spec.log_decades > 0, ValueError, "probability map: log_decades must be > 0, got ",
               spec.log_decades);
  GEOLOC_CHECK(spec.max_alpha >= 0 && spec.max_alpha <= 1, ValueError,
               "probability map: max_alpha must be in [0, 1], got ", spec.max_alpha);
  GEOLOC_CHECK(spec.top_k >= 0, ValueError, "probability map: top_k must be >= 0, got ", spec.top_k);
  GEOLOC_CHECK(spec.text_scale >= 0, ValueError, "probability map: text_scale must be >= 0, got ",
               spec.text_scale);
  if (spec.prediction) geo::validate(*spec.prediction, "probability map prediction");
  if (spec.truth) geo::validate(*spec.truth, "probability map truth");

  const size_t argmax = static_cast<size_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
  const double pmax = probs[argmax];

  // Colour and opacity per class, so the per-pixel work is two lookups and a blend.
  std::vector<Color> class_color(part.size());
  std::vector<float> class_alpha(part.size(), 0.f);
  if (pmax > 0)
    for (size_t c = 0; c < part.size(); ++c) {
      if (!(probs[c] > 0)) continue;
      const double r = probs[c] / pmax;
      const double t = spec.log_scale ? 1.0 + std::log10(r) / spec.log_decades : r;
      if (t <= 0) continue;
      class_color[c] = colormap(spec.colormap, t);
      class_alpha[c] = static_cast<float>(spec.max_alpha * t);
    }

  image::Image out = background_;
  for (size_t i = 0; i < class_of_pixel_.size(); ++i) {
    uint8_t* p = out.pixels.data() + i * 3;
    const int c = class_of_pixel_[i];
    if (c >= 0 && class_alpha[c] > 0) {
      const float a = class_alpha[c];
      const Color k = class_color[c];
      p[0] = static_cast<uint8_t>(std::lround(p[0] + (k.r - p[0]) * a));
      p[1] = static_cast<uint8_t>(std::lround(p[1] + (k.g - p[1]) * a));
      p[2] = static_cast<uint8_t>(std::lround(p[2] + (k.b - p[2]) * a));
    }
    if (spec.cell_borders && border_[i]) {
      // Faint: the borders say where the cells are without competing with the heat.
      for (int ch = 0; ch < 3; ++ch) p[ch] = static_cast<uint8_t>(std::lround(p[ch] + (255 - p[ch]) * 0.16));
    }
  }

  Canvas cv(std::move(out));
  const int ts = spec.text_scale > 0 ? spec.text_scale : width_ >= 900 ? 2 : 1;
  const int title_scale = ts + 1;

  // ---- top-k labels
  if (spec.top_k > 0 && pmax > 0) {
    std::vector<size_t> order(part.size());
    std::iota(order.begin(), order.end(), size_t{0});
    const size_t k = std::min(order.size(), static_cast<size_t>(spec.top_k));
    std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(),
                      [&](size_t a, size_t b) { return probs[a] > probs[b]; });
    std::vector<std::array<int, 4>> placed;  // boxes x0, y0, x1, y1 already taken
    // The prediction and truth markers are drawn later; keep rank numbers off them too.
    auto reserve_marker = [&](geo::LatLng p) {
      const auto [mx, my] = to_pixel(p);
      const int r = 7 * ts;
      placed.push_back({static_cast<int>(mx) - r, static_cast<int>(my) - r, static_cast<int>(mx) + r,
                        static_cast<int>(my) + r});
    };
    reserve_marker(spec.prediction.value_or(part.center(argmax)));
    if (spec.truth) reserve_marker(*spec.truth);
    std::vector<std::string> lines;
    for (size_t r = 0; r < k && probs[order[r]] > 0; ++r) {
      const geo::LatLng c = part.center(order[r]);
      const auto [x, y] = to_pixel(c);
      cv.fill_circle(x, y, 3.0 * ts, kBlack);
      cv.fill_circle(x, y, 1.8 * ts, kWhite);
      const std::string rank = std::to_string(r + 1);
      char line[96];
      std::snprintf(line, sizeof line, "%s %6s  %.2f, %.2f", rank.c_str(), percent(probs[order[r]]).c_str(),
                    c.lat, c.lng);
      lines.emplace_back(line);
      // The rank number next to its dot: right, left, above or below, the first place that overlaps
      // no other number or marker (neighbouring cells often rank together); none if all collide,
      // the list below still has it.
      const int lw = Font::text_width(rank, ts), lh = Font::cap_height(ts);
      const int ix = static_cast<int>(x), iy = static_cast<int>(y);
      const std::array<std::array<int, 2>, 4> candidates = {{{ix + 5 * ts, iy - lh / 2},
                                                             {ix - 5 * ts - lw, iy - lh / 2},
                                                             {ix - lw / 2, iy - 5 * ts - lh},
                                                             {ix - lw / 2, iy + 5 * ts}}};
      for (const auto& [lx, ly] : candidates) {
        const std::array<int, 4> box = {lx - ts, ly - ts, lx + lw + ts, ly + lh + ts};
        if (box[0] < 2 || box[1] < 2 || box[2] > width_ - 2 || box[3] > height_ - 2) continue;
        const bool overlaps = std::any_of(placed.begin(), placed.end(), [&](const std::array<int, 4>& o) {
          return box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3];
        });
        if (overlaps) continue;
        cv.text_outlined(lx, ly, rank, kWhite, kBlack, ts);
        placed.push_back(box);
        break;
      }
    }
    // The ranked list, top right under the title: rank, probability, class centre.
    const int lh = Font::kLineHeight * ts, m = 6 * ts;
    int list_w = Font::text_width("top " + std::to_string(lines.size()), ts);
    for (const auto& l : lines) list_w = std::max(list_w, Font::text_width(l, ts));
    const int box_w = m + list_w + m,
              box_h = m + lh * static_cast<int>(lines.size() + 1) + m - (lh - Font::cap_height(ts));
    const int bx = width_ - box_w - 6 * ts;
    const int by = (spec.title.empty() ? 0 : Font::kLineHeight * (ts + 1) + 8 * ts) + 6 * ts;
    cv.fill_rect(bx, by, box_w, box_h, kBlack, 0.6);
    cv.text(bx + m, by + m, "top " + std::to_string(lines.size()), kWhite, ts);
    for (size_t i = 0; i < lines.size(); ++i)
      cv.text(bx + m, by + m + lh * static_cast<int>(i + 1), lines[i], kWhite, ts);
  }

  // ---- prediction, truth and the great circle between them
  const geo::LatLng pred = spec.prediction.value_or(part.center(argmax));
  const auto [pxp, pyp] = to_pixel(pred);
  if (spec.truth) {
    const auto pts = great_circle(pred, *spec.truth, 96);
    std::vector<std::array<double, 2>> pix;
    for (const auto& q : pts) pix.push_back(to_pixel(q));
    for (int pass = 0; pass < 2; ++pass)
      for (size_t i = 0; i + 1 < pix.size(); ++i) {
        // A step of more than half the width crosses the antimeridian: leave that gap open.
        if (std::abs(pix[i + 1][0] - pix[i][0]) > width_ / 2.0) continue;
        cv.line(pix[i][0], pix[i][1], pix[i + 1][0], pix[i + 1][1], pass == 0 ? kBlack : kWhite,
                pass == 0 ? 3.0 * ts : 1.4 * ts, pass == 0 ? 0.6 : 0.95);
      }
    const auto [tx, ty] = to_pixel(*spec.truth);
    cv.circle(tx, ty, 7.0 * ts, kBlack, 4.0 * ts);
    cv.circle(tx, ty, 7.0 * ts, kTruth, 2.0 * ts);
    const double my = pix[pix.size() / 2][1];
    const std::string d = km_text(geo::haversine_km(pred, *spec.truth));
    const int dw = Font::text_width(d, ts);
    // Level with the middle of the path, right of both markers (left of them near the right edge),
    // so that it never covers either, however close they are.
    const int clear = 12 * ts;
    int lx = static_cast<int>(std::max(pxp, tx)) + clear;
    if (lx + dw > width_ - 4) lx = static_cast<int>(std::min(pxp, tx)) - clear - dw;
    lx = std::clamp(lx, 4, width_ - dw - 4);
    const int ly = std::clamp(static_cast<int>(my) - Font::cap_height(ts) / 2, 4, height_ - 20 * ts);
    cv.text_outlined(lx, ly, d, kWhite, kBlack, ts);
  }
  cv.cross(pxp, pyp, 6.0 * ts, kBlack, 4.5 * ts);
  cv.cross(pxp, pyp, 6.0 * ts, kPrediction, 2.2 * ts);

  // ---- title band
  if (!spec.title.empty()) {
    const int band = Font::kLineHeight * title_scale + 8 * ts;
    cv.fill_rect(0, 0, width_, band, kBlack, 0.55);
    cv.text(8 * ts, (band - Font::cap_height(title_scale)) / 2, spec.title, kWhite, title_scale);
  }

  // ---- colour bar and marker legend, bottom left (over the Southern Ocean and Antarctica)
  if (spec.colorbar) {
    const int m = 6 * ts, bar_w = 120 * ts, bar_h = 8 * ts, lh = Font::kLineHeight * ts;
    const std::string lo_label = spec.log_scale ? percent(pmax * std::pow(10.0, -spec.log_decades)) : "0%";
    const std::string hi_label = pmax > 0 ? percent(pmax) : "0%";
    const std::string caption = spec.log_scale ? "probability (log)" : "probability";
    const int legend_w =
        11 * ts + Font::text_width("prediction", ts) + 12 * ts + 11 * ts + Font::text_width("truth", ts);
    const int box_w = m + std::max({bar_w, Font::text_width(caption, ts), legend_w}) + m;
    const int box_h = m + lh + bar_h + 3 * ts + lh + lh + 2 * ts + m - (lh - Font::cap_height(ts));
    const int bx = 6 * ts, by = height_ - box_h - 6 * ts;
    cv.fill_rect(bx, by, box_w, box_h, kBlack, 0.6);
    int y = by + m;
    cv.text(bx + m, y, caption, kWhite, ts);
    y += lh;
    for (int i = 0; i < bar_w; ++i) {
      const double t = (i + 0.5) / bar_w;
      cv.fill_rect(bx + m + i, y, 1, bar_h, colormap(spec.colormap, t));
    }
    cv.rect(bx + m - 1, y - 1, bar_w + 2, bar_h + 2, rgb(0x999999));
    y += bar_h + 3 * ts;
    cv.text(bx + m, y, lo_label, kWhite, ts);
    cv.text(bx + m + bar_w, y, hi_label, kWhite, ts, Align::right);
    y += lh + 2 * ts;
    // Marker legend: the same shapes as on the map, at text size.
    const double cy = y + Font::cap_height(ts) / 2.0;
    int x = bx + m;
    cv.cross(x + 4 * ts, cy, 3.5 * ts, kPrediction, 1.6 * ts);
    x += 11 * ts;
    x += cv.text(x, y, "prediction", kWhite, ts) + 12 * ts;
    cv.circle(x + 4 * ts, cy, 3.5 * ts, kTruth, 1.4 * ts);
    x += 11 * ts;
    cv.text(x, y, "truth", kWhite, ts);
  }
  return cv.take();
}

void MapRenderer::write(const std::string& png_path, std::span<const float> probabilities,
                        const ProbabilityMapSpec& spec) const {
  image::write_png(png_path, render(probabilities, spec));
}

void write_probability_map(const std::string& png_path, const geo::Partition& partition,
                           std::span<const float> probabilities, const ProbabilityMapSpec& spec,
                           const std::string& background_path, int width, int height) {
  MapRenderer(partition, background_path, width, height).write(png_path, probabilities, spec);
}

}  // namespace geoloc::viz
