// Network throughput on the CPU (images/s). Default arguments are small enough for CI; the full-size
// cases are selected with a filter, e.g.
//   geoloc_bench_nn --benchmark_filter='BM_resnet18_inference/8/224'
//   geoloc_bench_nn --benchmark_filter='BM_resnet18_train_step/64/224'   (minutes per iteration on 2 cores)
// Arguments: batch, image size. Training steps are forward + multitask loss + backward + SGD.
//
// BM_cmp_*: the cases that bench/compare_pytorch.py runs against PyTorch, with exactly its models:
// the bare backbone (no heads) for inference, backbone + Linear(D, 1000) + cross-entropy + SGD
// (lr 0.1, momentum 0.9) for training. GFLOP/s counts the multiply-adds of the convolutions and the
// linear layer (forward 2*MACs; a training step 3x the forward), for comparison with BM_gemm.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "geoloc/backend.hpp"
#include "geoloc/thread_pool.hpp"

#include "geoloc/nn/loss.hpp"
#include "geoloc/optim.hpp"

using namespace geoloc;
using namespace geoloc::nn;

namespace {
GeoNetConfig config(const ResNetConfig& backbone) {
  GeoNetConfig c;
  c.backbone = backbone;
  c.heads = {{"cells", HeadKind::Partition, 1000}, {"scene", HeadKind::Scene, 3}};
  return c;
}

Tensor batch(int64_t n, int64_t size) {
  random::Rng rng(1);
  Tensor x = Tensor::empty({n, size, size, 3});
  normal_(x, 0.0f, 1.0f, rng);
  return x;
}

void inference(benchmark::State& st, const ResNetConfig& backbone) {
  GeoNet net(config(backbone), 0);
  net.eval();
  const Tensor x = batch(st.range(0), st.range(1));
  NoGradGuard g;
  net.forward(x);  // warm-up: the allocator caches and the im2col buffers are sized on the first pass
  for (auto _ : st) benchmark::DoNotOptimize(net.forward(x).embedding.raw());
  st.counters["images/s"] = benchmark::Counter(static_cast<double>(st.iterations() * st.range(0)),
                                               benchmark::Counter::kIsRate);
}

void train_step(benchmark::State& st, const ResNetConfig& backbone) {
  GeoNet net(config(backbone), 0);
  net.train();
  const int64_t n = st.range(0);
  const Tensor x = batch(n, st.range(1));
  MultitaskTargets tg;
  std::vector<int32_t> cells(n), scene(n);
  for (int64_t i = 0; i < n; ++i) {
    cells[i] = static_cast<int32_t>((i * 37) % 1000);
    scene[i] = static_cast<int32_t>(i % 3);
  }
  tg.labels["cells"] = Tensor::from_labels(cells);
  tg.labels["scene"] = Tensor::from_labels(scene);
  optim::Sgd opt(net.named_parameters(), {});
  multitask_loss(net, net.forward(x), tg).total.backward();  // warm-up
  for (auto _ : st) {
    opt.zero_grad();
    auto loss = multitask_loss(net, net.forward(x), tg);
    loss.total.backward();
    opt.step();
  }
  st.counters["images/s"] = benchmark::Counter(static_cast<double>(st.iterations() * n), benchmark::Counter::kIsRate);
}

// Multiply-adds of the backbone's convolutions for one image of size x size (walks the module tree).
double backbone_macs(const ResNet& net, int64_t size) {
  double macs = 0.0;
  int64_t h = size;
  auto conv = [&](const Conv2d& c, int64_t in_h) {
    const int64_t k = c.weight.dim(1), ho = conv_out_size(in_h, k, c.stride, c.pad);
    macs += static_cast<double>(ho * ho) * static_cast<double>(c.weight.numel());
    return ho;
  };
  h = conv(*net.conv1, h);
  if (net.config().stem_pool) h = conv_out_size(h, 3, 2, 1);
  for (const auto& s : net.stages)
    for (const auto& b : s->blocks) {
      const int64_t in_h = h;
      if (auto* bb = dynamic_cast<const BasicBlock*>(b.get())) {
        h = conv(*bb->conv2, conv(*bb->conv1, in_h));
        if (bb->downsample) conv(*bb->downsample->conv, in_h);
      } else if (auto* bn = dynamic_cast<const Bottleneck*>(b.get())) {
        h = conv(*bn->conv3, conv(*bn->conv2, conv(*bn->conv1, in_h)));
        if (bn->downsample) conv(*bn->downsample->conv, in_h);
      }
    }
  return macs;
}

int bench_threads() {
  const char* e = std::getenv("GEOLOC_THREADS");
  return e ? std::atoi(e) : 2;
}

void cmp_inference(benchmark::State& st, const ResNetConfig& cfg) {
  set_num_threads(bench_threads());
  ResNet net(cfg, 0);
  net.eval();
  net.set_frozen(true);  // as Locator::load: inference weights, which the CPU convolutions keep packed
  const int64_t n = st.range(0);
  const Tensor x = batch(n, st.range(1));
  NoGradGuard g;
  net.forward(x);  // warm-up
  for (auto _ : st) benchmark::DoNotOptimize(net.forward(x).raw());
  st.counters["images/s"] = benchmark::Counter(static_cast<double>(st.iterations() * n), benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * backbone_macs(net, st.range(1)) * n * 1e-9 * st.iterations(),
                                              benchmark::Counter::kIsRate);
}

void cmp_train_step(benchmark::State& st, const ResNetConfig& cfg) {
  set_num_threads(bench_threads());
  ResNet net(cfg, 0);
  random::Rng rng(2);
  Linear fc(net.embedding_dim(), 1000, true, rng);
  net.train();
  const int64_t n = st.range(0);
  const Tensor x = batch(n, st.range(1));
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 37) % 1000);
  const Tensor y = Tensor::from_labels(labels);
  NamedTensors params = net.named_parameters();
  for (auto& p : fc.named_parameters()) params.push_back(p);
  optim::Sgd opt(params, {});
  auto step = [&] {
    opt.zero_grad();
    ops::cross_entropy(fc.forward(net.forward(x)), y).backward();
    opt.step();
  };
  step();  // warm-up
  for (auto _ : st) step();
  const double macs = backbone_macs(net, st.range(1)) + static_cast<double>(fc.weight.numel());
  st.counters["images/s"] = benchmark::Counter(static_cast<double>(st.iterations() * n), benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] =
      benchmark::Counter(3.0 * 2.0 * macs * n * 1e-9 * st.iterations(), benchmark::Counter::kIsRate);
}

