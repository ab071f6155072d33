#include "geoloc/pipeline/dataset.hpp"

#include <algorithm>
#include <memory>

#include "geoloc/image/shards.hpp"
#include "geoloc/log.hpp"
#include "geoloc/pipeline/row_source.hpp"
#include "geoloc/progress.hpp"

namespace geoloc::pipeline {

void Dataset::validate(const std::string& name) const {
  const size_t n = images.size();
  GEOLOC_CHECK(coords.size() == n && scene.size() == n && country.size() == n, ValueError, name, ": ", n,
               " images but ", coords.size(), " coordinates, ", scene.size(), " scene and ", country.size(),
               " country labels");
  for (size_t i = 0; i < n; ++i) {
    GEOLOC_CHECK(images[i].width == images[0].width && images[i].height == images[0].height, ShapeError, name,
                 " row ", i, ": image is ", images[i].width, "x", images[i].height, " but row 0 is ", images[0].width,
                 "x", images[0].height);
    geo::validate(coords[i], name + " row " + std::to_string(i));
  }
}

Dataset Dataset::subset(const std::vector<size_t>& rows) const {
  Dataset d;
  for (size_t r : rows) {
    GEOLOC_CHECK(r < size(), ValueError, "subset: row ", r, " out of range (", size(), " rows)");
    d.images.push_back(images[r]);
    d.coords.push_back(coords[r]);
    d.scene.push_back(scene[r]);
    d.country.push_back(country[r]);
  }
  return d;
}

namespace {

// All rows of `rows`, a chunk at a time (each decoded in parallel), with progress; one warning for all
// unreadable images: how many, and the first.
Dataset read_all(const RowSource& rows, const std::string& what, const std::string& unit, size_t* skipped,
                 bool show_progress) {
  const size_t n = rows.size();
  Progress progress("decode " + what, static_cast<int64_t>(n), "img", show_progress);
  Dataset d;
  constexpr size_t kChunk = 256;
  for (size_t start = 0; start < n; start += kChunk) {
    Dataset part = rows.rows(start, std::min(kChunk, n - start));
    for (size_t i = 0; i < part.size(); ++i) {
      d.images.push_back(std::move(part.images[i]));
      d.coords.push_back(part.coords[i]);
      d.scene.push_back(part.scene[i]);
      d.country.push_back(part.country[i]);
    }
    progress.update(static_cast<int64_t>(std::min(n, start + kChunk)));
  }
  const size_t bad = rows.skipped();
  progress.finish(std::to_string(d.size()) + " images, " + std::to_string(bad) + " unreadable");
  if (bad)
    log_message(LogLevel::warning, bad == 1 ? "skipping " + rows.first_skip()
                                            : "skipping " + std::to_string(bad) + " " + unit + ", the first " +
                                                  rows.first_skip());
  if (skipped) *skipped = bad;
  return d;
}

}  // namespace

Dataset Dataset::from_manifest(const std::string& path, int size, size_t* skipped, bool show_progress) {
  // The JPEGs only need to cover `size`: DCT-scaled decoding (image.hpp, DecodeOptions::min_size).
  const ManifestRows rows(path, size);
  return read_all(rows, path, "unreadable images of " + std::to_string(rows.size()), skipped, show_progress);
}

Dataset Dataset::from_shards(const image::ShardSet& shards, int size, size_t* skipped, bool show_progress) {
  // The caller's set, not owned (an empty owner): it outlives this call.
  const ShardRows rows(std::shared_ptr<const image::ShardSet>(std::shared_ptr<const image::ShardSet>(), &shards), size);
  return read_all(rows, std::to_string(shards.paths().size()) + " shards", "unreadable records", skipped, show_progress);
}

}  // namespace geoloc::pipeline
