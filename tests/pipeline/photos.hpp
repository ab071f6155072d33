#pragma once
// A small generated photo set for end-to-end tests: four far-apart places, each with its own look,
// written as PNG files with a manifest (image,latitude,longitude,scene,country).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "geoloc/geo/coords.hpp"
#include "geoloc/image/image.hpp"

namespace geoloc::test {
struct Place {
  geo::LatLng at;
  int country;
  uint8_t r, g, b;
};
// Four far-apart places, each with its own look; the photos of a place are noisy variations of it.
inline const Place kPlaces[] = {{{48.85, 2.35}, 250, 200, 60, 60},
                         {{35.68, 139.69}, 392, 60, 200, 60},
                         {{-33.87, 151.21}, 36, 60, 60, 200},
                         {{40.71, -74.0}, 840, 200, 200, 60}};

struct PhotoSet {
  std::filesystem::path dir;
  std::string manifest;
};

/// Writes `per_place` PNG photos per place under a fresh folder and a manifest listing them.
inline PhotoSet make_photos(const std::string& name, int per_place, uint32_t seed, int size = 40) {
  PhotoSet s;
  s.dir = std::filesystem::temp_directory_path() / ("geoloc_pipeline_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(s.dir);
  std::filesystem::create_directories(s.dir / "img");
  std::mt19937 rng(seed);
  std::normal_distribution<double> jitter_km(0.0, 30.0);
  std::uniform_int_distribution<int> noise(-40, 40);
  std::ofstream m(s.dir / "manifest.csv");
  m << "image,latitude,longitude,scene,country\n";
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < per_place; ++i) {
      image::Image img(size, size);
      const auto& pl = kPlaces[p];
      const int stripe = (p % 2) ? 4 : 8;  // texture differs too, not only colour
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const int shade = ((x / stripe) % 2) ? 40 : 0;
          uint8_t* px = img.at(x, y);
          px[0] = static_cast<uint8_t>(std::clamp(pl.r - shade + noise(rng), 0, 255));
          px[1] = static_cast<uint8_t>(std::clamp(pl.g - shade + noise(rng), 0, 255));
          px[2] = static_cast<uint8_t>(std::clamp(pl.b - shade + noise(rng), 0, 255));
        }
      const std::string file = "img/p" + std::to_string(p) + "_" + std::to_string(i) + ".png";
      image::write_png((s.dir / file).string(), img);
      const geo::LatLng at = geo::destination(pl.at, 360.0 * i / per_place, std::fabs(jitter_km(rng)));
      m << file << "," << at.lat << "," << at.lng << "," << (p % 2) << "," << pl.country << "\n";
    }
  s.manifest = (s.dir / "manifest.csv").string();
  return s;
}

}  // namespace geoloc::test