// One 3x3 stride-1 convolution of ResNet (pad 1, c -> c channels, hw x hw, batch n) as inference runs it:
// frozen weights, no gradient. GFLOP/s counts the direct multiply-adds (2 n hw^2 9 c^2), also for
// Winograd (GEOLOC_CPU_WINOGRAD=0 for the direct kernels): it is the rate a direct convolution would need.
void BM_conv3x3_inference(benchmark::State& st) {
  set_num_threads(bench_threads());
  const int64_t n = st.range(0), hw = st.range(1), c = st.range(2);
  random::Rng rng(3);
  Tensor x = Tensor::empty({n, hw, hw, c}), w = Tensor::empty({c, 3, 3, c});
  normal_(x, 0.0f, 1.0f, rng);
  normal_(w, 0.0f, 0.05f, rng);
  NoGradGuard g;
  benchmark::DoNotOptimize(ops::conv2d(x, w, Tensor(), 1, 1).raw());  // warm-up: packs / transforms w
  for (auto _ : st) benchmark::DoNotOptimize(ops::conv2d(x, w, Tensor(), 1, 1).raw());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n * hw * hw * 9 * c * c) * 1e-9 *
                                                  static_cast<double>(st.iterations()),
                                              benchmark::Counter::kIsRate);
}

// One 1x1 convolution of ResNet-50's bottlenecks (hw x hw, ci -> co, batch n) as inference runs it.
void BM_conv1x1_inference(benchmark::State& st) {
  set_num_threads(bench_threads());
  const int64_t n = st.range(0), hw = st.range(1), ci = st.range(2), co = st.range(3);
  random::Rng rng(4);
  Tensor x = Tensor::empty({n, hw, hw, ci}), w = Tensor::empty({co, 1, 1, ci});
  normal_(x, 0.0f, 1.0f, rng);
  normal_(w, 0.0f, 0.05f, rng);
  NoGradGuard g;
  benchmark::DoNotOptimize(ops::conv2d(x, w).raw());  // warm-up: packs w
  for (auto _ : st) benchmark::DoNotOptimize(ops::conv2d(x, w).raw());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n * hw * hw * ci * co) * 1e-9 *
                                                  static_cast<double>(st.iterations()),
                                              benchmark::Counter::kIsRate);
}

