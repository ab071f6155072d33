#include "geoloc/pipeline/dataset.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "geoloc/detail/parallel.hpp"

#include "geoloc/image/loader.hpp"
#include "geoloc/image/manifest.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/log.hpp"
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

Dataset Dataset::from_manifest(const std::string& path, int size, size_t* skipped, bool show_progress) {
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  // The JPEGs only need to cover `size`: DCT-scaled decoding (image.hpp, DecodeOptions::min_size).
  const image::ManifestSource source(image::read_manifest(path), image::DecodeOptions{.min_size = size});
  const size_t n = source.size();
  std::vector<image::Image> imgs(n);
  std::vector<char> ok(n, 0);
  Progress progress("decode " + path, static_cast<int64_t>(n), "img", show_progress);
  std::atomic<int64_t> done = 0;
  std::mutex log_mu;
  size_t first_bad = n;  // the first unreadable row's index and reason: one warning for all of them
  std::string first_reason;
  detail::parallel_for(n, [&](size_t i) {
    try {
      const auto s = source.get(i);
      imgs[i] = image::center_crop(image::resize_shorter(s.image, size), size, size);
      ok[i] = 1;
    } catch (const IoError& e) {  // an unreadable image is skipped; anything else stops the load
      std::lock_guard<std::mutex> lock(log_mu);
      if (i < first_bad) {
        first_bad = i;
        first_reason = e.what();
      }
    }
    const int64_t d = ++done;
    if (show_progress && d % 64 == 0) {
      std::lock_guard<std::mutex> lock(log_mu);
      progress.update(d);
    }
  });
  Dataset d;
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!ok[i]) {
      ++bad;
      continue;
    }
    const auto& e = source.manifest().entries[i];
    d.images.push_back(std::move(imgs[i]));
    d.coords.push_back({e.latitude, e.longitude});
    d.scene.push_back(e.scene);
    d.country.push_back(e.country);
  }
  progress.finish(std::to_string(d.size()) + " images, " + std::to_string(bad) + " unreadable");
  if (bad)
    log_message(LogLevel::warning, bad == 1 ? "skipping " + source.describe(first_bad) + ": " + first_reason
                                            : "skipping " + std::to_string(bad) + " unreadable images of " +
                                                  std::to_string(n) + ", the first " + source.describe(first_bad) +
                                                  ": " + first_reason);
  if (skipped) *skipped = bad;
  return d;
}

Dataset Dataset::from_shards(const image::ShardSet& shards, int size, size_t* skipped, bool show_progress) {
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  const image::DecodeOptions decode{.min_size = size};
  Progress progress("decode " + std::to_string(shards.paths().size()) + " shards", static_cast<int64_t>(shards.size()),
                    "img", show_progress);
  auto stream = shards.stream(false, 0, 0);
  Dataset d;
  size_t bad = 0, done = 0;
  std::string first_bad;  // one warning for all unreadable records: how many, and the first
  // Read a chunk sequentially (the archive is a stream), decode it in parallel, keep the file order.
  constexpr size_t kChunk = 256;
  for (;;) {
    std::vector<image::ShardRecord> chunk;
    while (chunk.size() < kChunk)
      if (auto r = stream->next()) chunk.push_back(std::move(*r)); else break;
    if (chunk.empty()) break;
    std::vector<image::Image> imgs(chunk.size());
    std::vector<char> ok(chunk.size(), 0);
    std::vector<std::string> why(chunk.size());
    detail::parallel_for(chunk.size(), [&](size_t i) {
      try {
        const auto& r = chunk[i];
        imgs[i] = image::center_crop(
            image::resize_shorter(image::decode_memory(r.bytes.data(), r.bytes.size(), r.name, decode), size), size, size);
        ok[i] = 1;
      } catch (const IoError& e) {
        why[i] = e.what();
      }
    });
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (!ok[i]) {
        if (bad++ == 0) first_bad = chunk[i].name + ": " + why[i];
        continue;
      }
      d.images.push_back(std::move(imgs[i]));
      d.coords.push_back({chunk[i].latitude, chunk[i].longitude});
      d.scene.push_back(chunk[i].scene);
      d.country.push_back(chunk[i].country);
    }
    done += chunk.size();
    progress.update(static_cast<int64_t>(done));
  }
  progress.finish(std::to_string(d.size()) + " images, " + std::to_string(bad) + " unreadable");
  if (bad)
    log_message(LogLevel::warning, bad == 1 ? "skipping " + first_bad
                                            : "skipping " + std::to_string(bad) + " unreadable records, the first " +
                                                  first_bad);
  if (skipped) *skipped = bad;
  return d;
}

}  // namespace geoloc::pipeline
