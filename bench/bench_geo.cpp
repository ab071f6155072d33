// Geography core throughput: adaptive partitioning, class assignment, country lookup.
#include <benchmark/benchmark.h>

#include <map>

#include "geoloc/geo/countries.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/geo/synthetic.hpp"

using namespace geoloc::geo;

namespace {

// Generated once per size: the benchmarks time the geography code, not the generator.
const std::vector<LatLng>& points(std::size_t n) {
  static std::map<std::size_t, std::vector<LatLng>> cache;
  auto it = cache.find(n);
  if (it == cache.end()) it = cache.emplace(n, synthetic_points(n, 42)).first;
  return it->second;
}

AdaptiveOptions three_partitionings() {
  AdaptiveOptions opt;
  opt.tau_min = 50;
  opt.tau_max = {5000, 2000, 1000};  // the ECCV 2018 coarse / middle / fine
  return opt;
}

void BM_AdaptivePartitions(benchmark::State& state) {
  const auto& pts = points(static_cast<std::size_t>(state.range(0)));
  std::size_t cells = 0;
  for (auto _ : state) {
    const auto parts = build_adaptive_partitions(pts, three_partitionings());
    cells = parts[0].size() + parts[1].size() + parts[2].size();
    benchmark::DoNotOptimize(cells);
  }
  state.counters["cells"] = static_cast<double>(cells);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_AdaptivePartitions)->Arg(1'000'000)->Arg(5'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AssignFinest(benchmark::State& state) {
  const auto& pts = points(1'000'000);
  const CellPartition fine = build_adaptive_partitions(pts, three_partitionings()).back();
  for (auto _ : state) benchmark::DoNotOptimize(fine.assign_all(pts));
  state.counters["classes"] = static_cast<double>(fine.size());
  state.SetItemsProcessed(state.iterations() * pts.size());
}
BENCHMARK(BM_AssignFinest)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CountryLookup(benchmark::State& state) {
  static const CountryIndex index = CountryIndex::load_default("50m");
  const auto& pts = points(200'000);
  for (auto _ : state) benchmark::DoNotOptimize(index.country_codes(pts));
  state.SetItemsProcessed(state.iterations() * pts.size());
}
BENCHMARK(BM_CountryLookup)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LoadCountries50m(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(CountryIndex::load_default("50m"));
}
BENCHMARK(BM_LoadCountries50m)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
