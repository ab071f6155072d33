#pragma once
// The whole-Earth imagery behind the "Earth views" data set: eight renderings of the Earth and the
// night-lights raster, all equirectangular (plate carree) RGB, longitude -180..180 left to right,
// latitude 90..-90 top to bottom. See data/README.md for where each file comes from.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "geoloc/geo/coords.hpp"
#include "geoloc/image/image.hpp"

namespace geoloc::earth {

/// The eight renderings, in the order of their ids (EarthSplit::rendering holds these ids).
enum class Rendering : int {
  BlueMarbleJan = 0,
  BlueMarbleMar = 1,
  BlueMarbleMay = 2,
  BlueMarbleJul = 3,
  BlueMarbleAug = 4,
  Topography = 5,     // Blue Marble with shaded relief and bathymetry
  Xplanet = 6,        // NASA Visible Earth Blue Marble composite
  OpenUniverse = 7,   // another texture with a different colour balance
};
inline constexpr int kNumRenderings = 8;

/// Short stable name of a rendering ("bmng-01", "topo", "xplanet", "openuniverse").
std::string_view rendering_name(int id);
/// File name under data/earth/ of a rendering.
std::string_view rendering_file(int id);
/// File name of the auxiliary night-lights raster under data/earth/.
inline constexpr std::string_view kNightLightsFile = "night-lights_2048.jpg";

/// An equirectangular RGB raster with bilinear sampling that wraps in longitude and continues
/// across the poles (the row above the top row is the top row half a turn away), so samples are
/// continuous everywhere on the sphere.
class Raster {
 public:
  Raster() = default;
  /// Takes an equirectangular image; ValueError unless width == 2 * height and width is even.
  explicit Raster(image::Image img, std::string name = "raster");

  int width() const { return img_.width; }
  int height() const { return img_.height; }
  const std::string& name() const { return name_; }
  const image::Image& image() const { return img_; }
  const uint8_t* data() const { return img_.pixels.data(); }

  /// Continuous pixel coordinates of a point: x in [-0.5, width - 0.5), y in [-0.5, height - 0.5];
  /// pixel (i, j) has its centre at (i, j).
  void to_pixel(double lat_deg, double lng_deg, float& x, float& y) const;
  /// Bilinear sample at continuous pixel coordinates (any x: wrapped; y in [-1, height]:
  /// continued over the poles), channel values 0..255 as floats.
  void sample(float x, float y, float rgb[3]) const;
  /// Bilinear sample at a point.
  std::array<float, 3> sample(geo::LatLng p) const;

 private:
  image::Image img_;
  std::string name_;
};

/// The rasters loaded once: the eight renderings and the night lights.
class EarthImagery {
 public:
  /// Loads data_dir()/earth (or `dir` when given). IoError naming the missing or corrupt file.
  /// The nine JPEGs are decoded in parallel on geoloc's thread pool.
  static EarthImagery load(const std::string& dir = "");

  const Raster& rendering(int id) const;
  const Raster& rendering(Rendering r) const { return rendering(static_cast<int>(r)); }
  const Raster& night_lights() const { return night_; }
  /// Seconds load() took (decoding), for reports and the benchmark.
  double load_seconds() const { return load_seconds_; }

 private:
  std::array<Raster, kNumRenderings> renderings_;
  Raster night_;
  double load_seconds_ = 0.0;
};

// Inline: it is the inner loop of render_view and of the scene features.
inline void Raster::sample(float x, float y, float rgb[3]) const {
  const int w = img_.width, h = img_.height;
  y = std::clamp(y, -1.0f, static_cast<float>(h));  // beyond one row past a pole means a caller bug; stay in memory
  const float fx0 = std::floor(x), fy0 = std::floor(y);
  const float fx = x - fx0, fy = y - fy0;
  int x0 = static_cast<int>(fx0);
  // Coordinates from to_pixel lie in [-1, w); the modulo (an integer division, slow in the
  // per-pixel loop) is only needed for other callers.
  if (x0 < 0) x0 += w;
  if (x0 < 0 || x0 >= w) x0 = ((x0 % w) + w) % w;
  const int x1 = x0 + 1 == w ? 0 : x0 + 1;
  int y0 = static_cast<int>(fy0), y1 = y0 + 1;
  // Over a pole, the row beyond the edge is the edge row seen from the other side of the Earth.
  int shift0 = 0, shift1 = 0;
  if (y0 < 0) { y0 = 0; shift0 = w / 2; }
  if (y0 > h - 1) { y0 = h - 1; shift0 = w / 2; }
  if (y1 > h - 1) { y1 = h - 1; shift1 = w / 2; }
  if (y1 < 0) { y1 = 0; shift1 = w / 2; }
  const auto col = [w](int c, int s) { c += s; return c >= w ? c - w : c; };
  const uint8_t* p = img_.pixels.data();
  const uint8_t* a = p + (static_cast<size_t>(y0) * w + col(x0, shift0)) * 3;
  const uint8_t* b = p + (static_cast<size_t>(y0) * w + col(x1, shift0)) * 3;
  const uint8_t* c = p + (static_cast<size_t>(y1) * w + col(x0, shift1)) * 3;
  const uint8_t* d = p + (static_cast<size_t>(y1) * w + col(x1, shift1)) * 3;
  const float wa = (1 - fx) * (1 - fy), wb = fx * (1 - fy), wc = (1 - fx) * fy, wd = fx * fy;
  for (int k = 0; k < 3; ++k) rgb[k] = wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
}

}  // namespace geoloc::earth
