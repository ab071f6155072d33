// Shards: WebDataset tar (key.json or a CSV) and ECCV 2018 MessagePack (CSV by id) read as streams;
// left-out records counted; seeded shuffling; corrupt archives as IoError naming the shard; the
// loader over shards giving the batches a manifest of the same images gives.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "geoloc/image/loader.hpp"
#include "geoloc/image/shards.hpp"
#include "image/shard_fixtures.hpp"

using namespace geoloc;
using namespace geoloc::image;
using geoloc::test::Bytes;
using geoloc::test::to_bytes;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("geoloc_shards_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Image i: a small PNG whose pixels encode i.
Bytes png(int i) {
  Image img(10, 8);
  for (size_t p = 0; p < img.pixels.size(); ++p) img.pixels[p] = static_cast<uint8_t>((i * 37 + p) & 0xFF);
  return encode_png(img);
}

std::string json(int i) {
  return "{\"latitude\": " + std::to_string(i) + ".5, \"longitude\": " + std::to_string(-i) + ", \"scene\": " +
         std::to_string(i % 3) + "}";
}

// n samples i0, i0+1, ... as key.png + key.json.
std::vector<std::pair<std::string, Bytes>> tar_members(int i0, int n) {
  std::vector<std::pair<std::string, Bytes>> m;
  for (int i = i0; i < i0 + n; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "s/%04d", i);
    m.push_back({std::string(key) + ".png", png(i)});
    m.push_back({std::string(key) + ".json", to_bytes(json(i))});
  }
  return m;
}

std::vector<std::string> names(ShardStream& s) {
  std::vector<std::string> out;
  while (auto r = s.next()) out.push_back(r->name);
  return out;
}

}  // namespace

TEST_CASE("tar shards: samples grouped by key, labels from key.json, left-out records counted") {
  const fs::path d = fresh_dir("tar");
  auto m0 = tar_members(0, 3);
  m0.push_back({"s/0100.png", png(100)});                       // no label
  m0.push_back({"s/0101.json", to_bytes(json(101))});           // no image
  m0.push_back({"s/0102.png", png(102)});
  m0.push_back({"s/0102.json", to_bytes("{\"latitude\": 1,")});  // unreadable JSON
  m0.push_back({"s/0103.seg.png", png(103)});                    // key "s/0103", extension "seg.png": not an image
  m0.push_back({"s/0104.PNG", png(104)});
  m0.push_back({"s/0104.txt", to_bytes("ignored")});
  m0.push_back({"s/0104.json", to_bytes("{\"lat\": 95, \"lon\": 0}")});  // out of range
  geoloc::test::write_bytes((d / "a.tar").string(), geoloc::test::make_tar(m0));
  geoloc::test::write_bytes((d / "b.tar").string(), geoloc::test::make_tar(tar_members(3, 2)));
  ShardSet set(expand_shard_pattern((d / "a.tar").string() + "," + (d / "b.tar").string()));
  CHECK(set.size() == 5);
  CHECK(set.without_label() == 2);
  CHECK(set.without_image() == 2);
  CHECK(set.corrupt() == 1);
  CHECK(set.labels()[4].latitude == 4.5);
  CHECK(set.labels()[4].longitude == -4);
  CHECK(set.labels()[2].scene == 2);
  auto s = set.stream(false, 0, 0);
  std::vector<ShardRecord> recs;
  while (auto r = s->next()) recs.push_back(std::move(*r));
  REQUIRE(recs.size() == 5);
  for (int i = 0; i < 5; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "%s.tar:s/%04d", i < 3 ? "a" : "b", i);
    CHECK(recs[i].name == key);
    CHECK(recs[i].bytes == png(i));
    CHECK(recs[i].latitude == i + 0.5);
  }
  fs::remove_all(d);
}

