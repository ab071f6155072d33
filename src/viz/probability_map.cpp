#include "geoloc/viz/probability_map.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>

#include "geoloc/error.hpp"
#include "geoloc/geo/data_dir.hpp"
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

void MapRenderer::validate(std::span<const float> probs, const ProbabilityMapSpec& spec) const {
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
}

namespace {

// Everything render() draws, decided before drawing: the public layout plus what the drawing needs.
struct Plan {
  MapLayout layout;
  int ts = 1;                                  // text and marker scale
  geo::LatLng prediction;
  std::vector<size_t> top;                     // the ranked classes (probability > 0)
  std::vector<std::string> list_lines;         // the ranked list, after its heading
  std::vector<std::array<double, 2>> path;     // the great circle in pixels (empty without truth)
  std::string colorbar_lo, colorbar_hi;
};

// The box of outlined text (one font pixel of halo) at top-left (x, y); descenders only where the
// text has a character with one.
Box outlined_text_box(int x, int y, const std::string& text, int ts) {
  const bool descends = text.find_first_of("gjpqy,") != std::string::npos;
  const int rows = descends ? Font::kRows : Font::kCapHeight;
  return {x - ts, y - ts, x + Font::text_width(text, ts) + ts, y + rows * ts + ts};
}

bool hits_any(const Box& b, const std::vector<MapLabel>& others) {
  return std::any_of(others.begin(), others.end(), [&](const MapLabel& o) { return b.intersects(o.box); });
}

// A panel (list, legend) of w x h at the first corner where it covers no label and neither the
// prediction nor the truth (top-k dots may go under: the list repeats them), else the first where
// it covers no label, else the first corner.
Box place_panel(int w, int h, const std::vector<std::array<int, 2>>& corners, const MapLayout& lay, int width,
                int height) {
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& [x, y] : corners) {
      const Box b{x, y, x + w, y + h};
      if (!b.inside(width, height) || hits_any(b, lay.labels)) continue;
      if (pass == 0 && std::any_of(lay.markers.begin(), lay.markers.end(), [&](const MapLabel& m) {
            return m.role != "dot" && b.intersects(m.box);
          }))
        continue;
      return b;
    }
  return {corners[0][0], corners[0][1], corners[0][0] + w, corners[0][1] + h};
}

