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

struct ShardRows::Impl {
  std::shared_ptr<const image::ShardSet> shards;
  int size;
  mutable std::unique_ptr<image::ShardStream> stream;
  mutable size_t next = 0;  // position of the stream's next record
  mutable size_t skipped = 0;
  mutable std::string first_skip;
};

ShardRows::ShardRows(std::shared_ptr<const image::ShardSet> shards, int size) {
  GEOLOC_CHECK(shards != nullptr, ValueError, "ShardRows needs a shard set");
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  impl_.reset(new Impl{std::move(shards), size, nullptr, 0, 0, {}});
}
ShardRows::~ShardRows() = default;

size_t ShardRows::size() const { return impl_->shards->size(); }

Dataset ShardRows::rows(size_t start, size_t count) const {
  const Impl& s = *impl_;
  GEOLOC_CHECK(start + count <= s.shards->size(), ValueError, "rows ", start, "..", start + count, " out of range (",
               s.shards->size(), " rows)");
  if (!s.stream || start < s.next) {  // first use, or going back: a new pass
    s.stream = s.shards->stream(false, 0, 0);
    s.next = 0;
  }
  auto read = [&]() {
    auto r = s.stream->next();
    GEOLOC_CHECK(r.has_value(), IoError, "the shards ended after ", s.next, " of ", s.shards->size(),
                 " records (did a shard change since it was indexed?)");
    ++s.next;
    return std::move(*r);
  };
  while (s.next < start) read();
  std::vector<image::ShardRecord> records;
  records.reserve(count);
  for (size_t j = 0; j < count; ++j) records.push_back(read());
  const image::DecodeOptions decode{.min_size = s.size};
  std::vector<image::Image> imgs(count);
  std::vector<std::string> why(count);
  std::vector<char> ok(count, 0);
  detail::parallel_for(count, [&](size_t j) {
    try {
      const auto& r = records[j];
      imgs[j] = image::center_crop(
          image::resize_shorter(image::decode_memory(r.bytes.data(), r.bytes.size(), r.name, decode), s.size), s.size,
          s.size);
      ok[j] = 1;
    } catch (const IoError& e) {  // an undecodable record is left out; anything else stops the run
      why[j] = e.what();
    }
  });
  Dataset d;
  for (size_t j = 0; j < count; ++j) {
    if (!ok[j]) {
      if (s.skipped++ == 0) s.first_skip = records[j].name + ": " + why[j];
      continue;
    }
    d.images.push_back(std::move(imgs[j]));
    d.coords.push_back({records[j].latitude, records[j].longitude});
    d.scene.push_back(records[j].scene);
    d.country.push_back(records[j].country);
  }
  return d;
}

size_t ShardRows::skipped() const { return impl_->skipped; }
std::string ShardRows::first_skip() const { return impl_->first_skip; }

}  // namespace geoloc::pipeline
