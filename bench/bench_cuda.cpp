// CUDA kernel benchmarks (Google Benchmark, manual timing with CUDA events on the context stream).
// Each custom kernel reports its achieved bandwidth (bytes it must move / time) or FLOP rate next to the
// ceilings measured in the same run: a device-to-device copy (GB/s) and a large fp32 cuBLASLt GEMM
// (TFLOP/s), as counters `GB/s`, `frac_of_copy` and `TFLOP/s`, `frac_of_gemm`.
// Goals (docs/cuda.md): multi-head loss and haversine >= 0.8 of copy bandwidth; k-NN top-k faster than
// one full GEMM followed by a separate top-k pass.
// Without a CUDA device it says so and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "geoloc/autograd.hpp"
#include "geoloc/backend.hpp"
#include "geoloc/cuda/context.hpp"
#include "geoloc/ops.hpp"
#include "geoloc/tensor.hpp"

using namespace geoloc;

#if defined(GEOLOC_HAS_CUDA) && GEOLOC_HAS_CUDA

namespace {
double g_copy_gbs = 0;     // measured device-to-device copy bandwidth (read + write bytes / s / 1e9)
double g_gemm_tflops = 0;  // measured fp32 GEMM rate

Device gpu() { return Device::cuda(0); }

Tensor rand_gpu(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Tensor h = Tensor::empty(s);
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = d(rng);
  return h.to(gpu());
}

// Times `fn` with CUDA events; one benchmark iteration = one call.
template <class F>
void run_timed(benchmark::State& state, F fn, double bytes, double flops) {
  cuda::EventTimer timer(0);
  fn();  // warm-up (algorithm selection, allocator)
  cuda::synchronize();
  for (auto _ : state) {
    timer.start();
    fn();
    state.SetIterationTime(timer.stop_ms() / 1e3);
  }
  if (bytes > 0) {
    state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["bytes"] = bytes;
  }
  if (flops > 0)
    state.counters["TFLOP/s"] =
        benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------- ceilings
float time_ms(int reps, const std::function<void()>& fn) {
  cuda::EventTimer t(0);
  fn();
  cuda::synchronize();
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    t.start();
    fn();
    ms.push_back(t.stop_ms());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void measure_ceilings() {
  const size_t bytes = size_t(512) << 20;
  Tensor a = Tensor::empty({int64_t(bytes / 4)}, DType::F32, gpu()),
         b = Tensor::empty({int64_t(bytes / 4)}, DType::F32, gpu());
  cuda::fill(a, 1.0f);
  const float copy_ms = time_ms(20, [&] { cuda::copy_bytes(b.raw(), gpu(), a.raw(), gpu(), bytes); });
  g_copy_gbs = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;
  const int64_t n = 8192;
  Tensor x = rand_gpu({n, n}, 1), w = rand_gpu({n, n}, 2), y = Tensor::empty({n, n}, DType::F32, gpu());
  const float gemm_ms = time_ms(5, [&] { cuda::linear_forward(x, w, Tensor(), y); });
  g_gemm_tflops = 2.0 * n * n * n / (gemm_ms * 1e-3) / 1e12;
}

void add_frac(benchmark::State& state, double bytes, double flops) {
  // recomputed from the counters' own timing by Google Benchmark: here we state the ceilings
  state.counters["copy_ceiling_GB/s"] = g_copy_gbs;
  if (flops > 0) state.counters["gemm_ceiling_TFLOP/s"] = g_gemm_tflops;
  (void)bytes;
}

// ---------------------------------------------------------------- benchmarks
void BM_copy_d2d(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0)) << 20;
  Tensor a = Tensor::empty({int64_t(bytes / 4)}, DType::F32, gpu()),
         b = Tensor::empty({int64_t(bytes / 4)}, DType::F32, gpu());
  cuda::fill(a, 1.0f);
  run_timed(
      state, [&] { cuda::copy_bytes(b.raw(), gpu(), a.raw(), gpu(), bytes); }, 2.0 * bytes, 0);
  add_frac(state, 2.0 * bytes, 0);
}

void BM_gemm_fp32(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor x = rand_gpu({n, n}, 1), w = rand_gpu({n, n}, 2), y = Tensor::empty({n, n}, DType::F32, gpu());
  run_timed(
      state, [&] { cuda::linear_forward(x, w, Tensor(), y); }, 0, 2.0 * n * n * n);
  add_frac(state, 0, 2.0 * n * n * n);
}

// Geo-cell heads of three partitionings + a scene head, batch 256, hard labels. Bytes: logits read
// once + gradient written once (the minimum any implementation must move) + labels + loss.
void BM_multihead_xent(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<int64_t> classes = {4096, 16384, 65536, 365};
  std::vector<CrossEntropyHead> heads;
  double bytes = 0;
  for (size_t i = 0; i < classes.size(); ++i) {
    CrossEntropyHead h;
    h.logits = rand_gpu({n, classes[i]}, 10 + i, -4.0f, 4.0f);
    std::vector<int32_t> lab(n);
    for (int64_t j = 0; j < n; ++j) lab[j] = static_cast<int32_t>((j * 7919) % classes[i]);
    h.labels = Tensor::from_labels(lab, gpu());
    h.loss = Tensor::empty({n}, DType::F32, gpu());
    h.dlogits = Tensor::empty({n, classes[i]}, DType::F32, gpu());
    h.grad_scale = 1.0f / n;
    heads.push_back(h);
    bytes += 8.0 * n * classes[i] + 8.0 * n;
  }
  run_timed(
      state, [&] { cuda::cross_entropy_multihead(heads); }, bytes, 0);
  add_frac(state, bytes, 0);
}

void BM_haversine(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool unit = state.range(1) != 0;
  Tensor pred = unit ? rand_gpu({n, 3}, 3) : rand_gpu({n, 2}, 3, -1.4f, 1.4f);
  Tensor tgt = rand_gpu({n, 2}, 4, -1.4f, 1.4f), loss = Tensor::empty({n}, DType::F32, gpu());
  Tensor grad = Tensor::empty(pred.shape(), DType::F32, gpu());
  const double bytes = double(n) * (pred.dim(1) * 4 * 2 + 8 + 4);
  run_timed(
      state, [&] { cuda::haversine_loss(pred, tgt, loss, grad, 1.0f); }, bytes, 0);
  add_frac(state, bytes, 0);
}

// ResNet-50's 161 parameter tensors (25.6 M floats): one fused launch vs one launch per tensor.
std::vector<int64_t> resnet50_param_sizes() {
  std::vector<int64_t> s = {64 * 7 * 7 * 3, 64, 64};
  const int blocks[4] = {3, 4, 6, 3}, width[4] = {64, 128, 256, 512};
  int64_t in = 64;
  for (int st = 0; st < 4; ++st)
    for (int b = 0; b < blocks[st]; ++b) {
      const int64_t w = width[st], out = 4 * w;
      for (int64_t v : {in * w, w, w, 9 * w * w, w, w, w * out, out, out}) s.push_back(v);
      if (b == 0)
        for (int64_t v : {in * out, out, out}) s.push_back(v);
      in = out;
    }
  s.push_back(2048 * 1000);
  s.push_back(1000);
  return s;
}

void BM_sgd(benchmark::State& state) {
  const bool fused = state.range(0) != 0;
  std::vector<OptimSlot> slots;
  double elems = 0;
  uint32_t seed = 20;
  for (int64_t n : resnet50_param_sizes()) {
    slots.push_back({rand_gpu({n}, seed++), rand_gpu({n}, seed++), rand_gpu({n}, seed++), Tensor(), 1e-4f});
    elems += n;
  }
  const double bytes = elems * 4 * 5;  // p r/w, g r, momentum r/w
  run_timed(
      state,
      [&] {
        if (fused) {
          cuda::sgd_step(slots, 0.1f, 0.9f, 0.0f, false, false);
        } else {
          for (const auto& s : slots) cuda::sgd_step({s}, 0.1f, 0.9f, 0.0f, false, false);
        }
      },
      bytes, 0);
  state.counters["tensors"] = static_cast<double>(slots.size());
  add_frac(state, bytes, 0);
}

// Training BN + residual + ReLU on a ResNet stage-1 activation [N,56,56,64]: the fused backend op
// (statistics pass, then one apply pass writing y) vs batch_norm_forward_train followed by add_relu_forward.
void BM_bn_add_relu(benchmark::State& state) {
  const bool fused = state.range(0) != 0;
  const int64_t n = 64;
  Tensor x = rand_gpu({n, 56, 56, 64}, 5), r = rand_gpu({n, 56, 56, 64}, 6),
         y = Tensor::empty(x.shape(), DType::F32, gpu());
  Tensor t = Tensor::empty(x.shape(), DType::F32, gpu());
  Tensor g = rand_gpu({64}, 7), b = rand_gpu({64}, 8), rm = Tensor::zeros({64}, DType::F32, gpu());
  Tensor rv = Tensor::full({64}, 1.0f, gpu()), mean = Tensor::empty({64}, DType::F32, gpu());
  Tensor invstd = Tensor::empty({64}, DType::F32, gpu());
  const double bytes = 4.0 * 4 * x.numel();  // fused: x read twice, residual read, y written
  run_timed(
      state,
      [&] {
        if (fused) {
          cuda::batch_norm_act_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, r, true, y, mean, invstd);
        } else {
          cuda::batch_norm_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, t, mean, invstd);
          cuda::add_relu_forward(t, r, y);
        }
      },
      bytes, 0);
  add_frac(state, bytes, 0);
}