Plan make_plan(const MapRenderer& r, std::span<const float> probs, const ProbabilityMapSpec& spec) {
  const geo::Partition& part = r.partition();
  const int W = r.width(), H = r.height();
  Plan plan;
  MapLayout& lay = plan.layout;
  const int ts = plan.ts = spec.text_scale > 0 ? spec.text_scale : W >= 900 ? 2 : 1;
  const int title_scale = ts + 1;
  const size_t argmax = static_cast<size_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
  const double pmax = probs[argmax];
  plan.prediction = spec.prediction.value_or(part.center(argmax));

  // ---- markers: the cross and the ring reach 9 text-scale pixels from their centres; the top-k
  // dots 4
  auto marker = [&](const char* role, geo::LatLng p, int radius) {
    const auto [x, y] = r.to_pixel(p);
    const int ix = static_cast<int>(std::floor(x)), iy = static_cast<int>(std::floor(y));
    lay.markers.push_back({role, geo::to_string(p), {ix - radius, iy - radius, ix + radius + 1, iy + radius + 1}, ix, iy});
  };
  marker("prediction", plan.prediction, 9 * ts);
  if (spec.truth) marker("truth", *spec.truth, 9 * ts);
  if (spec.top_k > 0 && pmax > 0) {
    std::vector<size_t> order(part.size());
    std::iota(order.begin(), order.end(), size_t{0});
    const size_t k = std::min(order.size(), static_cast<size_t>(spec.top_k));
    std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(),
                      [&](size_t a, size_t b) { return probs[a] > probs[b]; });
    for (size_t i = 0; i < k && probs[order[i]] > 0; ++i) {
      plan.top.push_back(order[i]);
      const geo::LatLng c = part.center(order[i]);
      marker("dot", c, 4 * ts);
      char line[96];
      std::snprintf(line, sizeof line, "%zu %6s  %.2f, %.2f", i + 1, percent(probs[order[i]]).c_str(), c.lat,
                    c.lng);
      plan.list_lines.emplace_back(line);
    }
  }

  // ---- title band across the top
  const int band = spec.title.empty() ? 0 : Font::kLineHeight * title_scale + 8 * ts;
  if (!spec.title.empty())
    lay.labels.push_back({"title", spec.title, {0, 0, W, band}, 8 * ts, (band - Font::cap_height(title_scale)) / 2});
  const int top_y = band + 6 * ts;

  // ---- colour bar and marker legend: bottom left (over the Southern Ocean and Antarctica) unless
  // a marker is there
  if (spec.colorbar) {
    const int m = 6 * ts, bar_w = 120 * ts, bar_h = 8 * ts, lh = Font::kLineHeight * ts;
    const std::string caption = spec.log_scale ? "probability (log)" : "probability";
    const int legend_w =
        11 * ts + Font::text_width("prediction", ts) + 12 * ts + 11 * ts + Font::text_width("truth", ts);
    const int w = m + std::max({bar_w, Font::text_width(caption, ts), legend_w}) + m;
    const int h = m + lh + bar_h + 3 * ts + lh + lh + 2 * ts + m - (lh - Font::cap_height(ts));
    const int left = 6 * ts, right = W - w - 6 * ts, bottom = H - h - 6 * ts;
    const Box b = place_panel(w, h, {{left, bottom}, {right, bottom}, {left, top_y}, {right, top_y}}, lay, W, H);
    lay.labels.push_back({"legend", caption, b, b.x0, b.y0});
    plan.colorbar_lo = spec.log_scale ? percent(pmax * std::pow(10.0, -spec.log_decades)) : "0%";
    plan.colorbar_hi = pmax > 0 ? percent(pmax) : "0%";
  }

  // ---- the ranked list: top right under the title unless a marker is there
  if (!plan.top.empty()) {
    const int lh = Font::kLineHeight * ts, m = 6 * ts;
    const std::string heading = "top " + std::to_string(plan.list_lines.size());
    int list_w = Font::text_width(heading, ts);
    for (const auto& l : plan.list_lines) list_w = std::max(list_w, Font::text_width(l, ts));
    const int w = m + list_w + m,
              h = m + lh * static_cast<int>(plan.list_lines.size() + 1) + m - (lh - Font::cap_height(ts));
    const int left = 6 * ts, right = W - w - 6 * ts, bottom = H - h - 6 * ts;
    const Box b = place_panel(w, h, {{right, top_y}, {right, bottom}, {left, top_y}, {left, bottom}}, lay, W, H);
    lay.labels.push_back({"top_k", heading, b, b.x0, b.y0});
  }

  // ---- the distance between prediction and truth, near the middle of the path between them
  if (spec.truth) {
    for (const auto& q : great_circle(plan.prediction, *spec.truth, 96)) plan.path.push_back(r.to_pixel(q));
    const std::string d = km_text(geo::haversine_km(plan.prediction, *spec.truth));
    const int dw = Font::text_width(d, ts), dh = Font::cap_height(ts), clear = 12 * ts;
    const auto [px, py] = r.to_pixel(plan.prediction);
    const auto [tx, ty] = r.to_pixel(*spec.truth);
    const auto [mx, my] = plan.path[plan.path.size() / 2];
    const int ipx = static_cast<int>(px), ipy = static_cast<int>(py), itx = static_cast<int>(tx),
              ity = static_cast<int>(ty), imx = static_cast<int>(mx), imy = static_cast<int>(my);
    // Beside the middle of the path first, off the line: above or below where the path runs
    // sideways there, right or left where it runs up or down; then level with the middle beside
    // both markers; then around each marker.
    const size_t mid = plan.path.size() / 2;
    const auto& a = plan.path[mid > 0 ? mid - 1 : 0];
    const auto& b = plan.path[std::min(mid + 1, plan.path.size() - 1)];
    const double ddx = std::abs(b[0] - a[0]), ddy = std::abs(b[1] - a[1]);
    const bool sideways = ddx > W / 2.0 || ddx >= ddy;  // a jump across the antimeridian is sideways
    const int gap = 5 * ts;
    const std::array<int, 2> above{imx - dw / 2, imy - gap - dh}, below{imx - dw / 2, imy + gap},
        right{imx + gap, imy - dh / 2}, left{imx - gap - dw, imy - dh / 2};
    std::vector<std::array<int, 2>> cands;
    if (sideways)
      cands = {above, below, right, left};
    else
      cands = {right, left, above, below};
    cands.push_back({std::max(ipx, itx) + clear, imy - dh / 2});
    cands.push_back({std::min(ipx, itx) - clear - dw, imy - dh / 2});
    for (const auto& [cx, cy] : {std::array<int, 2>{itx, ity}, {ipx, ipy}}) {
      cands.push_back({cx + clear, cy - dh / 2});
      cands.push_back({cx - clear - dw, cy - dh / 2});
      cands.push_back({cx - dw / 2, cy - clear - dh});
      cands.push_back({cx - dw / 2, cy + clear});
    }
    auto free_of = [&](const Box& b, bool markers_too) {
      return b.inside(W, H) && !hits_any(b, lay.labels) && !(markers_too && hits_any(b, lay.markers));
    };
    std::optional<std::array<int, 2>> at;
    for (const auto& c : cands)
      if (free_of(outlined_text_box(c[0], c[1], d, ts), true)) {
        at = c;
        break;
      }
    // Failing those (markers and panels crowded together): the free spot nearest the middle of the
    // path, clear of the markers if possible.
    for (int pass = 0; pass < 2 && !at; ++pass) {
      double best = 0;
      for (int y = 0; y < H; y += ts)
        for (int x = 0; x < W; x += ts) {
          const Box b = outlined_text_box(x, y, d, ts);
          if (!free_of(b, pass == 0)) continue;
          const double ex = (b.x0 + b.x1) / 2.0 - mx, ey = (b.y0 + b.y1) / 2.0 - my, e = ex * ex + ey * ey;
          if (!at || e < best) {
            at = std::array<int, 2>{x, y};
            best = e;
          }
        }
    }
    if (at) lay.labels.push_back({"distance", d, outlined_text_box((*at)[0], (*at)[1], d, ts), (*at)[0], (*at)[1]});
  }

  // ---- rank numbers next to their dots: right, left, above or below, the first place that covers
  // no label, marker or other dot (neighbouring cells often rank together); none if all collide,
  // the list still has it.
  for (size_t i = 0; i < plan.top.size(); ++i) {
    const auto [x, y] = r.to_pixel(part.center(plan.top[i]));
    const std::string rank = std::to_string(i + 1);
    const int lw = Font::text_width(rank, ts), lh = Font::cap_height(ts);
    const int ix = static_cast<int>(x), iy = static_cast<int>(y);
    const std::array<std::array<int, 2>, 4> candidates = {
        {{ix + 5 * ts, iy - lh / 2}, {ix - 5 * ts - lw, iy - lh / 2}, {ix - lw / 2, iy - 5 * ts - lh}, {ix - lw / 2, iy + 5 * ts}}};
    for (const auto& [lx, ly] : candidates) {
      const Box b = outlined_text_box(lx, ly, rank, ts);
      // Its own dot is next to it by construction; every other dot and marker is an obstacle.
      bool blocked = !b.inside(W, H) || hits_any(b, lay.labels);
      for (size_t j = 0; !blocked && j < lay.markers.size(); ++j)
        blocked = lay.markers[j].box.intersects(b) &&
                  !(lay.markers[j].role == "dot" && lay.markers[j].text_x == static_cast<int>(std::floor(x)) &&
                    lay.markers[j].text_y == static_cast<int>(std::floor(y)));
      if (blocked) continue;
      lay.labels.push_back({"rank", rank, b, lx, ly});
      break;
    }
  }
  return plan;
}

}  // namespace

