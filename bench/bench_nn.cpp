// Network throughput on the CPU (images/s). Default arguments are small enough for CI; the full-size
// cases are selected with a filter, e.g.
//   geoloc_bench_nn --benchmark_filter='BM_resnet18_inference/8/224'
//   geoloc_bench_nn --benchmark_filter='BM_resnet18_train_step/64/224'   (minutes per iteration on 2 cores)
// Arguments: batch, image size. Training steps are forward + multitask loss + backward + SGD.
#include <benchmark/benchmark.h>

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
  Rng rng(1);
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

void BM_resnet18_inference(benchmark::State& st) { inference(st, ResNetConfig::resnet18()); }
void BM_resnet50_inference(benchmark::State& st) { inference(st, ResNetConfig::resnet50()); }
void BM_resnet18_train_step(benchmark::State& st) { train_step(st, ResNetConfig::resnet18()); }
void BM_small_train_step(benchmark::State& st) { train_step(st, ResNetConfig::small()); }
}  // namespace

BENCHMARK(BM_resnet18_inference)->Args({1, 64})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_resnet50_inference)->Args({1, 64})->Args({8, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_resnet18_train_step)->Args({2, 64})->Args({64, 224})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_small_train_step)->Args({32, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