TEST_CASE("MessagePack shards joined with a CSV by id; tar shards with the CSV instead of key.json") {
  const fs::path d = fresh_dir("msgpack");
  Bytes msg;
  for (int i = 0; i < 4; ++i) {
    const Bytes r = geoloc::test::mp_record("img_" + std::to_string(i) + ".jpg", png(i));
    msg.insert(msg.end(), r.begin(), r.end());
  }
  msg.push_back(0x93);  // an array, not a map: a corrupt record, skipped
  for (int k = 0; k < 3; ++k) msg.push_back(0x01);
  geoloc::test::write_bytes((d / "x.msg").string(), msg);
  {
    std::ofstream csv(d / "coords.csv");
    csv << "IMG_ID,LAT,LON\nimg_0.jpg,10,20\nimg_1.jpg,11,21\nimg_3.jpg,13,23\ns/0001,-1,-2\n";
  }
  CHECK_THROWS_AS(ShardSet({(d / "x.msg").string()}), ValueError);  // no CSV: no coordinates at all
  ShardSet set({(d / "x.msg").string()}, (d / "coords.csv").string());
  CHECK(set.size() == 3);
  CHECK(set.without_label() == 1);
  CHECK(set.corrupt() == 1);
  auto s = set.stream(false, 0, 0);
  auto r = s->next();
  REQUIRE(r);
  CHECK(r->name == "x.msg:img_0.jpg");
  CHECK(r->bytes == png(0));
  r = s->next();
  r = s->next();
  REQUIRE(r);
  CHECK(r->latitude == 13);
  CHECK(!s->next());
  // The same CSV labels a tar shard by key; its key.json members are then ignored.
  geoloc::test::write_bytes((d / "t.tar").string(), geoloc::test::make_tar(tar_members(0, 3)));
  ShardSet tar({(d / "t.tar").string()}, (d / "coords.csv").string());
  CHECK(tar.size() == 1);
  CHECK(tar.labels()[0].latitude == -1);
  fs::remove_all(d);
}

TEST_CASE("shuffled streams: seeded, a permutation, shard order and buffer both shuffle") {
  const fs::path d = fresh_dir("shuffle");
  for (int s = 0; s < 4; ++s)
    geoloc::test::write_bytes((d / ("p-" + std::to_string(s) + ".tar")).string(),
                              geoloc::test::make_tar(tar_members(s * 10, 10)));
  const auto paths = expand_shard_pattern((d / "p-{0..3}.tar").string());
  REQUIRE(paths.size() == 4);
  CHECK(expand_shard_pattern((d / "p-*.tar").string()) == paths);
  CHECK_THROWS_AS(expand_shard_pattern((d / "p-{0..4}.tar").string()), ValueError);
  CHECK_THROWS_AS(expand_shard_pattern((d / "q-*.tar").string()), ValueError);
  ShardSet set(paths);
  const auto listed = names(*set.stream(false, 7, 16));
  REQUIRE(listed.size() == 40);
  CHECK(std::is_sorted(listed.begin(), listed.end()));
  const auto a = names(*set.stream(true, 7, 16)), b = names(*set.stream(true, 7, 16)), c = names(*set.stream(true, 8, 16));
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != listed);
  CHECK(std::set<std::string>(a.begin(), a.end()).size() == 40);
  // Without a buffer only the shard order changes: runs of 10 consecutive records.
  const auto shards_only = names(*set.stream(true, 7, 0));
  CHECK(shards_only != listed);
  for (size_t i = 0; i < 40; i += 10) CHECK(std::is_sorted(shards_only.begin() + i, shards_only.begin() + i + 10));
  fs::remove_all(d);
}

TEST_CASE("corrupt shards: IoError naming the shard, when indexing and when streaming") {
  const fs::path d = fresh_dir("corrupt");
  const Bytes tar = geoloc::test::make_tar(tar_members(0, 4));
  geoloc::test::write_bytes((d / "cut.tar").string(), Bytes(tar.begin(), tar.begin() + 1800));
  Bytes damaged = tar;
  damaged[512 * 4 + 150] ^= 0x11;  // the checksum of the third member's header
  geoloc::test::write_bytes((d / "damaged.tar").string(), damaged);
  Bytes msg = geoloc::test::mp_record("a", png(0));
  const Bytes second = geoloc::test::mp_record("b", png(1));
  msg.insert(msg.end(), second.begin(), second.begin() + 20);
  geoloc::test::write_bytes((d / "cut.msg").string(), msg);
  {
    std::ofstream csv(d / "c.csv");
    csv << "id,latitude,longitude\na,1,2\nb,3,4\n";
  }
  for (const std::string name : {"cut.tar", "damaged.tar", "cut.msg"}) {
    CAPTURE(name);
    try {
      ShardSet set({(d / name).string()}, name == "cut.msg" ? (d / "c.csv").string() : "");
      FAIL("no error");
    } catch (const IoError& e) {
      const std::string what = e.what();
      CAPTURE(what);
      CHECK(what.find(name) != std::string::npos);
      CHECK(what.find("\n") == std::string::npos);
    }
  }
  CHECK_THROWS_AS(ShardSet({(d / "missing.tar").string()}), IoError);
  CHECK_THROWS_AS(ShardSet({(d / "c.csv").string()}), ValueError);  // not a shard format
  fs::remove_all(d);
}