MapLayout MapRenderer::layout(std::span<const float> probs, const ProbabilityMapSpec& spec) const {
  validate(probs, spec);
  return make_plan(*this, probs, spec).layout;
}

image::Image MapRenderer::render(std::span<const float> probs, const ProbabilityMapSpec& spec) const {
  validate(probs, spec);
  const geo::Partition& part = *partition_;
  const Plan plan = make_plan(*this, probs, spec);
  const int ts = plan.ts;
  const double pmax = *std::max_element(probs.begin(), probs.end());

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
  // Shapes first, text last: no line or marker is drawn across a label.
  // ---- the top-k dots
  for (size_t c : plan.top) {
    const auto [x, y] = to_pixel(part.center(c));
    cv.fill_circle(x, y, 3.0 * ts, kBlack);
    cv.fill_circle(x, y, 1.8 * ts, kWhite);
  }
  // ---- the great circle from the prediction to the truth, the truth ring and the prediction cross
  const auto& pix = plan.path;
  for (int pass = 0; pass < 2 && !pix.empty(); ++pass)
    for (size_t i = 0; i + 1 < pix.size(); ++i) {
      // A step of more than half the width crosses the antimeridian: leave that gap open.
      if (std::abs(pix[i + 1][0] - pix[i][0]) > width_ / 2.0) continue;
      cv.line(pix[i][0], pix[i][1], pix[i + 1][0], pix[i + 1][1], pass == 0 ? kBlack : kWhite,
              pass == 0 ? 3.0 * ts : 1.4 * ts, pass == 0 ? 0.6 : 0.95);
    }
  if (spec.truth) {
    const auto [tx, ty] = to_pixel(*spec.truth);
    cv.circle(tx, ty, 7.0 * ts, kBlack, 4.0 * ts);
    cv.circle(tx, ty, 7.0 * ts, kTruth, 2.0 * ts);
  }
  const auto [pxp, pyp] = to_pixel(plan.prediction);
  cv.cross(pxp, pyp, 6.0 * ts, kBlack, 4.5 * ts);
  cv.cross(pxp, pyp, 6.0 * ts, kPrediction, 2.2 * ts);

  // ---- the labels, where the layout put them
  for (const MapLabel& l : plan.layout.labels) {
    const Box& b = l.box;
    if (l.role == "title") {
      const int title_scale = ts + 1;
      cv.fill_rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, kBlack, 0.55);
      cv.text(l.text_x, l.text_y, spec.title, kWhite, title_scale);
    } else if (l.role == "top_k") {
      // The ranked list: rank, probability, class centre.
      const int lh = Font::kLineHeight * ts, m = 6 * ts;
      cv.fill_rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, kBlack, 0.6);
      cv.text(b.x0 + m, b.y0 + m, l.text, kWhite, ts);
      for (size_t i = 0; i < plan.list_lines.size(); ++i)
        cv.text(b.x0 + m, b.y0 + m + lh * static_cast<int>(i + 1), plan.list_lines[i], kWhite, ts);
    } else if (l.role == "legend") {
      const int m = 6 * ts, bar_w = 120 * ts, bar_h = 8 * ts, lh = Font::kLineHeight * ts;
      const int bx = b.x0;
      cv.fill_rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, kBlack, 0.6);
      int y = b.y0 + m;
      cv.text(bx + m, y, l.text, kWhite, ts);
      y += lh;
      for (int i = 0; i < bar_w; ++i) {
        const double t = (i + 0.5) / bar_w;
        cv.fill_rect(bx + m + i, y, 1, bar_h, colormap(spec.colormap, t));
      }
      cv.rect(bx + m - 1, y - 1, bar_w + 2, bar_h + 2, rgb(0x999999));
      y += bar_h + 3 * ts;
      cv.text(bx + m, y, plan.colorbar_lo, kWhite, ts);
      cv.text(bx + m + bar_w, y, plan.colorbar_hi, kWhite, ts, Align::right);
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
    } else {  // "distance", "rank"
      cv.text_outlined(l.text_x, l.text_y, l.text, kWhite, kBlack, ts);
    }
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
