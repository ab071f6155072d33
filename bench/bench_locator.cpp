// End-to-end latency of the public API on one photo (issue #15, "inference for products"):
// geoloc::read_image (JPEG decode) + Locator::predict (resize to 256, centre crop 224, normalisation, the
// network, the heads and the prediction strategy), as a product calls them. Also each part alone: the decode,
// and predict on an image already decoded.
//
// The model: a ResNet-18 or ResNet-50 backbone with random weights (the weights do not change the time) and
// two S2 cell heads built from 20,000 random training coordinates (tau_max 400 and 100: a few hundred and a
// few thousand cells), saved to a temporary file and loaded with Locator::load, as a product loads a model.
// The photos: JPEGs (quality 90) of the Blue Marble view in data/, 640x480 (a small photo) and 2048x1024.
//   geoloc_bench_locator --benchmark_filter=BM_locator            (GEOLOC_THREADS, default 2, sets the pool)
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "geoloc/geoloc.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/pipeline/model.hpp"
#include "geoloc/thread_pool.hpp"

using namespace geoloc;
namespace fs = std::filesystem;

namespace {

int bench_threads() {
  const char* e = std::getenv("GEOLOC_THREADS");
  return e ? std::atoi(e) : 2;
}

// A folder for the model files and photos, removed at exit.
const fs::path& work_dir() {
  static const struct Dir {
    fs::path path = fs::temp_directory_path() / ("geoloc_bench_locator_" + std::to_string(::getpid()));
    Dir() { fs::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } dir;
  return dir.path;
}

// The model file of a backbone ("resnet18" / "resnet50"), made once per process.
std::string model_file(const std::string& arch) {
  static std::map<std::string, std::string> made;
  if (auto it = made.find(arch); it != made.end()) return it->second;
  pipeline::ModelSpec spec;
  spec.backbone = arch == "resnet50" ? nn::ResNetConfig::resnet50() : nn::ResNetConfig::resnet18();
  spec.cells.tau_max = {400, 100};
  spec.cells.tau_min = 10;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0), lng(-180.0, 180.0);
  std::vector<geo::LatLng> coords(20000);
  for (geo::LatLng& c : coords) c = geo::LatLng{std::asin(u(rng)) * 180.0 / 3.14159265358979, lng(rng)};
  const pipeline::GeoModel model = pipeline::build_model(spec, coords);
  const std::string path = (work_dir() / (arch + ".safetensors")).string();
  model.save(path);
  return made[arch] = path;
}

// A JPEG of the Blue Marble view at width x height, written once.
std::string photo_file(int width, int height) {
  const std::string path = (work_dir() / ("photo_" + std::to_string(width) + "x" + std::to_string(height) + ".jpg")).string();
  if (fs::exists(path)) return path;
  const image::Image src = image::decode_file(std::string(GEOLOC_DATA_DIR) + "/earth/nasa-bmng-07_2048.jpg");
  const std::vector<uint8_t> jpg = image::encode_jpeg(image::resize_cover(src, width, height), 90);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(jpg.data()),
                                              static_cast<std::streamsize>(jpg.size()));
  return path;
}

// range(0): 0 = ResNet-18, 1 = ResNet-50; range(1) x range(2): the photo.
std::string arch_of(const benchmark::State& st) { return st.range(0) == 1 ? "resnet50" : "resnet18"; }

void BM_locator_read_and_predict(benchmark::State& st) {
  set_num_threads(bench_threads());
  const Locator loc = Locator::load(model_file(arch_of(st)));
  const std::string photo = photo_file(static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
  benchmark::DoNotOptimize(loc.predict(read_image(photo)));  // warm-up (packs the weights once)
  for (auto _ : st) benchmark::DoNotOptimize(loc.predict(read_image(photo)).latitude);
  st.SetLabel(arch_of(st) + ", JPEG " + std::to_string(st.range(1)) + "x" + std::to_string(st.range(2)));
}

void BM_locator_predict_decoded(benchmark::State& st) {
  set_num_threads(bench_threads());
  const Locator loc = Locator::load(model_file(arch_of(st)));
  const RgbImage img = read_image(photo_file(static_cast<int>(st.range(1)), static_cast<int>(st.range(2))));
  benchmark::DoNotOptimize(loc.predict(img));
  for (auto _ : st) benchmark::DoNotOptimize(loc.predict(img).latitude);
  st.SetLabel(arch_of(st) + ", decoded " + std::to_string(st.range(1)) + "x" + std::to_string(st.range(2)));
}

void BM_locator_read_image(benchmark::State& st) {
  const std::string photo = photo_file(static_cast<int>(st.range(1)), static_cast<int>(st.range(2)));
  for (auto _ : st) benchmark::DoNotOptimize(read_image(photo).pixels.data());
  st.SetLabel("JPEG " + std::to_string(st.range(1)) + "x" + std::to_string(st.range(2)));
}

}  // namespace

BENCHMARK(BM_locator_read_and_predict)
    ->Args({0, 640, 480})->Args({0, 2048, 1024})->Args({1, 640, 480})->Args({1, 2048, 1024})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_locator_predict_decoded)
    ->Args({0, 640, 480})->Args({0, 2048, 1024})->Args({1, 640, 480})->Args({1, 2048, 1024})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_locator_read_image)->Args({0, 640, 480})->Args({0, 2048, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
