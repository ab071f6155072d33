#include "geoloc/viz/chart.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "geoloc/error.hpp"
#include "geoloc/viz/colormap.hpp"

namespace geoloc::viz {
namespace {

constexpr Color kInk = rgb(0x222222);
constexpr Color kAxis = rgb(0x555555);
constexpr Color kGrid = rgb(0xe6e6e6);
constexpr Color kMuted = rgb(0x888888);

std::string printf_string(const char* fmt, double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, decimals, v);
  return buf;
}

// "1.20" -> "1.2", "3.00" -> "3": mantissas read better without trailing zeros.
std::string strip_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// m * 10^e with m printed to `digits` significant digits and trailing zeros dropped: "2e-4", "1.5e6".
std::string mantissa_exponent(double v, int digits) {
  const int e = static_cast<int>(std::floor(std::log10(std::abs(v)) + 1e-9));
  double m = v / std::pow(10.0, e);
  std::string ms = strip_zeros(printf_string("%.*f", m, std::max(0, digits - 1)));
  if (ms == "10" || ms == "-10") {  // rounding carried into the next power
    ms = ms[0] == '-' ? "-1" : "1";
    return ms + "e" + std::to_string(e + 1);
  }
  return ms + "e" + std::to_string(e);
}

// Axis transform: data -> pixel offset within the plot area.
struct Axis {
  double lo = 0, hi = 1;  // in axis units (log10 of the value on a log axis)
  bool log = false;
  double unit(double v) const { return log ? std::log10(v) : v; }
  bool usable(double v) const { return std::isfinite(v) && (!log || v > 0); }
  double frac(double v) const { return (unit(v) - lo) / (hi - lo); }
};

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  GEOLOC_CHECK(std::isfinite(lo) && std::isfinite(hi), ValueError, "nice_ticks: bounds must be finite, got ",
               lo, " .. ", hi);
  GEOLOC_CHECK(target >= 2, ValueError, "nice_ticks: target must be >= 2, got ", target);
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo <= 1e-12 * std::max(std::abs(lo), std::abs(hi))) {
    // A flat series still deserves an axis: a band of +-10 % around the value (+-1 around 0).
    const double d = lo != 0 ? std::abs(lo) * 0.1 : 1.0;
    lo -= d, hi += d;
  }
  GEOLOC_CHECK(std::isfinite(hi - lo), ValueError, "nice_ticks: range ", lo, " .. ", hi, " is too wide");
  const double raw = (hi - lo) / target;
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  const double mag = std::pow(10.0, e);
  const double f = raw / mag;
  const double nice = f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0;
  const double step = nice * mag;
  // The small tolerance keeps 0.6000000001 from adding a tick that only float noise asked for.
  const double k0 = std::floor(lo / step + 1e-9), k1 = std::ceil(hi / step - 1e-9);
  // k * nice and 10^-e are exact integers, so dividing them gives the double nearest to the
  // decimal tick (6 * 0.1 would be 0.6000000000000001; 6 / 10 is 0.6).
  const double inv = e < 0 ? std::pow(10.0, -e) : 0.0;
  std::vector<double> ticks;
  for (double k = k0; k <= k1; k += 1) {
    const double v = e < 0 ? (k * nice) / inv : k * nice * mag;
    ticks.push_back(v == 0 ? 0.0 : v);  // no -0
  }
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  GEOLOC_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo > 0 && lo <= hi, ValueError,
               "log_ticks: need 0 < lo <= hi, got ", lo, " .. ", hi);
  int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (e1 == e0) --e0, ++e1;  // a single power of ten: show the decades on both sides
  const int decades = e1 - e0;
  std::vector<double> ticks;
  if (decades <= 2) {
    for (int e = e0; e <= e1; ++e) {
      const double p = std::pow(10.0, e);
      ticks.push_back(p);
      if (e < e1) ticks.push_back(2 * p), ticks.push_back(5 * p);
    }
    return ticks;
  }
  const int every = (decades + 7) / 8;
  // Keep the exponents multiples of `every`, widening the range to the enclosing ones.
  const int s0 = static_cast<int>(std::floor(static_cast<double>(e0) / every)) * every;
  const int s1 = static_cast<int>(std::ceil(static_cast<double>(e1) / every)) * every;
  for (int e = s0; e <= s1; e += every) ticks.push_back(std::pow(10.0, e));
  return ticks;
}

