#pragma once
// A labelled set of same-size RGB images held in memory: what the trainer, the evaluator and the
// k-NN index read. Photos from a manifest are decoded once, resized and centre-cropped to a square.
#include <string>
#include <vector>

#include "geoloc/geo/coords.hpp"
#include "geoloc/image/image.hpp"

namespace geoloc::image {
class ShardSet;
}

namespace geoloc::pipeline {

struct Dataset {
  std::vector<image::Image> images;  // all of one size
  std::vector<geo::LatLng> coords;
  std::vector<int> scene;    // class id, -1 = unknown
  std::vector<int> country;  // ISO 3166-1 numeric, -1 = unknown

  size_t size() const { return images.size(); }
  /// ValueError naming `name` and the first bad row: sizes differ, mixed image sizes, bad coordinate.
  void validate(const std::string& name) const;
  /// The rows `rows`, in that order.
  Dataset subset(const std::vector<size_t>& rows) const;

  /// Reads a CSV manifest (`image,latitude,longitude` and optional `scene`, `country`; paths relative to
  /// the manifest). Each image is decoded, its shorter side resized to `size` and centre-cropped to
  /// size x size. Bad rows throw ValueError naming the line; unreadable images are reported to the log handler (geoloc/log.hpp)
  /// and skipped, their count stored in *skipped when given.
  static Dataset from_manifest(const std::string& path, int size, size_t* skipped = nullptr,
                               bool show_progress = true);
  /// The same for the usable records of shards, in listed order (image::ShardSet::stream without
  /// shuffling); an image that does not decode is reported and skipped like an unreadable file.
  static Dataset from_shards(const image::ShardSet& shards, int size, size_t* skipped = nullptr,
                             bool show_progress = true);
};

}  // namespace geoloc::pipeline
