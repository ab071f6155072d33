// RowSource over shards (pipeline::ShardRows): the rows of Dataset::from_shards, a batch at a time.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "geoloc/image/image.hpp"
#include "geoloc/pipeline/row_source.hpp"
#include "image/shard_fixtures.hpp"

using namespace geoloc;
namespace fs = std::filesystem;
using geoloc::test::Bytes;
using geoloc::test::to_bytes;

namespace {

// n records i0, i0+1, ...: a 12x9 PNG whose pixels encode i, and its labels as key.json.
std::vector<std::pair<std::string, Bytes>> members(int i0, int n) {
  std::vector<std::pair<std::string, Bytes>> m;
  for (int i = i0; i < i0 + n; ++i) {
    image::Image img(12, 9);
    for (size_t p = 0; p < img.pixels.size(); ++p) img.pixels[p] = static_cast<uint8_t>((i * 29 + p * 7) & 0xFF);
    const std::string key = "r/" + std::to_string(1000 + i);
    m.push_back({key + ".png", image::encode_png(img)});
    m.push_back({key + ".json", to_bytes("{\"latitude\": " + std::to_string(i) + ".25, \"longitude\": " +
                                          std::to_string(-2 * i) + ", \"scene\": " + std::to_string(i % 4) + "}")});
  }
  return m;
}

}  // namespace

TEST_CASE("ShardRows streams the rows of Dataset::from_shards, batch by batch, undecodable records left out") {
  const fs::path d = fs::temp_directory_path() / ("geoloc_shardrows_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  auto a = members(0, 5);
  a.insert(a.begin() + 4, {"r/0999.png", to_bytes("not an image")});
  a.insert(a.begin() + 5, {"r/0999.json", to_bytes("{\"latitude\": 1, \"longitude\": 2}")});
  geoloc::test::write_bytes((d / "a.tar").string(), geoloc::test::make_tar(a));
  geoloc::test::write_bytes((d / "b.tar").string(), geoloc::test::make_tar(members(5, 6)));
  auto set = std::make_shared<image::ShardSet>(std::vector<std::string>{(d / "a.tar").string(), (d / "b.tar").string()});
  REQUIRE(set->size() == 12);  // the bad record is indexed (its labels are fine); it fails when decoded
  const pipeline::Dataset whole = pipeline::Dataset::from_shards(*set, 8, nullptr, false);
  REQUIRE(whole.size() == 11);

  pipeline::ShardRows rows(set, 8);
  CHECK(rows.size() == 12);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reopens the stream
    size_t got = 0;
    for (size_t start = 0; start < rows.size(); start += 5) {
      const pipeline::Dataset b = rows.rows(start, std::min<size_t>(5, rows.size() - start));
      for (size_t i = 0; i < b.size(); ++i, ++got) {
        REQUIRE(got < whole.size());
        CHECK(b.images[i].pixels == whole.images[got].pixels);
        CHECK(b.coords[i].lat == whole.coords[got].lat);
        CHECK(b.coords[i].lng == whole.coords[got].lng);
        CHECK(b.scene[i] == whole.scene[got]);
      }
    }
    CHECK(got == whole.size());
  }
  CHECK(rows.skipped() == 2);  // once per pass
  CHECK(rows.first_skip().find("0999") != std::string::npos);
  // Out of order: a later start skips ahead, an earlier one starts a new pass.
  const pipeline::Dataset late = rows.rows(10, 2);
  REQUIRE(late.size() == 2);
  CHECK(late.images[1].pixels == whole.images[10].pixels);
  const pipeline::Dataset early = rows.rows(1, 1);
  REQUIRE(early.size() == 1);
  CHECK(early.images[0].pixels == whole.images[1].pixels);
  CHECK_THROWS_AS(rows.rows(11, 2), ValueError);
  fs::remove_all(d);
}