TEST_CASE("the loader over shards gives the batches of a source listing the same images in order") {
  const fs::path d = fresh_dir("loader");
  auto members = tar_members(0, 7);
  members.insert(members.begin() + 6, {"s/0099.png", to_bytes("not an image")});  // decodes to IoError: skipped
  members.insert(members.begin() + 7, {"s/0099.json", to_bytes("{\"latitude\": 9, \"longitude\": 9}")});
  geoloc::test::write_bytes((d / "a.tar").string(), geoloc::test::make_tar(members));
  geoloc::test::write_bytes((d / "b.tar").string(), geoloc::test::make_tar(tar_members(7, 6)));
  auto set = std::make_shared<ShardSet>(std::vector<std::string>{(d / "a.tar").string(), (d / "b.tar").string()});
  REQUIRE(set->size() == 14);
  // The same images, in the same order, as a random-access source.
  std::vector<int> ids = {0, 1, 2, 99, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  auto source = std::make_shared<CallbackSource>(ids.size(), [&](size_t i) {
    if (ids[i] == 99) throw IoError("not an image");
    const Bytes b = png(ids[i]);
    Sample s;
    s.image = decode_memory(b.data(), b.size());
    s.latitude = ids[i] + 0.5;
    s.longitude = -ids[i];
    s.scene = ids[i] % 3;
    return s;
  });
  Pipeline augment = train_pipeline(6);
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.seed = 5;
  o.log_skipped = false;
  for (int threads : {1, 3}) {
    o.threads = threads;
    Loader a(source, augment, o), b(set, augment, o);
    for (uint64_t epoch : {0, 1}) {
      a.begin_epoch(epoch);
      b.begin_epoch(epoch);
      size_t n = 0;
      while (auto x = a.next()) {
        auto y = b.next();
        REQUIRE(y);
        CHECK(x->indices == y->indices);
        CHECK(x->latitude == y->latitude);
        CHECK(x->scene == y->scene);
        REQUIRE(x->images.numel() == y->images.numel());
        CHECK(std::equal(x->images.data<float>(), x->images.data<float>() + x->images.numel(), y->images.data<float>()));
        ++n;
      }
      CHECK(!b.next());
      CHECK(n == 4);
    }
    CHECK(a.skipped() == 2);
    CHECK(b.skipped() == 2);
  }
  // Shuffled: every record once per epoch, the same batches for the same seed and any thread count.
  o.shuffle = true;
  o.shuffle_buffer = 5;
  auto epoch_of = [&](int threads) {
    o.threads = threads;
    Loader l(set, augment, o);
    l.begin_epoch(3);
    std::vector<float> all;
    std::vector<double> lat;
    while (auto x = l.next()) {
      all.insert(all.end(), x->images.data<float>(), x->images.data<float>() + x->images.numel());
      lat.insert(lat.end(), x->latitude.begin(), x->latitude.end());
    }
    return std::make_pair(all, lat);
  };
  const auto one = epoch_of(1), three = epoch_of(3);
  CHECK(one == three);
  CHECK(one.second.size() == 13);
  CHECK(!std::is_sorted(one.second.begin(), one.second.end()));
  // Sharded (data-parallel ranks): each of two loaders streams every record and decodes its half of each
  // batch; together they deliver the unsharded epoch.
  o.threads = 2;
  o.shard_count = 2;
  std::vector<float> halves;
  std::vector<double> half_lat;
  {
    o.shard_index = 0;
    Loader r0(set, augment, o);
    o.shard_index = 1;
    Loader r1(set, augment, o);
    r0.begin_epoch(3);
    r1.begin_epoch(3);
    while (true) {
      auto x = r0.next(), y = r1.next();
      if (!x && !y) break;
      for (auto* b : {&x, &y}) {
        if (!*b) continue;
        halves.insert(halves.end(), (*b)->images.data<float>(), (*b)->images.data<float>() + (*b)->images.numel());
        half_lat.insert(half_lat.end(), (*b)->latitude.begin(), (*b)->latitude.end());
      }
    }
  }
  CHECK(halves == one.first);
  CHECK(half_lat == one.second);
  fs::remove_all(d);
}

TEST_CASE("a shard that breaks while streaming stops the loader with an IoError naming it") {
  const fs::path d = fresh_dir("broken");
  const Bytes tar = geoloc::test::make_tar(tar_members(0, 8));
  const std::string path = (d / "a.tar").string();
  geoloc::test::write_bytes(path, tar);
  auto set = std::make_shared<ShardSet>(std::vector<std::string>{path});
  geoloc::test::write_bytes(path, Bytes(tar.begin(), tar.begin() + static_cast<long>(tar.size() / 2)));  // cut after indexing
  LoaderOptions o;
  o.batch_size = 2;
  o.shuffle = false;
  o.threads = 2;
  Loader l(set, train_pipeline(6), o);
  l.begin_epoch(0);
  bool failed = false;
  try {
    while (l.next()) {
    }
  } catch (const IoError& e) {
    failed = true;
    CHECK(std::string(e.what()).find("a.tar") != std::string::npos);
  }
  CHECK(failed);
  fs::remove_all(d);
}
