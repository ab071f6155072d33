// The loader: every sample once per epoch, the same batches with 1 or 3 threads, skipping of
// unreadable files, and exceptions reaching the consumer.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "geoloc/image/loader.hpp"
#include "geoloc/log.hpp"

using namespace geoloc;
using namespace geoloc::image;
namespace fs = std::filesystem;

namespace {

// Sample i: a 12x10 image whose pixels encode i, latitude i / 10, scene i % 5.
Sample make_sample(size_t i) {
  Sample s;
  s.image = Image(12, 10);
  for (size_t p = 0; p < s.image.pixels.size(); ++p) s.image.pixels[p] = static_cast<uint8_t>((i * 31 + p) & 0xFF);
  s.latitude = i / 10.0;
  s.longitude = -static_cast<double>(i);
  s.scene = static_cast<int32_t>(i % 5);
  s.country = static_cast<int32_t>(i + 1);
  return s;
}

std::shared_ptr<SampleSource> memory_source(size_t n) { return std::make_shared<CallbackSource>(n, make_sample); }

struct EpochResult {
  std::vector<size_t> order;
  std::vector<std::vector<float>> images;
  std::vector<size_t> sizes;
};

EpochResult run_epoch(Loader& loader, uint64_t epoch) {
  EpochResult r;
  loader.begin_epoch(epoch);
  while (auto b = loader.next()) {
    CHECK(b->images.dim(0) == static_cast<int64_t>(b->size()));
    CHECK(b->latitude.size() == b->size());
    CHECK(b->scene.size() == b->size());
    CHECK(b->epoch == epoch);
    for (size_t k = 0; k < b->size(); ++k) {
      const size_t i = b->indices[k];
      CHECK(b->latitude[k] == doctest::Approx(i / 10.0));
      CHECK(b->scene[k] == static_cast<int32_t>(i % 5));
      CHECK(b->country[k] == static_cast<int32_t>(i + 1));
    }
    r.order.insert(r.order.end(), b->indices.begin(), b->indices.end());
    r.images.push_back(b->images.to_vector());
    r.sizes.push_back(b->size());
  }
  return r;
}

}  // namespace

TEST_CASE("every sample is seen exactly once per epoch, in batches of the requested size") {
  LoaderOptions o;
  o.batch_size = 8;
  o.threads = 2;
  o.seed = 11;
  Loader loader(memory_source(30), train_pipeline(8), o);
  CHECK(loader.batches_per_epoch() == 4);
  const EpochResult e0 = run_epoch(loader, 0);
  std::vector<size_t> sorted = e0.order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<size_t> all(30);
  std::iota(all.begin(), all.end(), size_t{0});
  CHECK(sorted == all);
  CHECK(e0.sizes == std::vector<size_t>{8, 8, 8, 6});
  CHECK(e0.order == loader.epoch_order(0));
  CHECK(e0.order != all);  // shuffled
  const EpochResult e1 = run_epoch(loader, 1);
  CHECK(e1.order != e0.order);  // a new permutation each epoch
  // Re-running epoch 0 gives it back exactly, augmentation included.
  const EpochResult again = run_epoch(loader, 0);
  CHECK(again.order == e0.order);
  CHECK(again.images == e0.images);
}

TEST_CASE("batches are identical with 1 and 3 worker threads") {
  auto run = [](int threads, size_t prefetch) {
    LoaderOptions o;
    o.batch_size = 5;
    o.threads = threads;
    o.prefetch = prefetch;
    o.seed = 123;
    Loader loader(memory_source(23), train_pipeline(8, {0.4f, 0.4f, 0.4f, 0.05f}), o);
    EpochResult r = run_epoch(loader, 3);
    EpochResult r2 = run_epoch(loader, 4);
    r.order.insert(r.order.end(), r2.order.begin(), r2.order.end());
    r.images.insert(r.images.end(), r2.images.begin(), r2.images.end());
    return r;
  };
  const EpochResult one = run(1, 1), three = run(3, 6);
  CHECK(one.order == three.order);
  CHECK(one.images == three.images);  // bit-identical floats
}

