#pragma once
// Line charts as PNG (training curves: loss per step, learning rate, accuracy@km), drawn with the
// Canvas rasteriser: title, axis labels, 1-2-5 ticks, grid, optional log y axis and a legend.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "geoloc/image/image.hpp"
#include "geoloc/viz/canvas.hpp"

namespace geoloc::viz {

/// One named curve. Points whose x or y is NaN/infinite (or y <= 0 on a log axis) are gaps: the
/// line stops before them and resumes after. Points need not be sorted by x.
struct Series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
  std::optional<Color> color;  // palette(i) for the i-th series when absent
  double thickness = 2.0;      // line width in pixels
};

struct ChartSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  bool log_y = false;
  /// Fixed axis ranges; each side absent = from the data, widened to the next tick.
  std::optional<double> x_min, x_max, y_min, y_max;
  int width = 800;  // the whole PNG, pixels
  int height = 500;
  /// Integer size of the tick and label text (the title is one step larger); 0 picks it from the
  /// image width (1 below 720 pixels, 2 from there).
  int text_scale = 0;
  bool legend = true;
  bool grid = true;
};

/// "Nice" tick values covering [lo, hi]: multiples of a step of 1, 2 or 5 times a power of ten,
/// about `target` of them, from the multiple at or below lo to the one at or above hi (so
/// 0..0.93 gives 0, 0.2, ..., 1.0). lo == hi is widened by 10 % around the value (+-1 around 0).
/// Each tick is the double nearest its decimal value (0.6, not 0.6000000000000001).
/// ValueError for non-finite bounds or target < 2.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

/// Ticks of a log axis covering [lo, hi]: the powers of ten from the one at or below lo to the one
/// at or above hi; with at most two decades also 2x and 5x each power; with more than eight, every
/// n-th power so that about eight remain. ValueError unless 0 < lo <= hi and both are finite.
std::vector<double> log_ticks(double lo, double hi);

/// A short label for tick `value` on an axis whose ticks are `step` apart (step > 0): just enough
/// decimals for the step ("0.2", "0.05"), "k"/"M" suffixes for steps of thousands or millions
/// ("20k"), and "2e-4" style mantissa-exponent for steps below 0.001. Never "-0".
std::string format_tick(double value, double step);

/// The label of log-axis tick `value` (> 0): plain between 0.001 and 9999 ("0.01", "200"),
/// "1e-5" / "2e6" style outside.
std::string format_log_tick(double value);

/// Exponential moving average of `y` with smoothing factor `weight` in [0, 1) (0 = unchanged, 0.9 =
/// heavy), skipping non-finite values (they stay NaN and do not reset the average), bias-corrected
/// so the first values are not pulled towards 0. For noisy per-step losses. ValueError for weight
/// outside [0, 1).
std::vector<double> ema_smooth(std::span<const double> y, double weight);

/// Draws the chart. ShapeError naming the series whose x and y sizes differ; ValueError for a size
/// below 200x120, an empty or reversed fixed range, or a fixed y range <= 0 on a log axis. A chart
/// without any drawable point still renders its frame, with "no data" in the plot area.
image::Image render_line_chart(const ChartSpec& spec);

/// render_line_chart() written as PNG atomically: IoError and no (partial) file when `png_path`
/// cannot be written.
void write_line_chart(const std::string& png_path, const ChartSpec& spec);

}  // namespace geoloc::viz
