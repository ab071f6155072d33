// The preprocessed cache: round trip, independence from the thread count, and rejection of
// damaged shards.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "geoloc/image/cache.hpp"

using namespace geoloc;
using namespace geoloc::image;
namespace fs = std::filesystem;

namespace {

Sample sample(size_t i) {
  Sample s;
  s.image = Image(20 + static_cast<int>(i % 3) * 5, 14);  // varied sizes: the cache normalises them
  for (size_t p = 0; p < s.image.pixels.size(); ++p) s.image.pixels[p] = static_cast<uint8_t>((i * 17 + p * 3) & 0xFF);
  s.latitude = -45.0 + static_cast<double>(i);
  s.longitude = 100.0 + static_cast<double>(i);
  s.scene = static_cast<int32_t>(i);
  s.country = i % 2 ? -1 : 250;
  return s;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("geoloc_cache_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<char> slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& p, const std::vector<char>& b) {
  std::ofstream o(p, std::ios::binary | std::ios::trunc);
  o.write(b.data(), static_cast<std::streamsize>(b.size()));
}

std::string error_of(const std::string& path) {
  try {
    CacheShard s(path);
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cache round trip: shards, records, pixels, and the loader on top") {
  const fs::path d = temp_dir();
  CallbackSource src(10, [](size_t i) -> Sample {
    if (i == 6) throw IoError("sample 6 is unreadable");
    return sample(i);
  });
  CacheBuildOptions o;
  o.width = 16;
  o.height = 12;
  o.samples_per_shard = 4;
  o.threads = 1;
  o.log_skipped = false;
  const CacheBuildResult r1 = build_cache(src, (d / "one").string(), o);
  CHECK(r1.shards.size() == 3);
  CHECK(r1.written == 9);
  CHECK(r1.skipped == 1);
  o.threads = 3;
  const CacheBuildResult r3 = build_cache(src, (d / "three").string(), o);
  for (size_t s = 0; s < 3; ++s) CHECK(slurp(r1.shards[s]) == slurp(r3.shards[s]));  // byte-identical

  CacheShard first(r1.shards[0]);
  CHECK(first.size() == 4);
  CHECK(first.width() == 16);
  CHECK(first.height() == 12);
  CHECK(first.image(2) == resize_cover(sample(2).image, 16, 12));
  CHECK(first.as_tensor().shape() == Shape{4, 12, 16, 3});
  CHECK(first.as_tensor().data<uint8_t>()[0] == first.pixels(0)[0]);
  CHECK_THROWS_AS(first.record(4), ValueError);

  CacheSource cache(r1.shards);
  REQUIRE(cache.size() == 9);
  for (size_t k = 0; k < cache.size(); ++k) {
    const size_t i = cache.source_index(k);
    CHECK(i != 6);
    const Sample s = cache.get(k);
    const Sample want = sample(i);
    CHECK(s.latitude == want.latitude);
    CHECK(s.longitude == want.longitude);
    CHECK(s.scene == want.scene);
    CHECK(s.country == want.country);
    CHECK(s.image == resize_cover(want.image, 16, 12));
  }
  CHECK(cache.describe(8).find("one-00002.glc") != std::string::npos);

  LoaderOptions lo;
  lo.batch_size = 4;
  Loader loader(std::make_shared<CacheSource>(r1.shards), train_pipeline(8), lo);
  loader.begin_epoch(0);
  size_t seen = 0;
  while (auto b = loader.next()) seen += b->size();
  CHECK(seen == 9);
  fs::remove_all(d);
}

TEST_CASE("damaged cache shards are rejected with IoError") {
  const fs::path d = temp_dir();
  std::vector<Image> imgs(3, Image(4, 2));
  imgs[1].pixels[5] = 9;
  std::vector<CacheRecord> recs = {{1, 2, 0, 4, 0}, {3, 4, 1, -1, 1}, {5, 6, -1, 250, 2}};
  const std::string p = (d / "s.glc").string();
  write_cache_shard(p, 4, 2, imgs, recs);
  const std::vector<char> good = slurp(p);
  CHECK(good.size() == 64 + 3 * 32 + 3 * 4 * 2 * 3);
  {
    CacheShard s(p);
    CHECK(s.image(1) == imgs[1]);
    CHECK(s.record(2).country == 250);
    CHECK(s.record(1).country == -1);
  }

  auto bad = good;
  bad.pop_back();  // truncated by one byte
  spit(p, bad);
  CHECK(error_of(p).find("truncated or corrupt") != std::string::npos);

  bad = good;
  bad.push_back(0);  // one byte too many
  spit(p, bad);
  CHECK(error_of(p).find("implies") != std::string::npos);

  bad = good;
  bad[0] = 'X';
  spit(p, bad);
  CHECK(error_of(p).find("bad magic") != std::string::npos);

  bad = good;
  bad[8] = 2;  // version
  spit(p, bad);
  CHECK(error_of(p).find("format version 2") != std::string::npos);

  bad = good;
  bad[23] = 0x40;  // count's top byte: an absurd count must not overflow the size check
  spit(p, bad);
  CHECK(error_of(p).find("truncated or corrupt") != std::string::npos);

  bad = good;
  bad[64 + 7] = 0x7F;  // latitude of record 0 becomes huge / NaN
  spit(p, bad);
  CHECK(error_of(p).find("record 0") != std::string::npos);

  bad.assign(good.begin(), good.begin() + 10);
  spit(p, bad);
  CHECK(error_of(p).find("header") != std::string::npos);

  CHECK(error_of((d / "absent.glc").string()).find("absent.glc") != std::string::npos);
  CHECK_THROWS_AS(write_cache_shard(p, 5, 2, imgs, recs), ShapeError);
  fs::remove_all(d);
}
