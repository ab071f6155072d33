// CPU core benchmarks: the machine's floating-point peak (one core, fused multiply-adds in registers),
// Eigen GEMM, and conv2d forward / backward at ResNet-18/50 and demo-network layer shapes, reported in
// GFLOP/s. Threads: GEOLOC_THREADS (default
// 2, the machine this was tuned on).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cstdlib>
#include <random>

#include "geoloc/backend.hpp"
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

// The arithmetic peak of one core: 24 independent chains of float32 fused multiply-adds in registers
// (enough to cover the FMA latency on every current x86 core), on the widest vectors compiled for.
// Nothing a kernel does can beat this; the convolutions' GFLOP/s are reported against it x threads.
#if defined(__AVX512F__)
using FmaVec = __m512;
inline FmaVec fma_set(float v) { return _mm512_set1_ps(v); }
inline FmaVec fma(FmaVec a, FmaVec b, FmaVec c) { return _mm512_fmadd_ps(a, b, c); }
inline float fma_first(FmaVec v) { return _mm512_cvtss_f32(v); }
#elif defined(__AVX2__) && defined(__FMA__)
using FmaVec = __m256;
inline FmaVec fma_set(float v) { return _mm256_set1_ps(v); }
inline FmaVec fma(FmaVec a, FmaVec b, FmaVec c) { return _mm256_fmadd_ps(a, b, c); }
inline float fma_first(FmaVec v) { return _mm256_cvtss_f32(v); }
#endif

void BM_fma_peak(benchmark::State& st) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  constexpr int kChains = 24, kLanes = sizeof(FmaVec) / sizeof(float);
  constexpr int64_t kIters = 1 << 20;
  FmaVec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = fma_set(0.001f * i);
  FmaVec a = fma_set(1.0000001f);
  const FmaVec b = fma_set(0.9999999f);
  for (auto _ : st) {
    for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 24
      for (int i = 0; i < kChains; ++i) acc[i] = fma(a, acc[i], b);
      __asm__ volatile("" : "+x"(a));  // keeps the loop from being folded
    }
  }
  float sink = 0;
  for (int i = 0; i < kChains; ++i) sink += fma_first(acc[i]);
  benchmark::DoNotOptimize(sink);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * kChains * kLanes * kIters, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
#else
  st.SkipWithError("no AVX2/AVX-512 FMA compiled for");
#endif
}
BENCHMARK(BM_fma_peak)->Unit(benchmark::kMillisecond)->UseRealTime();

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