std::string format_tick(double value, double step) {
  GEOLOC_CHECK(std::isfinite(step) && step > 0, ValueError, "format_tick: step must be positive, got ", step);
  if (!std::isfinite(value)) return value != value ? "nan" : value > 0 ? "inf" : "-inf";
  if (std::abs(value) < step * 1e-6) return "0";
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (step < 1e-3) {
    const int value_exp = static_cast<int>(std::floor(std::log10(std::abs(value)) + 1e-9));
    return mantissa_exponent(value, std::max(1, value_exp - step_exp + 1));
  }
  if (step >= 1e6) return strip_zeros(printf_string("%.*f", value / 1e6, std::max(0, 6 - step_exp))) + "M";
  if (step >= 1e3) return strip_zeros(printf_string("%.*f", value / 1e3, std::max(0, 3 - step_exp))) + "k";
  return printf_string("%.*f", value, std::max(0, -step_exp));
}

std::string format_log_tick(double value) {
  GEOLOC_CHECK(std::isfinite(value) && value > 0, ValueError, "format_log_tick: value must be positive, got ",
               value);
  if (value >= 1e-3 && value < 1e4) return strip_zeros(printf_string("%.*f", value, 3));
  return mantissa_exponent(value, 2);
}

std::vector<double> ema_smooth(std::span<const double> y, double weight) {
  GEOLOC_CHECK(weight >= 0 && weight < 1, ValueError, "ema_smooth: weight must be in [0, 1), got ", weight);
  std::vector<double> out(y.size(), std::numeric_limits<double>::quiet_NaN());
  double avg = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) continue;
    avg = weight * avg + (1 - weight) * y[i];
    norm = weight * norm + (1 - weight);  // the weight the average has actually accumulated
    out[i] = avg / norm;
  }
  return out;
}

