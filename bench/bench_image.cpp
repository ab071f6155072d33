// Input-pipeline throughput: how many images per second the CPU side can prepare for training.
//   BM_decode_resize_crop_normalize: one 640x480 JPEG (generated and encoded in memory) decoded,
//     shorter side resized to 256, centre-cropped to 224, normalised into a float buffer.
//   BM_decode_only / BM_resize_only / BM_train_augment: the parts, to see where time goes.
//   BM_loader/threads: the Loader turning the same JPEG into batches of 32 (random-resized crop,
//     flip, colour jitter, normalisation) with 1 and 2 worker threads.
//   BM_jpeg_to_256/decoder/width/threads: decode + shorter side to 256 of a 640x480 or 1600x1200 JPEG,
//     decoder 0 = stb_image, 1 = libjpeg-turbo at full size, 2 = libjpeg-turbo with DCT scaling
//     (min_size 256); threads decoding independent copies at once (items/s summed over threads).
#include <benchmark/benchmark.h>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <random>

#include "geoloc/image/image.hpp"
#include "geoloc/image/loader.hpp"
#include "geoloc/image/transforms.hpp"

using namespace geoloc;
using namespace geoloc::image;

namespace {

// A photo-like test card: smooth gradients plus mild noise, so the JPEG has realistic entropy.
const std::vector<uint8_t>& test_jpeg() {
  static const std::vector<uint8_t> jpg = [] {
    Image img(640, 480);
    std::mt19937 g(1);
    for (int y = 0; y < 480; ++y)
      for (int x = 0; x < 640; ++x) {
        uint8_t* p = img.at(x, y);
        const int n = static_cast<int>(g() % 24) - 12;
        p[0] = static_cast<uint8_t>(std::clamp(int(128 + 90 * std::sin(x * 0.02) + n), 0, 255));
        p[1] = static_cast<uint8_t>(std::clamp(int(128 + 90 * std::cos(y * 0.03 + x * 0.01) + n), 0, 255));
        p[2] = static_cast<uint8_t>(std::clamp(int((x + 2 * y) / 8 + n), 0, 255));
      }
    return encode_jpeg(img, 90);
  }();
  return jpg;
}

void BM_decode_resize_crop_normalize(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  std::vector<float> out(224 * 224 * 3);
  for (auto _ : state) {
    const Image img = decode_memory(jpg.data(), jpg.size());
    const Image c = center_crop(resize_shorter(img, 256), 224, 224);
    normalize_into(c, Normalization{}, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["jpeg_bytes"] = static_cast<double>(jpg.size());
}
BENCHMARK(BM_decode_resize_crop_normalize)->Unit(benchmark::kMillisecond);

void BM_decode_only(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  for (auto _ : state) benchmark::DoNotOptimize(decode_memory(jpg.data(), jpg.size()).pixels.data());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 640 * 480 * 3);  // decoded bytes
}
BENCHMARK(BM_decode_only)->Unit(benchmark::kMillisecond);

void BM_resize_only(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  const Image img = decode_memory(jpg.data(), jpg.size());
  for (auto _ : state) benchmark::DoNotOptimize(resize_shorter(img, 256).pixels.data());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 640 * 480 * 3);  // input bytes
}
BENCHMARK(BM_resize_only)->Unit(benchmark::kMillisecond);

void BM_crop_normalize(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  const Image img = resize_shorter(decode_memory(jpg.data(), jpg.size()), 256);
  std::vector<float> out(224 * 224 * 3);
  for (auto _ : state) {
    normalize_into(center_crop(img, 224, 224), Normalization{}, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_crop_normalize)->Unit(benchmark::kMillisecond);

void BM_train_augment(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  const Image img = decode_memory(jpg.data(), jpg.size());
  const Pipeline p = train_pipeline(224);
  random::Rng rng(0);
  for (auto _ : state) benchmark::DoNotOptimize(p(img, rng).pixels.data());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_train_augment)->Unit(benchmark::kMillisecond);

void BM_loader(benchmark::State& state) {
  const auto& jpg = test_jpeg();
  constexpr size_t kImages = 128;
  auto src = std::make_shared<CallbackSource>(kImages, [&jpg](size_t i) {
    Sample s;
    s.image = decode_memory(jpg.data(), jpg.size());
    s.latitude = 0;
    s.longitude = 0;
    return s;
  });
  LoaderOptions o;
  o.batch_size = 32;
  o.threads = static_cast<int>(state.range(0));
  o.prefetch = 4;
  Loader loader(src, train_pipeline(224), o);
  uint64_t epoch = 0;
  size_t images = 0;
  for (auto _ : state) {
    loader.begin_epoch(epoch++);
    while (auto b = loader.next()) {
      images += b->size();
      benchmark::DoNotOptimize(b->images.raw());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(images));
}
BENCHMARK(BM_loader)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

const std::vector<uint8_t>& photo_jpeg(int w, int h) {
  static std::map<int, std::vector<uint8_t>> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lk(mu);
  auto& jpg = cache[w];
  if (jpg.empty()) {
    Image img(w, h);
    std::mt19937 g(2);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t* p = img.at(x, y);
        const int n = static_cast<int>(g() % 24) - 12;
        p[0] = static_cast<uint8_t>(std::clamp(int(128 + 90 * std::sin(x * 0.008) + n), 0, 255));
        p[1] = static_cast<uint8_t>(std::clamp(int(128 + 90 * std::cos(y * 0.012 + x * 0.004) + n), 0, 255));
        p[2] = static_cast<uint8_t>(std::clamp(int((x + 2 * y) / 20 + n), 0, 255));
      }
    jpg = encode_jpeg(img, 90);
  }
  return jpg;
}

void BM_jpeg_to_256(benchmark::State& state) {
  const int w = static_cast<int>(state.range(1)), h = w * 3 / 4;
  const auto& jpg = photo_jpeg(w, h);
  DecodeOptions o;
  o.jpeg = state.range(0) == 0 ? DecodeOptions::Jpeg::Stb : DecodeOptions::Jpeg::Turbo;
  o.min_size = state.range(0) == 2 ? 256 : 0;
  for (auto _ : state) benchmark::DoNotOptimize(resize_shorter(decode_memory(jpg.data(), jpg.size(), "b.jpg", o), 256).pixels.data());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(state.range(0) == 0 ? "stb" : state.range(0) == 1 ? "turbo" : "turbo+dct") + " " +
                 std::to_string(w) + "x" + std::to_string(h));
}
BENCHMARK(BM_jpeg_to_256)
    ->ArgsProduct({{0, 1, 2}, {640, 1600}})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