TEST_CASE("no shuffling and drop_last") {
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.drop_last = true;
  Loader loader(memory_source(10), eval_pipeline(10, 8), o);
  CHECK(loader.batches_per_epoch() == 2);
  const EpochResult r = run_epoch(loader, 0);
  CHECK(r.order == std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("unreadable images are skipped and counted, never fatal") {
  const fs::path d = fs::temp_directory_path() / ("geoloc_loader_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  std::ofstream csv(d / "manifest.csv");
  csv << "image,latitude,longitude,scene\n";
  for (int i = 0; i < 7; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    const auto png = encode_png(make_sample(i).image);
    std::ofstream f(d / name, std::ios::binary);
    // Image 4 is cut in half: the loader must report it and carry on.
    f.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(i == 4 ? png.size() / 2 : png.size()));
    csv << name << "," << i << ",0," << i << "\n";
  }
  csv << "missing.png,0,0,0\n";  // index 7 does not exist at all
  csv.close();
  auto src = std::make_shared<ManifestSource>(read_manifest((d / "manifest.csv").string()));
  LoaderOptions o;
  o.batch_size = 3;
  o.threads = 2;
  o.seed = 5;
  Loader loader(src, eval_pipeline(10, 8), o);
  loader.begin_epoch(0);
  std::vector<size_t> seen;
  while (auto b = loader.next()) {
    seen.insert(seen.end(), b->indices.begin(), b->indices.end());
    for (size_t k = 0; k < b->size(); ++k) CHECK(b->scene[k] == static_cast<int32_t>(b->indices[k]));
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<size_t>{0, 1, 2, 3, 5, 6});
  CHECK(loader.skipped() == 2);
  fs::remove_all(d);
}

TEST_CASE("unreadable samples: the first in full, then one line per epoch, not one per sample") {
  auto src = std::make_shared<CallbackSource>(12, [](size_t i) -> Sample {
    if (i % 4 == 1) throw IoError("cannot read sample " + std::to_string(i));  // 1, 5, 9
    return make_sample(i);
  });
  std::vector<std::string> lines;
  const LogHandler previous = set_log_handler([&](LogLevel, const std::string& m) { lines.push_back(m); });
  {
    LoaderOptions o;
    o.batch_size = 4;
    o.threads = 1;  // sample 1 fails first
    o.shuffle = false;
    Loader loader(src, eval_pipeline(10, 8), o);
    run_epoch(loader, 0);
    run_epoch(loader, 1);
    CHECK(loader.skipped() == 6);
  }  // the last epoch's line comes when the loader ends
  set_log_handler(previous);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].find("skipping ") == 0);
  CHECK(lines[0].find("cannot read sample 1") != std::string::npos);
  CHECK(lines[1] == "3 unreadable samples were left out in epoch 0");
  CHECK(lines[2] == "3 unreadable samples were left out in epoch 1");
}

TEST_CASE("a batch whose samples all fail is not delivered") {
  auto src = std::make_shared<CallbackSource>(6, [](size_t i) -> Sample {
    if (i < 3) throw IoError("cannot read sample " + std::to_string(i));
    return make_sample(i);
  });
  LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  o.log_skipped = false;
  Loader loader(src, eval_pipeline(10, 8), o);
  const EpochResult r = run_epoch(loader, 0);
  CHECK(r.order == std::vector<size_t>{3, 4, 5});
  CHECK(loader.skipped() == 3);
}