// k-NN: 1024 queries against 500k references of dimension 256, k = 10. ref_chunk = 0 is the tiled
// GEMM + merge; ref_chunk = R is one full [M,R] GEMM followed by one top-k pass over it.
void BM_knn(benchmark::State& state) {
  const bool full = state.range(0) != 0;
  const int64_t m = 1024, r = 500000, d = 256;
  const int k = 10;
  Tensor q = rand_gpu({m, d}, 30), refs = rand_gpu({r, d}, 31);
  Tensor sc = Tensor::empty({m, k}, DType::F32, gpu()), ix = Tensor::empty({m, k}, DType::I32, gpu());
  const double flops = 2.0 * m * r * d;
  run_timed(
      state, [&] { cuda::knn_topk(q, refs, k, KnnMetric::InnerProduct, sc, ix, full ? r : 0); }, 0,
      flops);
  add_frac(state, 0, flops);
}
// ---------------------------------------------------------------- ResNet-50 (fp32)
// torchvision's ResNet-50 v1.5 (stride in the 3x3 convolution) built directly from geoloc::ops, NHWC,
// 224x224, 1000 classes; the training step is forward + cross-entropy + backward + one fused SGD step.
// Compare with tools/resnet50_pytorch_compare.py (variant fp32, TF32 off) run in the same call.
struct ResNet50 {
  struct Bn {
    Tensor g, b, rm, rv;
  };
  std::vector<Tensor> params, momentum;
  std::vector<Tensor> convs;
  std::vector<Bn> bns;
  size_t ci = 0, bi = 0;  // cursors while running forward

