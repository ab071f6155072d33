#include "geoloc/image/cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "geoloc/atomic_file.hpp"
#include "geoloc/log.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::image {

namespace {

constexpr char kMagic[8] = {'G', 'E', 'O', 'L', 'O', 'C', 'I', 'C'};
constexpr size_t kHeaderBytes = 64;
constexpr size_t kRecordBytes = 32;

// Explicit little-endian encoding keeps the format fixed whatever the host's byte order.
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
void put_f64(uint8_t* p, double d) {
  uint64_t v;
  std::memcpy(&v, &d, 8);
  put_u64(p, v);
}
double get_f64(const uint8_t* p) {
  const uint64_t v = get_u64(p);
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}

struct Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr) munmap(addr, len);
  }
};

}  // namespace

void write_cache_shard(const std::string& path, int width, int height, const std::vector<Image>& images,
                       const std::vector<CacheRecord>& records) {
  GEOLOC_CHECK(width > 0 && height > 0 && width <= 65535 && height <= 65535, ValueError, "cache shard '", path,
               "': size ", width, "x", height, " must be in [1, 65535]");
  GEOLOC_CHECK(images.size() == records.size(), ValueError, "cache shard '", path, "': ", images.size(),
               " images but ", records.size(), " records");
  for (size_t i = 0; i < images.size(); ++i)
    GEOLOC_CHECK(images[i].width == width && images[i].height == height &&
                     images[i].pixels.size() == static_cast<size_t>(width) * height * 3,
                 ShapeError, "cache shard '", path, "': image ", i, " is ", images[i].width, "x", images[i].height,
                 ", the shard holds ", width, "x", height);
  uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  put_u32(header + 8, kCacheVersion);
  put_u32(header + 12, kHeaderBytes);
  put_u64(header + 16, images.size());
  put_u32(header + 24, static_cast<uint32_t>(width));
  put_u32(header + 28, static_cast<uint32_t>(height));
  put_u32(header + 32, 3);
  put_u32(header + 36, kRecordBytes);
  std::vector<uint8_t> recs(records.size() * kRecordBytes);
  for (size_t i = 0; i < records.size(); ++i) {
    uint8_t* p = recs.data() + i * kRecordBytes;
    put_f64(p, records[i].latitude);
    put_f64(p + 8, records[i].longitude);
    put_u32(p + 16, static_cast<uint32_t>(records[i].scene));
    put_u32(p + 20, static_cast<uint32_t>(records[i].country));
    put_u64(p + 24, records[i].source_index);
  }
  write_file_atomic(path, [&](std::ostream& os) {
    os.write(reinterpret_cast<const char*>(header), kHeaderBytes);
    os.write(reinterpret_cast<const char*>(recs.data()), static_cast<std::streamsize>(recs.size()));
    for (const Image& img : images)
      os.write(reinterpret_cast<const char*>(img.pixels.data()), static_cast<std::streamsize>(img.pixels.size()));
  });
}