void BM_cmp_resnet18_inference(benchmark::State& st) { cmp_inference(st, ResNetConfig::resnet18()); }
void BM_cmp_resnet50_inference(benchmark::State& st) { cmp_inference(st, ResNetConfig::resnet50()); }
void BM_cmp_resnet18_train_step(benchmark::State& st) { cmp_train_step(st, ResNetConfig::resnet18()); }
void BM_cmp_small_train_step(benchmark::State& st) { cmp_train_step(st, ResNetConfig::small()); }

void BM_resnet18_inference(benchmark::State& st) { inference(st, ResNetConfig::resnet18()); }
void BM_resnet50_inference(benchmark::State& st) { inference(st, ResNetConfig::resnet50()); }
void BM_resnet18_train_step(benchmark::State& st) { train_step(st, ResNetConfig::resnet18()); }
void BM_small_train_step(benchmark::State& st) { train_step(st, ResNetConfig::small()); }
}  // namespace

BENCHMARK(BM_resnet18_inference)->Args({1, 64})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_resnet50_inference)->Args({1, 64})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_resnet18_train_step)->Args({2, 64})->Args({64, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_small_train_step)->Args({32, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
// ResNet's 3x3 stride-1 layers: 56x56x64, 28x28x128, 14x14x256, 7x7x512, at batch 1 and 8
BENCHMARK(BM_conv3x3_inference)
    ->ArgsProduct({{1, 8}, {56}, {64}})
    ->ArgsProduct({{1, 8}, {28}, {128}})
    ->ArgsProduct({{1, 8}, {14}, {256}})
    ->ArgsProduct({{1, 8}, {7}, {512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// ResNet-50's 1x1 layers: reducing and expanding at each stage
BENCHMARK(BM_conv1x1_inference)
    ->ArgsProduct({{1, 8}, {56}, {64}, {256}})
    ->ArgsProduct({{1, 8}, {56}, {256}, {64}})
    ->ArgsProduct({{1, 8}, {28}, {128}, {512}})
    ->ArgsProduct({{1, 8}, {28}, {512}, {128}})
    ->ArgsProduct({{1, 8}, {14}, {256}, {1024}})
    ->ArgsProduct({{1, 8}, {14}, {1024}, {256}})
    ->ArgsProduct({{1, 8}, {7}, {512}, {2048}})
    ->ArgsProduct({{1, 8}, {7}, {2048}, {512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The PyTorch comparison cases (bench/compare_pytorch.sh); ~1 s each with the default minimum time.
BENCHMARK(BM_cmp_resnet18_inference)->Args({1, 224})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_cmp_resnet50_inference)->Args({1, 224})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_cmp_resnet18_train_step)->Args({64, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_cmp_small_train_step)->Args({64, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
