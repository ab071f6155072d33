// The op table's rows (tests/ops/op_table.hpp) as benchmarks, one per row and backend present:
// "ops/<function> [case]/<device>", with counters FLOP/s and bytes/s (the row's FLOP and byte estimates per
// call, as rates) next to the time. The rows labelled "(bench)" are the larger shapes; the small ones show
// launch and dispatch overheads. GPU calls are followed by a synchronize, so each iteration is a whole call.
// Threads: GEOLOC_THREADS (default 2, as bench_core). Example (Google Benchmark 1.7 flags):
//   build/bin/geoloc_bench_ops --benchmark_filter='bench' --benchmark_min_time=0.05
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <optional>

#include "geoloc/backend.hpp"
#include "geoloc/thread_pool.hpp"
#include "op_table.hpp"

using namespace geoloc;
using namespace geoloc::optest;

namespace {
void register_rows() {
  for (const Device d : backends()) {
    for (const OpRow& row : op_table()) {
      // inputs and junk-filled outputs made once, on first use (Google Benchmark calls the function again
      // for each iteration count it tries)
      auto launch = std::make_shared<std::optional<Launch>>();
      const OpRow* r = &row;
      benchmark::RegisterBenchmark(("ops/" + row.name() + "/" + d.str()).c_str(),
                                   [r, d, launch](benchmark::State& st) {
                                     if (!*launch) *launch = r->prepare(r->inputs(), d, 0);
                                     const Launch& l = **launch;
                                     for (auto _ : st) {
                                       l.call();
                                       if (d.is_cuda()) cuda::synchronize();
                                     }
                                     if (r->flops > 0)
                                       st.counters["FLOP/s"] = benchmark::Counter(
                                           r->flops, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
                                     st.counters["bytes/s"] = benchmark::Counter(
                                         r->bytes, benchmark::Counter::kIsIterationInvariantRate,
                                         benchmark::Counter::kIs1000);
                                   })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  const char* t = std::getenv("GEOLOC_THREADS");
  set_num_threads(t ? std::atoi(t) : 2);
  register_rows();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
