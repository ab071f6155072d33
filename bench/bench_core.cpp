// CPU core benchmarks: the machine's floating-point peak (one core, fused multiply-adds in registers),
// Eigen GEMM, and conv2d forward / backward at ResNet-18/50 and demo-network layer shapes, reported in
// GFLOP/s. Threads: GEOLOC_THREADS (default
// 2, the machine this was tuned on).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <algorithm>
#include <cstdlib>
#include <random>

#include "geoloc/backend.hpp"
#include "geoloc/build_info.hpp"
#include "geoloc/thread_pool.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;

namespace {
Tensor random(const Shape& s, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = u(g);
  return Tensor::from_vector(s, v);
}

// The arithmetic peak of one core, per instruction set: independent chains of float32 fused
// multiply-adds in registers, enough to cover the FMA latency times the FMA pipes on every current x86
// core, and few enough to stay in registers: 12 ymm chains for AVX2 (of 16 registers; 24 would spill and
// under-report the AVX2 ceiling), 24 zmm chains for AVX-512 (of 32). Each is compiled for its own
// instruction set (function target attributes; this program is built for the x86-64-v3 baseline like
// the library) and runs only where cpuid has it. BM_fma_peak is the ceiling of the CPU path in use
// (geoloc::cpu_path(): the one the convolution kernels run on); the convolutions' GFLOP/s are reported
// against it x threads.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEOLOC_BENCH_FMA 1
// The same loop body for both; FLOPs of one call: 2 x chains x lanes x iters.
#define GEOLOC_FMA_CHAINS(V, kChains, set, fma, first)                      \
  V acc[kChains];                                                          \
  for (int i = 0; i < kChains; ++i) acc[i] = set(0.001f * i);              \
  V a = set(1.0000001f);                                                   \
  const V b = set(0.9999999f);                                             \
  for (int64_t it = 0; it < iters; ++it) {                                 \
    _Pragma("GCC unroll 24") for (int i = 0; i < kChains; ++i) acc[i] = fma(a, acc[i], b); \
    __asm__ volatile("" : "+x"(a)); /* keeps the loop from being folded */ \
  }                                                                        \
  float sink = 0;                                                          \
  for (int i = 0; i < kChains; ++i) sink += first(acc[i]);                 \
  *flops = 2.0 * kChains * (sizeof(V) / sizeof(float)) * double(iters);    \
  return sink;
__attribute__((target("avx2,fma"), noinline)) float fma_avx2(int64_t iters, double* flops) {
  GEOLOC_FMA_CHAINS(__m256, 12, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32)
}
__attribute__((target("avx512f"), noinline)) float fma_avx512(int64_t iters, double* flops) {
  GEOLOC_FMA_CHAINS(__m512, 24, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_cvtss_f32)
}
#undef GEOLOC_FMA_CHAINS
#endif

void fma_peak(benchmark::State& st, CpuPath path) {
#if defined(GEOLOC_BENCH_FMA)
  if (path == CpuPath::generic) path = CpuPath::avx2;  // Eigen's GEMM on the x86-64-v3 baseline: AVX2
  const auto avail = available_cpu_paths();
  if (std::find(avail.begin(), avail.end(), path) == avail.end()) {
    st.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  constexpr int64_t kIters = 1 << 20;
  double flops = 0;
  float sink = 0;
  for (auto _ : st) sink += path == CpuPath::avx512 ? fma_avx512(kIters, &flops) : fma_avx2(kIters, &flops);
  benchmark::DoNotOptimize(sink);
  st.SetLabel(to_string(path));
  st.counters["GFLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
#else
  st.SkipWithError("no x86 FMA benchmark for this CPU");
#endif
}
void BM_fma_peak(benchmark::State& st) { fma_peak(st, cpu_path()); }
BENCHMARK(BM_fma_peak)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(fma_peak, avx2, CpuPath::avx2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(fma_peak, avx512, CpuPath::avx512)->Unit(benchmark::kMillisecond)->UseRealTime();

// Square GEMM: the machine's practical ceiling for the convolutions. BM_gemm: Eigen's own OpenMP
// threading over all threads; BM_gemm_1t: one thread, the way each of geoloc's pool threads runs its
// GEMM tiles (the CPU backend keeps Eigen single-threaded), so 2 cores' ceiling is about 2x this.
void gemm(benchmark::State& st, int eigen_threads) {
  const int64_t n = st.range(0);
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  M a = M::Random(n, n), b = M::Random(n, n), c(n, n);
  const int saved = Eigen::nbThreads();
  Eigen::setNbThreads(eigen_threads);
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  Eigen::setNbThreads(saved);  // the CPU backend needs Eigen single-threaded inside its tasks
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
void BM_gemm(benchmark::State& st) { gemm(st, num_threads()); }
void BM_gemm_1t(benchmark::State& st) { gemm(st, 1); }
BENCHMARK(BM_gemm)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_1t)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: batch, H (=W), Cin, Cout, kernel, stride, pass (0 forward, 1 backward-data, 2 backward-filter)
void BM_conv2d(benchmark::State& st) {
  const int64_t n = st.range(0), h = st.range(1), ci = st.range(2), co = st.range(3);
  const int k = static_cast<int>(st.range(4)), stride = static_cast<int>(st.range(5)), pass = static_cast<int>(st.range(6));
  const int pad = k / 2;
  Tensor x = random({n, h, h, ci}, 1), w = random({co, k, k, ci}, 2);
  const int64_t ho = conv_out_size(h, k, stride, pad);
  Tensor y = Tensor::empty({n, ho, ho, co}), dy = random({n, ho, ho, co}, 3);
  Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty(w.shape());
  const Conv2dArgs a{stride, pad};
  for (auto _ : st) {
    if (pass == 0) cpu::conv2d_forward(x, w, {}, y, a);
    if (pass == 1) cpu::conv2d_backward_data(dy, w, dx, a);
    if (pass == 2) cpu::conv2d_backward_filter(x, dy, dw, {}, a);
  }
  const double flops = 2.0 * n * ho * ho * co * ci * k * k;
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  st.SetLabel(pass == 0 ? "forward" : pass == 1 ? "backward-data" : "backward-filter");
}
// ResNet-18 at batch 8, 224x224: stem, one 3x3 conv of each stage, and a 1x1 stride-2 downsample
BENCHMARK(BM_conv2d)
    ->ArgNames({"n", "hw", "ci", "co", "k", "s", "pass"})
    ->ArgsProduct({{8}, {224}, {3}, {64}, {7}, {2}, {0, 1, 2}})
    ->ArgsProduct({{8}, {56}, {64}, {64}, {3}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {28}, {128}, {128}, {3}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {14}, {256}, {256}, {3}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {7}, {512}, {512}, {3}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {56}, {64}, {128}, {1}, {2}, {0, 1, 2}})
    // ResNet-50's 1x1 convolutions (bottleneck reduce / expand) at 224
    ->ArgsProduct({{8}, {56}, {256}, {64}, {1}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {56}, {64}, {256}, {1}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {14}, {1024}, {256}, {1}, {1}, {0, 1, 2}})
    ->ArgsProduct({{8}, {7}, {512}, {2048}, {1}, {1}, {0, 1, 2}})
    // batch 1 (inference latency), forward only: the same layers, and ResNet-50's widest 3x3 and 1x1
    ->ArgsProduct({{1}, {224}, {3}, {64}, {7}, {2}, {0}})
    ->ArgsProduct({{1}, {56}, {64}, {64}, {3}, {1}, {0}})
    ->ArgsProduct({{1}, {28}, {128}, {128}, {3}, {1}, {0}})
    ->ArgsProduct({{1}, {14}, {256}, {256}, {3}, {1}, {0}})
    ->ArgsProduct({{1}, {7}, {512}, {512}, {3}, {1}, {0}})
    ->ArgsProduct({{1}, {56}, {256}, {64}, {1}, {1}, {0}})
    ->ArgsProduct({{1}, {14}, {1024}, {256}, {1}, {1}, {0}})
    ->ArgsProduct({{1}, {7}, {512}, {2048}, {1}, {1}, {0}})
    ->ArgsProduct({{1}, {7}, {2048}, {512}, {1}, {1}, {0}})
    // the small demo network's layers (64x64 input, batch 64)
    ->ArgsProduct({{64}, {32}, {16}, {16}, {3}, {1}, {0, 1, 2}})
    ->ArgsProduct({{64}, {8}, {64}, {64}, {3}, {1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
}  // namespace

int main(int argc, char** argv) {
  const char* t = std::getenv("GEOLOC_THREADS");
  set_num_threads(t ? std::atoi(t) : 2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