TEST_CASE("exceptions in workers reach the consumer as geoloc::Error") {
  auto src = std::make_shared<CallbackSource>(20, [](size_t i) -> Sample {
    if (i == 13) throw std::runtime_error("renderer exploded");
    return make_sample(i);
  });
  LoaderOptions o;
  o.batch_size = 4;
  o.threads = 3;
  o.shuffle = false;
  Loader loader(src, eval_pipeline(10, 8), o);
  loader.begin_epoch(0);
  for (int k = 0; k < 3; ++k) CHECK(loader.next().has_value());  // samples 0..11 are fine
  try {
    loader.next();
    FAIL("expected an exception");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("renderer exploded") != std::string::npos);
    CHECK(msg.find("sample 13") != std::string::npos);
  }
  CHECK_THROWS_AS(loader.next(), Error);  // stays failed until the next epoch
  // A new epoch starts cleanly (and fails again at the same place).
  loader.begin_epoch(1);
  CHECK(loader.next().has_value());

  // A transform producing mixed sizes is a ShapeError, type kept.
  auto mixed = std::make_shared<CallbackSource>(4, [](size_t i) {
    Sample s = make_sample(i);
    s.image = Image(4 + static_cast<int>(i), 4);
    return s;
  });
  Loader bad(mixed, Pipeline{}, o);
  bad.begin_epoch(0);
  CHECK_THROWS_AS(bad.next(), ShapeError);
  LoaderOptions zero;
  zero.batch_size = 0;
  CHECK_THROWS_AS(Loader(memory_source(3), Pipeline{}, zero), ValueError);
  Loader fresh(memory_source(3), Pipeline{}, o);
  CHECK_THROWS_AS(fresh.next(), Error);  // begin_epoch() not called
}

TEST_CASE("destroying a loader mid-epoch joins its workers") {
  for (int rep = 0; rep < 5; ++rep) {
    LoaderOptions o;
    o.batch_size = 2;
    o.threads = 3;
    o.prefetch = 2;
    Loader loader(memory_source(40), train_pipeline(8), o);
    loader.begin_epoch(0);
    CHECK(loader.next().has_value());
  }  // destructor with batches in flight and workers blocked on the window
  Loader idle(memory_source(4), Pipeline{}, LoaderOptions{});  // never started
}

TEST_CASE("sharded loaders (data-parallel ranks) split every batch of the unsharded loader between them") {
  LoaderOptions o;
  o.batch_size = 6;
  o.threads = 2;
  o.seed = 9;
  o.drop_last = true;
  const Pipeline augment = train_pipeline(8, {0.4f, 0.4f, 0.4f, 0.05f});
  Loader whole(memory_source(27), augment, o);
  o.shard_count = 3;
  std::vector<std::unique_ptr<Loader>> parts;
  for (size_t r = 0; r < 3; ++r) {
    o.shard_index = r;
    parts.push_back(std::make_unique<Loader>(memory_source(27), augment, o));
    CHECK(parts.back()->batches_per_epoch() == whole.batches_per_epoch());  // the same steps per epoch
  }
  for (uint64_t epoch : {0, 1}) {
    whole.begin_epoch(epoch);
    for (auto& p : parts) p->begin_epoch(epoch);
    std::vector<size_t> seen;
    while (auto w = whole.next()) {
      std::vector<size_t> indices;
      std::vector<float> pixels;
      for (auto& p : parts) {
        auto b = p->next();
        REQUIRE(b);
        CHECK(b->size() == 2);
        CHECK(b->batch_index == w->batch_index);
        indices.insert(indices.end(), b->indices.begin(), b->indices.end());
        const auto v = b->images.to_vector();
        pixels.insert(pixels.end(), v.begin(), v.end());
      }
      CHECK(indices == w->indices);            // disjoint parts, in the unsharded order
      CHECK(pixels == w->images.to_vector());  // with the same augmentation, bit for bit
      seen.insert(seen.end(), indices.begin(), indices.end());
    }
    for (auto& p : parts) CHECK(!p->next());
    std::sort(seen.begin(), seen.end());
    CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
    CHECK(seen.size() == 24);  // 4 whole batches of 6 (drop_last)
  }
  o.shard_count = 4;  // 6 is not divisible by 4
  o.shard_index = 0;
  CHECK_THROWS_AS(Loader(memory_source(27), augment, o), ValueError);
  o.shard_count = 3;
  o.shard_index = 3;
  CHECK_THROWS_AS(Loader(memory_source(27), augment, o), ValueError);
}
