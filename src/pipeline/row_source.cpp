#include "geoloc/pipeline/row_source.hpp"


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

namespace {

// The labels of one row, as a Dataset keeps them.
struct RowLabels {
  double latitude = 0, longitude = 0;
  int scene = -1, country = -1;
};

// Decodes rows 0..count-1 in parallel (decode(j): the image, IoError when unreadable), resizes the shorter
// side to `size` and centre-crops, and keeps the readable ones in row order with labels(j). Unreadable
// rows are counted into `skipped`; the first of them by row (not by finishing time) into `first_skip`
// ("<describe(j)>: <reason>") when none was recorded yet.
template <class Decode, class Labels, class Describe>
Dataset decode_rows(size_t count, int size, const Decode& decode, const Labels& labels, const Describe& describe,
                    size_t& skipped, std::string& first_skip) {
  std::vector<image::Image> imgs(count);
  std::vector<std::string> why(count);
  std::vector<char> ok(count, 0);
  detail::parallel_for(count, [&](size_t j) {
    try {
      imgs[j] = image::center_crop(image::resize_shorter(decode(j), size), size, size);
      ok[j] = 1;
    } catch (const IoError& e) {  // an unreadable image is left out; anything else stops the run
      why[j] = e.what();
    }
  });
  Dataset d;
  for (size_t j = 0; j < count; ++j) {
    if (!ok[j]) {
      if (skipped++ == 0) first_skip = describe(j) + ": " + why[j];
      continue;
    }
    const RowLabels l = labels(j);
    d.images.push_back(std::move(imgs[j]));
    d.coords.push_back({l.latitude, l.longitude});
    d.scene.push_back(l.scene);
    d.country.push_back(l.country);
  }
  return d;
}

void check_range(size_t start, size_t count, size_t size) {
  GEOLOC_CHECK(start + count <= size, ValueError, "rows ", start, "..", start + count, " out of range (", size, " rows)");
}

}  // namespace

struct ManifestRows::Impl {
  image::ManifestSource source;
  int size;
  size_t skipped = 0;
  std::string first_skip;
};

ManifestRows::ManifestRows(const std::string& manifest_path, int size) {
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  impl_.reset(new Impl{image::ManifestSource(image::read_manifest(manifest_path), image::DecodeOptions{.min_size = size}),
                       size, 0, {}});
}
ManifestRows::~ManifestRows() = default;

size_t ManifestRows::size() const { return impl_->source.size(); }

Dataset ManifestRows::rows(size_t start, size_t count) const {
  Impl& s = *impl_;
  check_range(start, count, s.source.size());
  return decode_rows(
      count, s.size, [&](size_t j) { return s.source.get(start + j).image; },
      [&](size_t j) {
        const auto& e = s.source.manifest().entries[start + j];
        return RowLabels{e.latitude, e.longitude, e.scene, e.country};
      },
      [&](size_t j) { return s.source.describe(start + j); }, s.skipped, s.first_skip);
}

size_t ManifestRows::skipped() const { return impl_->skipped; }
std::string ManifestRows::first_skip() const { return impl_->first_skip; }

struct ShardRows::Impl {
  std::shared_ptr<const image::ShardSet> shards;
  int size;
  std::unique_ptr<image::ShardStream> stream;
  size_t next = 0;  // position of the stream's next record
  size_t skipped = 0;
  std::string first_skip;
};

ShardRows::ShardRows(std::shared_ptr<const image::ShardSet> shards, int size) {
  GEOLOC_CHECK(shards != nullptr, ValueError, "ShardRows needs a shard set");
  GEOLOC_CHECK(size > 0, ValueError, "image size must be positive, got ", size);
  impl_.reset(new Impl{std::move(shards), size, nullptr, 0, 0, {}});
}
ShardRows::~ShardRows() = default;

size_t ShardRows::size() const { return impl_->shards->size(); }

Dataset ShardRows::rows(size_t start, size_t count) const {
  Impl& s = *impl_;
  check_range(start, count, s.shards->size());
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
  return decode_rows(
      count, s.size,
      [&](size_t j) {
        const auto& r = records[j];
        return image::decode_memory(r.bytes.data(), r.bytes.size(), r.name, decode);
      },
      [&](size_t j) {
        const auto& r = records[j];
        return RowLabels{r.latitude, r.longitude, r.scene, r.country};
      },
      [&](size_t j) { return records[j].name; }, s.skipped, s.first_skip);
}

size_t ShardRows::skipped() const { return impl_->skipped; }
std::string ShardRows::first_skip() const { return impl_->first_skip; }

}  // namespace geoloc::pipeline