  Tensor conv_w(int64_t co, int64_t k, int64_t cin, uint32_t seed) {
    const float s = std::sqrt(2.0f / static_cast<float>(k * k * cin));
    Tensor w = rand_gpu({co, k, k, cin}, seed, -s, s);
    w.set_requires_grad(true);
    params.push_back(w);
    convs.push_back(w);
    return w;
  }
  void bn(int64_t c) {
    Bn b{Tensor::full({c}, 1.0f, gpu()), Tensor::zeros({c}, DType::F32, gpu()),
         Tensor::zeros({c}, DType::F32, gpu()), Tensor::full({c}, 1.0f, gpu())};
    b.g.set_requires_grad(true);
    b.b.set_requires_grad(true);
    params.push_back(b.g);
    params.push_back(b.b);
    bns.push_back(b);
  }
  Tensor fc_w, fc_b;

  ResNet50() {
    uint32_t seed = 100;
    conv_w(64, 7, 3, seed++);
    bn(64);
    const int blocks[4] = {3, 4, 6, 3}, width[4] = {64, 128, 256, 512};
    int64_t in = 64;
    for (int st = 0; st < 4; ++st)
      for (int b = 0; b < blocks[st]; ++b) {
        const int64_t w = width[st];
        conv_w(w, 1, in, seed++), bn(w);
        conv_w(w, 3, w, seed++), bn(w);
        conv_w(4 * w, 1, w, seed++), bn(4 * w);
        if (b == 0) conv_w(4 * w, 1, in, seed++), bn(4 * w);
        in = 4 * w;
      }
    fc_w = rand_gpu({1000, 2048}, seed++, -0.02f, 0.02f);
    fc_b = Tensor::zeros({1000}, DType::F32, gpu());
    fc_w.set_requires_grad(true);
    fc_b.set_requires_grad(true);
    params.push_back(fc_w);
    params.push_back(fc_b);
    for (const Tensor& p : params) momentum.push_back(Tensor::zeros(p.shape(), DType::F32, gpu()));
  }
  Tensor cbn(const Tensor& x, int stride, int pad, bool train) {
    const Tensor& w = convs[ci++];
    const Bn& b = bns[bi++];
    return ops::batch_norm(ops::conv2d(x, w, Tensor(), stride, pad), b.g, b.b, b.rm, b.rv, train);
  }
  Tensor forward(const Tensor& x, bool train) {
    ci = bi = 0;
    Tensor h = ops::max_pool2d(ops::relu(cbn(x, 2, 3, train)), 3, 2, 1);
    const int blocks[4] = {3, 4, 6, 3};
    for (int st = 0; st < 4; ++st)
      for (int b = 0; b < blocks[st]; ++b) {
        const int s = (st > 0 && b == 0) ? 2 : 1;
        Tensor y = ops::relu(cbn(h, 1, 0, train));
        y = ops::relu(cbn(y, s, 1, train));
        y = cbn(y, 1, 0, train);
        Tensor id = b == 0 ? cbn(h, s, 0, train) : h;
        h = ops::add_relu(y, id);
      }
    return ops::linear(ops::global_avg_pool(h), fc_w, fc_b);
  }
  void sgd_step() {
    std::vector<OptimSlot> slots;
    for (size_t i = 0; i < params.size(); ++i)
      slots.push_back({params[i], params[i].grad(), momentum[i], Tensor(), 1e-4f});
    cuda::sgd_step(slots, 0.01f, 0.9f, 0.0f, false, false);
    for (Tensor& p : params) p.zero_grad();
  }
};

