#include "geoloc/pipeline/row_source.hpp"

#include <mutex>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/image/loader.hpp"
#include "geoloc/image/transforms.hpp"

namespace geoloc::pipeline {

Dataset DatasetRows::rows(size_t start, size_t count) const {
  GEOLOC_CHECK(start + count <= data_.size(), ValueError, "rows ", start, "..", start + count, " out of range (",
               data_.size(), " rows)");
  std::vector<size_t> idx(count);
  for (size_t i = 0; i < count; ++i) idx[i] = start + i;
  return data_.subset(idx);
}

struct ManifestRows::Impl {
  image::ManifestSource source;
  int size;
  mutable std::mutex mu;
  mutable size_t skipped = 0;
  mutable std::string first_skip;
};

ManifestRows::ManifestRows(const std::string& manifest_path, int size) {
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  impl_.reset(new Impl{image::ManifestSource(image::read_manifest(manifest_path), image::DecodeOptions{.min_size = size}),
                       size, {}, 0, {}});
}
ManifestRows::~ManifestRows() = default;

size_t ManifestRows::size() const { return impl_->source.size(); }

Dataset ManifestRows::rows(size_t start, size_t count) const {
  const Impl& s = *impl_;
  GEOLOC_CHECK(start + count <= s.source.size(), ValueError, "rows ", start, "..", start + count, " out of range (",
               s.source.size(), " rows)");
  std::vector<image::Image> imgs(count);
  std::vector<char> ok(count, 0);
  detail::parallel_for(count, [&](size_t j) {
    try {
      const auto smp = s.source.get(start + j);
      imgs[j] = image::center_crop(image::resize_shorter(smp.image, s.size), s.size, s.size);
      ok[j] = 1;
    } catch (const IoError& e) {  // an unreadable image is left out; anything else stops the run
      std::lock_guard<std::mutex> lock(s.mu);
      if (s.skipped++ == 0) s.first_skip = s.source.describe(start + j) + ": " + e.what();
    }
  });
  Dataset d;
  for (size_t j = 0; j < count; ++j) {
    if (!ok[j]) continue;
    const auto& e = s.source.manifest().entries[start + j];
    d.images.push_back(std::move(imgs[j]));
    d.coords.push_back({e.latitude, e.longitude});
    d.scene.push_back(e.scene);
    d.country.push_back(e.country);
  }
  return d;
}

size_t ManifestRows::skipped() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->skipped;
}

std::string ManifestRows::first_skip() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->first_skip;
}

}  // namespace geoloc::pipeline
