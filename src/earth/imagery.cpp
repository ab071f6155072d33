#include "geoloc/earth/imagery.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <numbers>

#include "geoloc/error.hpp"
#include "geoloc/geo/data_dir.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::earth {
namespace {
struct RenderingInfo {
  std::string_view name, file;
};
constexpr std::array<RenderingInfo, kNumRenderings> kRenderings{{
    {"bmng-01", "nasa-bmng-01_2048.jpg"},
    {"bmng-03", "nasa-bmng-03_2048.jpg"},
    {"bmng-05", "nasa-bmng-05_2048.jpg"},
    {"bmng-07", "nasa-bmng-07_2048.jpg"},
    {"bmng-08", "nasa-bmng-08_2048.jpg"},
    {"topo", "nasa-topo_2048.jpg"},
    {"xplanet", "xplanet-earth_2048.jpg"},
    {"openuniverse", "openuniverse-earth_2048.jpg"},
}};

void check_id(int id) {
  GEOLOC_CHECK(id >= 0 && id < kNumRenderings, ValueError, "rendering id ", id, " is outside [0, ", kNumRenderings,
               ")");
}
}  // namespace

std::string_view rendering_name(int id) {
  check_id(id);
  return kRenderings[id].name;
}
std::string_view rendering_file(int id) {
  check_id(id);
  return kRenderings[id].file;
}

Raster::Raster(image::Image img, std::string name) : img_(std::move(img)), name_(std::move(name)) {
  // Continuing over the poles maps column i to i + width/2, which needs an even width; the 2:1
  // shape is what makes pixels square in degrees, which to_pixel assumes.
  GEOLOC_CHECK(img_.width > 0 && img_.width == 2 * img_.height && img_.width % 2 == 0, ValueError, name_,
               ": an equirectangular raster must be twice as wide as high, got ", img_.width, "x", img_.height);
}

void Raster::to_pixel(double lat_deg, double lng_deg, float& x, float& y) const {
  x = static_cast<float>((lng_deg + 180.0) / 360.0 * img_.width - 0.5);
  y = static_cast<float>((90.0 - lat_deg) / 180.0 * img_.height - 0.5);
}

std::array<float, 3> Raster::sample(geo::LatLng p) const {
  float x, y;
  to_pixel(p.lat, p.lng, x, y);
  std::array<float, 3> out{};
  sample(x, y, out.data());
  return out;
}

EarthImagery EarthImagery::load(const std::string& dir_in) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string dir = dir_in.empty() ? geo::data_dir() + "/earth" : dir_in;
  std::array<std::string, kNumRenderings + 1> files;
  for (int i = 0; i < kNumRenderings; ++i) files[i] = std::string(kRenderings[i].file);
  files[kNumRenderings] = std::string(kNightLightsFile);
  // Check every file first so that a missing folder is reported as such, not as a decoding error.
  for (const auto& f : files) {
    const fs::path p = fs::path(dir) / f;
    GEOLOC_CHECK(fs::is_regular_file(p), IoError, "Earth imagery: '", p.string(),
                 "' is missing (data/earth must hold the nine JPEGs listed in data/README.md)");
  }
  EarthImagery out;
  std::array<image::Image, kNumRenderings + 1> images;
  std::array<std::exception_ptr, kNumRenderings + 1> errors;
  // Decoding dominates loading (about 25 ms per 2048x1024 JPEG); the files are independent. Errors are
  // kept per file so that the first file in order is reported, whichever thread failed first.
  run_tasks(kNumRenderings + 1, [&](int64_t i) {
    try {
      // stb, not libjpeg-turbo: the demo is a benchmark with published numbers, and its views are rendered
      // from these pixels; the two decoders differ by ~0.1 level, which would move every metric.
      images[i] = image::decode_file((fs::path(dir) / files[i]).string(),
                                     image::DecodeOptions{.jpeg = image::DecodeOptions::Jpeg::Stb});
    } catch (...) {
      errors[i] = std::current_exception();
    }
  });
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (int i = 0; i < kNumRenderings; ++i)
    out.renderings_[i] = Raster(std::move(images[i]), std::string(kRenderings[i].name));
  out.night_ = Raster(std::move(images[kNumRenderings]), "night-lights");
  for (int i = 0; i < kNumRenderings; ++i)
    GEOLOC_CHECK(out.renderings_[i].width() == out.night_.width(), IoError, "Earth imagery: '", files[i], "' is ",
                 out.renderings_[i].width(), " pixels wide but the night lights are ", out.night_.width());
  out.load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

const Raster& EarthImagery::rendering(int id) const {
  check_id(id);
  return renderings_[id];
}

}  // namespace geoloc::earth