image::Image render_line_chart(const ChartSpec& spec) {
  GEOLOC_CHECK(spec.width >= 200 && spec.height >= 120, ValueError, "line chart '", spec.title,
               "': size must be at least 200x120, got ", spec.width, "x", spec.height);
  for (size_t i = 0; i < spec.series.size(); ++i) {
    const Series& s = spec.series[i];
    GEOLOC_CHECK(s.x.size() == s.y.size(), ShapeError, "line chart '", spec.title, "': series ", i, " ('",
                 s.name, "') has ", s.x.size(), " x values but ", s.y.size(), " y values");
  }
  auto check_range = [&](const std::optional<double>& a, const std::optional<double>& b, const char* name) {
    if (a)
      GEOLOC_CHECK(std::isfinite(*a), ValueError, "line chart '", spec.title, "': ", name,
                   "_min is not finite");
    if (b)
      GEOLOC_CHECK(std::isfinite(*b), ValueError, "line chart '", spec.title, "': ", name,
                   "_max is not finite");
    if (a && b)
      GEOLOC_CHECK(*a < *b, ValueError, "line chart '", spec.title, "': ", name, " range ", *a, " .. ", *b,
                   " is empty or reversed");
  };
  check_range(spec.x_min, spec.x_max, "x");
  check_range(spec.y_min, spec.y_max, "y");
  if (spec.log_y) {
    GEOLOC_CHECK(!spec.y_min || *spec.y_min > 0, ValueError, "line chart '", spec.title,
                 "': y_min must be > 0 on a log axis, got ", *spec.y_min);
    GEOLOC_CHECK(!spec.y_max || *spec.y_max > 0, ValueError, "line chart '", spec.title,
                 "': y_max must be > 0 on a log axis, got ", *spec.y_max);
  }

  const int ts = spec.text_scale > 0 ? spec.text_scale : (spec.width >= 720 ? 2 : 1);
  const int title_scale = ts + 1;

  // ---- data ranges (only the points that will be drawn count)
  Axis xa, ya;
  ya.log = spec.log_y;
  double dx0 = INFINITY, dx1 = -INFINITY, dy0 = INFINITY, dy1 = -INFINITY;
  size_t drawable = 0;
  for (const Series& s : spec.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!xa.usable(s.x[i]) || !ya.usable(s.y[i])) continue;
      ++drawable;
      dx0 = std::min(dx0, s.x[i]), dx1 = std::max(dx1, s.x[i]);
      dy0 = std::min(dy0, s.y[i]), dy1 = std::max(dy1, s.y[i]);
    }
  if (drawable == 0) dx0 = 0, dx1 = 1, dy0 = ya.log ? 0.1 : 0, dy1 = 1;
  if (spec.x_min) dx0 = *spec.x_min;
  if (spec.x_max) dx1 = *spec.x_max;
  if (spec.y_min) dy0 = *spec.y_min;
  if (spec.y_max) dy1 = *spec.y_max;
  // A fixed bound on one side can meet or cross the data on the other: move the free side so the
  // range stays non-empty (two free equal sides are widened by the tick functions).
  auto keep_open = [](double& lo, double& hi, bool lo_fixed, bool hi_fixed, bool log) {
    if (lo < hi) return;
    if (lo_fixed && !hi_fixed) hi = log ? lo * 10 : lo + std::max(1.0, std::abs(lo));
    if (hi_fixed && !lo_fixed) lo = log ? hi / 10 : hi - std::max(1.0, std::abs(hi));
  };
  keep_open(dx0, dx1, spec.x_min.has_value(), spec.x_max.has_value(), false);
  keep_open(dy0, dy1, spec.y_min.has_value(), spec.y_max.has_value(), ya.log);

  const int plot_h_guess = spec.height - 80 * ts;
  const int y_target = std::clamp(plot_h_guess / (40 * ts), 3, 8);
  std::vector<double> xticks = nice_ticks(dx0, dx1, std::clamp((spec.width - 100 * ts) / (70 * ts), 2, 10));
  std::vector<double> yticks = ya.log ? log_ticks(dy0, dy1) : nice_ticks(dy0, dy1, y_target);
  const double xstep = xticks.size() > 1 ? xticks[1] - xticks[0] : 1.0;
  const double ystep = yticks.size() > 1 ? yticks[1] - yticks[0] : 1.0;
  // The axis ends where the data ends when a bound is fixed, else at the enclosing tick.
  xa.lo = spec.x_min ? *spec.x_min : xticks.front();
  xa.hi = spec.x_max ? *spec.x_max : xticks.back();
  ya.lo = ya.unit(spec.y_min ? *spec.y_min : yticks.front());
  ya.hi = ya.unit(spec.y_max ? *spec.y_max : yticks.back());
  auto in_axis = [](const Axis& a, double v) {
    const double u = a.unit(v), eps = 1e-9 * (a.hi - a.lo);
    return u >= a.lo - eps && u <= a.hi + eps;
  };
  std::erase_if(xticks, [&](double v) { return !in_axis(xa, v); });
  std::erase_if(yticks, [&](double v) { return !in_axis(ya, v); });

  std::vector<std::string> ylabels, xlabels;
  int ylabel_w = 0;
  for (double v : yticks) {
    ylabels.push_back(ya.log ? format_log_tick(v) : format_tick(v, ystep));
    ylabel_w = std::max(ylabel_w, Font::text_width(ylabels.back(), ts));
  }
  for (double v : xticks) xlabels.push_back(format_tick(v, xstep));

  // ---- layout
  const int pad = 10 * ts;
  const int line_h = Font::kLineHeight * ts;
  const int tick_len = 4 * ts;
  const int top = spec.title.empty() ? pad + 4 * ts : pad + Font::kLineHeight * title_scale + 4 * ts;
  const int left = pad + (spec.y_label.empty() ? 0 : line_h + 4 * ts) + ylabel_w + tick_len + 4 * ts;
  const int bottom = tick_len + 4 * ts + line_h + (spec.x_label.empty() ? 0 : line_h + 4 * ts) + pad;
  // The last x tick label is centred on the right edge; leave room for its right half.
  const int right = std::max(pad * 2, xlabels.empty() ? 0 : Font::text_width(xlabels.back(), ts) / 2 + pad);
  const int pw = spec.width - left - right, ph = spec.height - top - bottom;
  GEOLOC_CHECK(pw >= 40 && ph >= 30, ValueError, "line chart '", spec.title, "': ", spec.width, "x",
               spec.height, " leaves no room for the plot area next to the labels");

  Canvas canvas(spec.width, spec.height, rgb(0xffffff));
  Canvas plot(pw, ph, rgb(0xffffff));
  auto px = [&](double v) { return xa.frac(v) * pw; };
  auto py = [&](double v) { return (1 - ya.frac(v)) * ph; };

  // ---- grid (on the plot canvas, which clips everything drawn in it to the plot area)
  if (spec.grid) {
    for (double v : xticks) plot.line(std::round(px(v)) + 0.5, 0, std::round(px(v)) + 0.5, ph, kGrid, 1.0);
    for (double v : yticks) plot.line(0, std::round(py(v)) + 0.5, pw, std::round(py(v)) + 0.5, kGrid, 1.0);
  }

  // ---- series
  std::vector<std::array<double, 2>> all_points;  // plot pixels, for the legend's placement
  for (size_t si = 0; si < spec.series.size(); ++si) {
    const Series& s = spec.series[si];
    const Color c = s.color.value_or(palette(si));
    const double th = s.thickness > 0 ? s.thickness : 2.0;
    size_t n_finite = 0;
    for (size_t i = 0; i < s.x.size(); ++i) n_finite += xa.usable(s.x[i]) && ya.usable(s.y[i]);
    auto ok = [&](size_t i) { return i < s.x.size() && xa.usable(s.x[i]) && ya.usable(s.y[i]); };
    // Where the line is: the last vertex drawn to, valid while the run of usable points goes on.
    bool have_pen = false;
    double pen_x = 0, pen_y = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!ok(i)) {
        have_pen = false;  // a gap
        continue;
      }
      const double x = px(s.x[i]), y = py(s.y[i]);
      all_points.push_back({x, y});
      const bool last_of_run = !ok(i + 1);
      if (!have_pen) {
        pen_x = x, pen_y = y, have_pen = true;
      } else if (std::hypot(x - pen_x, y - pen_y) >= 0.75 || last_of_run) {
        // Vertices closer than a pixel are merged: 100k logged steps on 700 pixels would otherwise
        // blend their anti-aliased edges over each other into a blurred, thicker line.
        plot.line(pen_x, pen_y, x, y, c, th);
        pen_x = x, pen_y = y;
      }
      // Isolated points (a single value, or one between gaps) would be invisible without a dot;
      // sparse series (validation every N steps) read better with every point marked.
      const bool isolated = !(i > 0 && ok(i - 1)) && last_of_run;
      if (isolated || n_finite <= 30) plot.fill_circle(x, y, th + 1.0, c);
    }
  }
  if (drawable == 0)
    plot.text(pw / 2, ph / 2 - Font::cap_height(ts) / 2, "no data", kMuted, ts, Align::center);

  // ---- legend, in the plot corner that hides the fewest points
  if (spec.legend && !spec.series.empty()) {
    const int swatch = 18 * ts, inner = 6 * ts;
    int name_w = 0;
    for (const Series& s : spec.series) name_w = std::max(name_w, Font::text_width(s.name, ts));
    struct {
      int x = 0, y = 0, w = 0, h = 0;
    } lg;
    lg.w = inner + swatch + inner + name_w + inner;
    lg.h = inner + static_cast<int>(spec.series.size()) * line_h + inner - (line_h - Font::cap_height(ts));
    const int m = 8 * ts;
    const std::array<std::array<int, 2>, 4> corners = {
        {{pw - lg.w - m, m}, {m, m}, {pw - lg.w - m, ph - lg.h - m}, {m, ph - lg.h - m}}};
    size_t best_hits = std::numeric_limits<size_t>::max();
    for (const auto& [cx, cy] : corners) {
      size_t hits = 0;
      for (const auto& [x, y] : all_points)
        hits += x >= cx - 4 && x <= cx + lg.w + 4 && y >= cy - 4 && y <= cy + lg.h + 4;
      if (hits < best_hits) best_hits = hits, lg.x = cx, lg.y = cy;
    }
    plot.fill_rect(lg.x, lg.y, lg.w, lg.h, rgb(0xffffff), 0.88);
    plot.rect(lg.x, lg.y, lg.w, lg.h, rgb(0xcccccc));
    for (size_t si = 0; si < spec.series.size(); ++si) {
      const int ty = lg.y + inner + static_cast<int>(si) * line_h;
      const double mid = ty + Font::cap_height(ts) / 2.0;
      plot.line(lg.x + inner, mid, lg.x + inner + swatch, mid, spec.series[si].color.value_or(palette(si)),
                2.0 * ts);
      plot.text(lg.x + inner + swatch + inner, ty, spec.series[si].name, kInk, ts);
    }
  }

  canvas.draw_image(left, top, plot.image());

  // ---- frame, ticks and labels
  canvas.rect(left - 1, top - 1, pw + 2, ph + 2, rgb(0xbbbbbb));
  canvas.fill_rect(left - 1, top - 1, 1, ph + 2, kAxis);   // y axis
  canvas.fill_rect(left - 1, top + ph, pw + 2, 1, kAxis);  // x axis
  for (size_t i = 0; i < xticks.size(); ++i) {
    const int x = left + static_cast<int>(std::round(px(xticks[i])));
    canvas.fill_rect(x, top + ph + 1, 1, tick_len, kAxis);
    canvas.text(x, top + ph + 1 + tick_len + 3 * ts, xlabels[i], kInk, ts, Align::center);
  }
  for (size_t i = 0; i < yticks.size(); ++i) {
    const int y = top + static_cast<int>(std::round(py(yticks[i])));
    canvas.fill_rect(left - 1 - tick_len, y, tick_len, 1, kAxis);
    canvas.text(left - 1 - tick_len - 3 * ts, y - Font::cap_height(ts) / 2, ylabels[i], kInk, ts,
                Align::right);
  }
  if (!spec.title.empty()) canvas.text(left + pw / 2, pad, spec.title, kInk, title_scale, Align::center);
  if (!spec.x_label.empty())
    canvas.text(left + pw / 2, top + ph + 1 + tick_len + 3 * ts + line_h + 4 * ts, spec.x_label, kInk, ts,
                Align::center);
  if (!spec.y_label.empty()) canvas.text_vertical(pad, top + ph / 2, spec.y_label, kInk, ts, Align::center);
  return canvas.take();
}

void write_line_chart(const std::string& png_path, const ChartSpec& spec) {
  image::write_png(png_path, render_line_chart(spec));
}

}  // namespace geoloc::viz
