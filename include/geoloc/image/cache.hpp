#pragma once
// A preprocessed image cache: decoded, resized 8-bit images in shard files that are memory-mapped
// on later epochs, so JPEG decoding is paid once per data set instead of once per epoch.
//
// Shard layout (little-endian), see docs/data.md:
//   header, 64 bytes: magic "GEOLOCIC", u32 version (1), u32 header bytes (64), u64 count,
//                     u32 width, u32 height, u32 channels (3), u32 record bytes (32), zero padding
//   count records, 32 bytes each: f64 latitude, f64 longitude, i32 scene, i32 country, u64 source index
//   count images, width * height * 3 bytes each, HWC RGB
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/image/image.hpp"
#include "geoloc/image/loader.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::image {

struct CacheRecord {
  double latitude = 0, longitude = 0;
  int32_t scene = -1, country = -1;
  uint64_t source_index = 0;
};

inline constexpr uint32_t kCacheVersion = 1;

/// Writes one shard atomically (write_file_atomic). Every image must be width x height;
/// ValueError/ShapeError otherwise, IoError when the file cannot be written.
void write_cache_shard(const std::string& path, int width, int height, const std::vector<Image>& images,
                       const std::vector<CacheRecord>& records);

/// A memory-mapped shard, validated on open: magic, version, channels, record size, and that the
/// file size equals what the header implies; IoError naming the file and the mismatch otherwise.
/// Coordinates of every record are range-checked too (a cheap check that catches corrupted files).
class CacheShard {
 public:
  explicit CacheShard(const std::string& path);
  size_t size() const { return count_; }
  int width() const { return width_; }
  int height() const { return height_; }
  const std::string& path() const { return path_; }
  CacheRecord record(size_t i) const;
  /// Pointer into the mapping (width * height * 3 bytes); valid while this shard lives.
  const uint8_t* pixels(size_t i) const;
  /// A copy of image i.
  Image image(size_t i) const;
  /// All images as a U8 tensor [count, height, width, 3] borrowing the mapping (no copy).
  Tensor as_tensor() const;

 private:
  std::string path_;
  std::shared_ptr<void> map_;  // the mapping; unmapped when the last user goes
  const uint8_t* base_ = nullptr;
  size_t count_ = 0;
  int width_ = 0, height_ = 0;
};

struct CacheBuildOptions {
  int width = 256, height = 256;   // every image is resized to cover this and centre-cropped
  size_t samples_per_shard = 1024; // a shard is built in memory before it is written
  int threads = 2;                 // samples decoded at once, at most (on geoloc's pool, so also <= num_threads())
  bool log_skipped = true;
};

struct CacheBuildResult {
  std::vector<std::string> shards;  // written shard paths, in order
  size_t written = 0;
  size_t skipped = 0;               // unreadable samples (IoError from the source), left out
};

/// Decodes every sample of `source` (in index order), resizes it with resize_cover, and writes
/// shards "<prefix>-00000.glc", "<prefix>-00001.glc", ... Unreadable samples are skipped and
/// counted; any other exception propagates. The output does not depend on `threads`.
CacheBuildResult build_cache(const SampleSource& source, const std::string& prefix,
                             const CacheBuildOptions& options = {});

/// Samples from cache shards (in shard order); a fast SampleSource for repeated epochs.
class CacheSource : public SampleSource {
 public:
  explicit CacheSource(const std::vector<std::string>& shard_paths);
  size_t size() const override { return total_; }
  Sample get(size_t index) const override;
  std::string describe(size_t index) const override;
  /// The source index a cached sample came from.
  uint64_t source_index(size_t index) const;

 private:
  std::pair<const CacheShard*, size_t> locate(size_t index) const;
  std::vector<std::unique_ptr<CacheShard>> shards_;
  std::vector<size_t> starts_;  // first global index of each shard
  size_t total_ = 0;
};

}  // namespace geoloc::image