CacheShard::CacheShard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GEOLOC_CHECK(fd >= 0, IoError, "cannot open cache shard '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(detail::cat("cannot stat cache shard '", path, "': ", std::strerror(err)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kHeaderBytes) {
    ::close(fd);
    throw IoError(detail::cat("cache shard '", path, "' is ", size, " bytes, shorter than its ", kHeaderBytes,
                              "-byte header (truncated?)"));
  }
  void* addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  GEOLOC_CHECK(addr != MAP_FAILED, IoError, "cannot map cache shard '", path, "': ", std::strerror(map_err));
  auto m = std::make_shared<Mapping>();
  m->addr = addr;
  m->len = size;
  map_ = m;
  base_ = static_cast<const uint8_t*>(addr);

  GEOLOC_CHECK(std::memcmp(base_, kMagic, 8) == 0, IoError, "'", path, "' is not a geoloc image cache shard (bad magic)");
  const uint32_t version = get_u32(base_ + 8), hdr = get_u32(base_ + 12);
  GEOLOC_CHECK(version == kCacheVersion, IoError, "cache shard '", path, "' has format version ", version,
               ", this build reads version ", kCacheVersion, " (rebuild the cache)");
  GEOLOC_CHECK(hdr == kHeaderBytes, IoError, "cache shard '", path, "': header size ", hdr, ", expected ", kHeaderBytes);
  const uint64_t count = get_u64(base_ + 16);
  const uint32_t w = get_u32(base_ + 24), h = get_u32(base_ + 28), ch = get_u32(base_ + 32), rb = get_u32(base_ + 36);
  GEOLOC_CHECK(ch == 3 && rb == kRecordBytes, IoError, "cache shard '", path, "': ", ch, " channels and ", rb,
               "-byte records, expected 3 and ", kRecordBytes);
  GEOLOC_CHECK(w >= 1 && h >= 1 && w <= 65535 && h <= 65535, IoError, "cache shard '", path, "': image size ", w, "x",
               h, " is invalid");
  const uint64_t per = kRecordBytes + static_cast<uint64_t>(w) * h * 3;
  // Division instead of multiplication: a corrupted count must not overflow into a "valid" size.
  GEOLOC_CHECK(count <= (size - kHeaderBytes) / per && kHeaderBytes + count * per == size, IoError, "cache shard '",
               path, "' is ", size, " bytes but its header (", count, " images of ", w, "x", h, ") implies ",
               count <= (UINT64_MAX - kHeaderBytes) / per ? std::to_string(kHeaderBytes + count * per) : "more",
               " bytes (truncated or corrupt)");
  count_ = static_cast<size_t>(count);
  width_ = static_cast<int>(w);
  height_ = static_cast<int>(h);
  for (size_t i = 0; i < count_; ++i) {
    const CacheRecord r = record(i);
    GEOLOC_CHECK(std::abs(r.latitude) <= 90.0 && std::abs(r.longitude) <= 180.0, IoError, "cache shard '", path,
                 "': record ", i, " has coordinates (", r.latitude, ", ", r.longitude, "), out of range (corrupt)");
  }
}

CacheRecord CacheShard::record(size_t i) const {
  GEOLOC_CHECK(i < count_, ValueError, "cache shard '", path_, "': record ", i, " >= count ", count_);
  const uint8_t* p = base_ + kHeaderBytes + i * kRecordBytes;
  CacheRecord r;
  r.latitude = get_f64(p);
  r.longitude = get_f64(p + 8);
  r.scene = static_cast<int32_t>(get_u32(p + 16));
  r.country = static_cast<int32_t>(get_u32(p + 20));
  r.source_index = get_u64(p + 24);
  return r;
}

const uint8_t* CacheShard::pixels(size_t i) const {
  GEOLOC_CHECK(i < count_, ValueError, "cache shard '", path_, "': image ", i, " >= count ", count_);
  return base_ + kHeaderBytes + count_ * kRecordBytes + i * static_cast<size_t>(width_) * height_ * 3;
}

Image CacheShard::image(size_t i) const {
  const uint8_t* p = pixels(i);
  Image img;
  img.width = width_;
  img.height = height_;
  img.pixels.assign(p, p + static_cast<size_t>(width_) * height_ * 3);
  return img;
}

Tensor CacheShard::as_tensor() const {
  GEOLOC_CHECK(count_ > 0, ValueError, "cache shard '", path_, "' is empty; no tensor to view");
  return Tensor::borrow(const_cast<uint8_t*>(pixels(0)),
                        Shape{static_cast<int64_t>(count_), height_, width_, 3}, DType::U8, Device::cpu(), map_);
}