void BM_resnet50(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const bool train = state.range(1) != 0;
  ResNet50 net;
  Tensor x = rand_gpu({batch, 224, 224, 3}, 7);
  std::vector<int32_t> lab(batch);
  for (int64_t i = 0; i < batch; ++i) lab[i] = static_cast<int32_t>((i * 37) % 1000);
  const Tensor labels = Tensor::from_labels(lab, gpu());
  auto step = [&] {
    if (train) {
      Tensor loss = ops::cross_entropy(net.forward(x, true), labels);
      loss.backward();
      net.sgd_step();
    } else {
      NoGradGuard ng;
      benchmark::DoNotOptimize(net.forward(x, false));
    }
  };
  step();  // the first step selects algorithms and fills the allocator's cache
  run_timed(state, step, 0, 0);
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["cudaMalloc_total"] = static_cast<double>(cuda::allocator(0).stats().system_allocs);
}
}  // namespace

BENCHMARK(BM_copy_d2d)->Arg(256)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gemm_fp32)->Arg(4096)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_multihead_xent)->Arg(256)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_haversine)
    ->Args({1 << 24, 0})
    ->Args({1 << 24, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sgd)->Arg(1)->Arg(0)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_bn_add_relu)->Arg(1)->Arg(0)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_knn)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_resnet50)
    ->Args({64, 1})
    ->Args({64, 0})
    ->Args({128, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(10);

#endif  // GEOLOC_HAS_CUDA

int main(int argc, char** argv) {
#if defined(GEOLOC_HAS_CUDA) && GEOLOC_HAS_CUDA
  if (!cuda::available()) {
    std::printf(
        "bench_cuda: no CUDA device available (geoloc::cuda::available() is false); nothing to measure.\n");
    return 0;
  }
  try {
    std::printf("device: %s\n", cuda::Context::get(0).description().c_str());
    measure_ceilings();
    std::printf("ceilings: device-to-device copy %.1f GB/s (read+write), fp32 GEMM %.2f TFLOP/s\n",
                g_copy_gbs, g_gemm_tflops);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
  benchmark::AddCustomContext("copy_ceiling_GB/s", std::to_string(g_copy_gbs));
  benchmark::AddCustomContext("gemm_ceiling_TFLOP/s", std::to_string(g_gemm_tflops));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
#else
  (void)argc;
  (void)argv;
  std::printf(
      "bench_cuda: geoloc was built without CUDA (GEOLOC_CUDA=OFF or no toolkit); nothing to measure.\n");
  return 0;
#endif
}
