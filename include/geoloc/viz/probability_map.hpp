#pragma once
// World maps of a classifier's output: the probability of each class of a geo::Partition painted
// over an equirectangular picture of the Earth, with the prediction, the truth, the distance
// between them, optional top-k labels, cell borders, a title and a colour bar.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "geoloc/geo/coords.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/viz/canvas.hpp"
#include "geoloc/viz/colormap.hpp"

namespace geoloc::viz {

/// What to draw on one map.
struct ProbabilityMapSpec {
  std::string title;
  /// Marked with a cross; absent = the centre of the most probable class.
  std::optional<geo::LatLng> prediction;
  /// Marked with a circle and joined to the prediction along the great circle, labelled with the
  /// distance in km; absent = not drawn.
  std::optional<geo::LatLng> truth;
  /// Colour and opacity follow t = p / max(p) (linear) or, on the log scale,
  /// t = 1 + log10(p / max(p)) / log_decades, so that log_decades orders of magnitude below the
  /// maximum are visible. Pixels with t <= 0 (and classes with p = 0) are left uncovered.
  bool log_scale = false;
  double log_decades = 4.0;
  Colormap colormap = Colormap::inferno;
  /// Opacity of the overlay where t = 1; it falls off linearly with t.
  double max_alpha = 0.85;
  /// Faint lines where neighbouring pixels belong to different classes.
  bool cell_borders = true;
  /// Labels the k most probable classes at their centres with rank and probability (0 = none).
  int top_k = 0;
  /// Colour bar with the scale and the marker legend in the bottom-left corner.
  bool colorbar = true;
  /// Integer size of labels and markers (the title is one step larger); 0 picks it from the map
  /// width (1 below 900 pixels, 2 from there).
  int text_scale = 0;
};

/// A rectangle on the map: columns [x0, x1) and rows [y0, y1).
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool intersects(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
  bool inside(int width, int height) const { return x0 >= 0 && y0 >= 0 && x1 <= width && y1 <= height; }
};

/// One piece of text on a map and the rectangle it covers (its halo or backing panel included).
struct MapLabel {
  /// "title", "top_k" (the ranked list), "legend" (colour bar and marker legend), "distance" (km
  /// between prediction and truth) or "rank" (a rank number next to its cell's dot).
  std::string role;
  /// What it says: the distance or rank text; for the title, list and legend the first line.
  std::string text;
  Box box;
  int text_x = 0, text_y = 0;  // top-left of the text (of the panel for "top_k" and "legend")
};

/// Where render() puts its labels and markers. No two labels intersect and every label lies
/// inside the map, whatever the prediction and the truth, on any map where the title, list and
/// legend panels fit in their corners (512x256 and up at the default text scale; tested): the
/// panels take their places first (the list and the legend move to another corner rather than
/// cover the prediction or the truth), then the distance label tries places beside the middle of
/// the path and beside the markers and, failing those, the free spot nearest the middle of the
/// path; rank numbers go where they still fit and are left out otherwise (the list has them).
struct MapLayout {
  std::vector<MapLabel> labels;
  /// The extent of the prediction cross and the truth ring ("prediction", "truth"), which
  /// labels avoid too where the map leaves room.
  std::vector<MapLabel> markers;
  /// The label of `role`, or nullptr; the pointer lives as long as this layout.
  const MapLabel* find(std::string_view role) const& {
    for (const auto& l : labels)
      if (l.role == role) return &l;
    return nullptr;
  }
  /// Not on a temporary (r.layout(...).find(...)): the pointer would dangle at once (AddressSanitizer
  /// found a test reading it after the layout was freed).
  const MapLabel* find(std::string_view role) const&& = delete;
};

/// The default background: data_dir()/earth/nasa-bmng-07_2048.jpg (NASA Blue Marble, July).
std::string default_background_path();

/// Draws probability maps for one partition at one size. Construction assigns every pixel centre
/// of the map to its class once (width * height point lookups, in parallel) and prepares the
/// darkened background; each render() after that is a per-pixel table lookup, so drawing a map per
/// validation image costs milliseconds. The partition must outlive the renderer. Thread-safe for
/// render()/write() once constructed.
class MapRenderer {
 public:
  /// `background` is any equirectangular image (longitude -180..180 left to right, latitude
  /// 90..-90 top to bottom), resized to width x height and multiplied by `brightness` (in (0, 1])
  /// so that the overlay stands out; an empty image gives a plain dark background.
  /// ValueError for a size below 64x32, brightness outside (0, 1] or an empty partition.
  MapRenderer(const geo::Partition& partition, const image::Image& background, int width = 1024,
              int height = 512, double brightness = 0.6);
  /// Same with the background decoded from `background_path` (IoError when it cannot be read).
  MapRenderer(const geo::Partition& partition, const std::string& background_path, int width = 1024,
              int height = 512, double brightness = 0.6);

  int width() const { return width_; }
  int height() const { return height_; }
  const geo::Partition& partition() const { return *partition_; }
  /// The class of every pixel centre, row-major (-1 where the partition has none): the cache.
  const std::vector<int>& class_map() const { return class_of_pixel_; }
  /// The darkened background the maps are drawn on.
  const image::Image& background() const { return background_; }

  /// Image coordinates of `p` (continuous: pixel (x, y) spans [x, x + 1) x [y, y + 1), so (0, 0)
  /// maps to (width / 2, height / 2)).
  std::array<double, 2> to_pixel(geo::LatLng p) const;
  /// The coordinate at continuous image position (x, y); pixel centres are at (x + 0.5, y + 0.5).
  geo::LatLng to_latlng(double x, double y) const;

  /// Draws the map. ShapeError unless probabilities.size() == partition().size(); ValueError naming
  /// the first negative or non-finite probability, an invalid prediction/truth coordinate, or
  /// log_decades <= 0, max_alpha outside [0, 1], top_k < 0 or text_scale < 0.
  image::Image render(std::span<const float> probabilities, const ProbabilityMapSpec& spec = {}) const;
  /// The label and marker rectangles render() uses for these inputs; same errors as render().
  MapLayout layout(std::span<const float> probabilities, const ProbabilityMapSpec& spec = {}) const;
  /// render() written as PNG atomically: IoError and no (partial) file when `png_path` cannot be written.
  void write(const std::string& png_path, std::span<const float> probabilities,
             const ProbabilityMapSpec& spec = {}) const;

 private:
  void build(const image::Image& background, double brightness);
  void validate(std::span<const float> probabilities, const ProbabilityMapSpec& spec) const;

  const geo::Partition* partition_;
  int width_, height_;
  image::Image background_;
  std::vector<int> class_of_pixel_;
  std::vector<uint8_t> border_;  // 1 where the right or lower neighbour has another class
};

/// One-off convenience: a MapRenderer over `background_path`, one map written. Prefer a MapRenderer
/// for several maps of one partition: this pays the pixel assignment every call.
void write_probability_map(const std::string& png_path, const geo::Partition& partition,
                           std::span<const float> probabilities, const ProbabilityMapSpec& spec = {},
                           const std::string& background_path = default_background_path(), int width = 1024,
                           int height = 512);

}  // namespace geoloc::viz