CacheBuildResult build_cache(const SampleSource& source, const std::string& prefix, const CacheBuildOptions& o) {
  GEOLOC_CHECK(o.samples_per_shard >= 1, ValueError, "build_cache: samples_per_shard must be >= 1");
  GEOLOC_CHECK(o.threads >= 1 && o.threads <= 256, ValueError, "build_cache: threads ", o.threads, " not in [1, 256]");
  GEOLOC_CHECK(o.width > 0 && o.height > 0, ValueError, "build_cache: size ", o.width, "x", o.height, " is not positive");
  CacheBuildResult res;
  const size_t n = source.size();
  std::vector<Image> images;
  std::vector<CacheRecord> records;
  size_t begin = 0, shard = 0;
  do {  // at least one shard, so that an empty source still yields an openable (empty) cache
    const size_t end = std::min(n, begin + o.samples_per_shard);
    // Each index writes only its own slot, so the shard's content is independent of scheduling.
    std::vector<std::optional<Sample>> got(end - begin);
    std::vector<std::exception_ptr> errs(end - begin);
    std::atomic<size_t> next{begin};
    std::atomic<size_t> skipped{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < end;) {
        try {
          Sample s = source.get(i);
          s.image = resize_cover(s.image, o.width, o.height);
          got[i - begin] = std::move(s);
        } catch (const IoError& e) {
          skipped.fetch_add(1);
          if (o.log_skipped) log_message(LogLevel::warning, "cache: skipping " + source.describe(i) + ": " + e.what());
        } catch (...) {
          errs[i - begin] = std::current_exception();
        }
      }
    };
    // o.threads tasks of the pool, each taking indices from `next`: at most o.threads decode at once
    // (fewer when the pool is smaller).
    const int nt = static_cast<int>(std::min<size_t>(o.threads, std::max<size_t>(1, end - begin)));
    run_tasks(nt, [&](int64_t) { work(); });
    for (auto& e : errs)
      if (e) std::rethrow_exception(e);
    images.clear();
    records.clear();
    for (size_t i = begin; i < end; ++i) {
      auto& s = got[i - begin];
      if (!s) continue;
      records.push_back({s->latitude, s->longitude, s->scene, s->country, i});
      images.push_back(std::move(s->image));
    }
    res.skipped += skipped.load();
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05zu.glc", shard);
    const std::string path = prefix + suffix;
    write_cache_shard(path, o.width, o.height, images, records);
    res.shards.push_back(path);
    res.written += images.size();
    begin = end;
    ++shard;
  } while (begin < n);
  return res;
}

CacheSource::CacheSource(const std::vector<std::string>& paths) {
  GEOLOC_CHECK(!paths.empty(), ValueError, "CacheSource: no shard paths");
  for (const auto& p : paths) {
    shards_.push_back(std::make_unique<CacheShard>(p));
    starts_.push_back(total_);
    total_ += shards_.back()->size();
  }
}

std::pair<const CacheShard*, size_t> CacheSource::locate(size_t index) const {
  GEOLOC_CHECK(index < total_, ValueError, "CacheSource: index ", index, " >= size ", total_);
  const size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), index) - starts_.begin()) - 1;
  // Empty shards share a start with their successor; upper_bound lands on the last of them, which
  // is the one that actually holds `index`.
  return {shards_[s].get(), index - starts_[s]};
}

Sample CacheSource::get(size_t index) const {
  const auto [shard, i] = locate(index);
  const CacheRecord r = shard->record(i);
  Sample s;
  s.image = shard->image(i);
  s.latitude = r.latitude;
  s.longitude = r.longitude;
  s.scene = r.scene;
  s.country = r.country;
  return s;
}

std::string CacheSource::describe(size_t index) const {
  if (index >= total_) return "sample " + std::to_string(index);
  const auto [shard, i] = locate(index);
  return "'" + shard->path() + "' record " + std::to_string(i);
}

uint64_t CacheSource::source_index(size_t index) const {
  const auto [shard, i] = locate(index);
  return shard->record(i).source_index;
}

}  // namespace geoloc::image
