// Earth views: imagery load time, views rendered per second (64x64), and whole-preset build time.
#include <benchmark/benchmark.h>

#include <vector>

#include "geoloc/earth/views.hpp"

using namespace geoloc;
using namespace geoloc::earth;

namespace {
const EarthImagery& imagery() {
  static const EarthImagery im = EarthImagery::load(GEOLOC_DATA_DIR "/earth");
  return im;
}
const geo::CountryIndex& countries() {
  static const geo::CountryIndex ci = geo::CountryIndex::load(GEOLOC_DATA_DIR "/natural-earth/countries-50m.geojson",
                                                              GEOLOC_DATA_DIR "/natural-earth/land-50m.geojson");
  return ci;
}

// Decoding the nine 2048x1024 JPEGs (OpenMP over files).
void BM_LoadImagery(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(EarthImagery::load(GEOLOC_DATA_DIR "/earth"));
  state.SetItemsProcessed(state.iterations() * 9);
}
BENCHMARK(BM_LoadImagery)->Unit(benchmark::kMillisecond)->UseRealTime();

// One thread rendering 64x64 views at random places: items/s = views per second per core.
void BM_RenderView64(benchmark::State& state) {
  const Raster& r = imagery().rendering(Rendering::BlueMarbleJul);
  std::vector<uint8_t> out(64 * 64 * 3);
  std::vector<float> scratch(2 * 64 * 64);
  random::StreamRng rng(1, 0, 0);
  for (auto _ : state) {
    const ViewFrame f = view_frame({{rng.uniform(-80, 80), rng.uniform(-180, 180)}, rng.uniform(0, 360), 700.0});
    render_view(r, f, 64, 64, out.data(), scratch.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64 * 64 * 3);
}
BENCHMARK(BM_RenderView64);

// The whole data set from loaded rasters: locations, labels and rendering, all threads.
void BM_BuildPreset(benchmark::State& state) {
  const EarthViewsConfig cfg = state.range(0) == 0 ? EarthViewsConfig::quick() : EarthViewsConfig::default_();
  size_t views = 0;
  for (auto _ : state) {
    const EarthViews v = build_earth_views(cfg, imagery(), countries());
    views = v.train.n() + v.test_unseen_rendering.n() + v.test_seen_rendering.n();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(views));
  state.SetLabel(state.range(0) == 0 ? "quick" : "default");
}
BENCHMARK(BM_BuildPreset)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
}  // namespace

BENCHMARK_MAIN();
