// Modules, optimisers, learning-rate schedules and a tiny residual network that must learn; repeated steps allocate nothing.
#include <doctest/doctest.h>

#include <cmath>

#include "geoloc/lr_schedule.hpp"
#include "geoloc/module.hpp"
#include "geoloc/optim.hpp"

using namespace geoloc;
using doctest::Approx;

namespace {
// conv-bn-relu stem, two residual blocks, global pool, linear: the shape of a ResNet, at toy size.
class TinyResNet : public nn::Module {
 public:
  explicit TinyResNet(random::Rng& rng, int64_t classes) {
    stem = register_module("stem", std::make_shared<nn::Conv2d>(3, 8, 3, 1, 1, false, rng));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(8));
    for (int b = 0; b < 2; ++b) {
      std::string p = "block" + std::to_string(b) + ".";
      c1[b] = register_module(p + "conv1", std::make_shared<nn::Conv2d>(8, 8, 3, 1, 1, false, rng));
      b1[b] = register_module(p + "bn1", std::make_shared<nn::BatchNorm2d>(8));
      c2[b] = register_module(p + "conv2", std::make_shared<nn::Conv2d>(8, 8, 3, 1, 1, false, rng));
      b2[b] = register_module(p + "bn2", std::make_shared<nn::BatchNorm2d>(8));
    }
    fc = register_module("fc", std::make_shared<nn::Linear>(8, classes, true, rng));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = ops::relu(bn->forward(stem->forward(x)));
    for (int b = 0; b < 2; ++b) {
      Tensor r = ops::relu(b1[b]->forward(c1[b]->forward(h)));
      h = ops::add_relu(b2[b]->forward(c2[b]->forward(r)), h);
    }
    return fc->forward(ops::global_avg_pool(ops::max_pool2d(h, 2, 2)));
  }
  std::shared_ptr<nn::Conv2d> stem, c1[2], c2[2];
  std::shared_ptr<nn::BatchNorm2d> bn, b1[2], b2[2];
  std::shared_ptr<nn::Linear> fc;
};

// Toy task: which quadrant of an 8x8 image is bright (4 classes), with noise.
void make_batch(random::Rng& rng, int n, Tensor& x, Tensor& y) {
  std::vector<float> px(static_cast<size_t>(n) * 8 * 8 * 3);
  std::vector<int32_t> labels(n);
  for (int i = 0; i < n; ++i) {
    int q = static_cast<int>(rng.next() % 4);
    labels[i] = q;
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c)
        for (int ch = 0; ch < 3; ++ch) {
          bool bright = (r / 4) * 2 + (c / 4) == q;
          px[((i * 8 + r) * 8 + c) * 3 + ch] = (bright ? 1.0f : 0.0f) + rng.normal(0.0f, 0.3f);
        }
  }
  x = Tensor::from_vector({n, 8, 8, 3}, px);
  y = Tensor::from_labels(labels);
}
}  // namespace

TEST_CASE("a 2-block residual network learns a toy task: loss falls 5x within 80 steps") {
  random::Rng rng(3);
  TinyResNet net(rng, 4);
  optim::Sgd opt(net.named_parameters(), {.lr = 0.05f, .momentum = 0.9f, .nesterov = true});
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 80; ++step) {
    Tensor x, y;
    make_batch(rng, 16, x, y);
    opt.zero_grad();
    Tensor loss = ops::cross_entropy(net.forward(x), y);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  INFO("first loss ", first, ", last ", last);
  CHECK(first > 1.0f);
  CHECK(last < first / 5.0f);
  // eval mode uses the running statistics and still classifies
  net.eval();
  Tensor x, y;
  make_batch(rng, 64, x, y);
  NoGradGuard ng;
  auto logits = net.forward(x).to_vector();
  auto labels = y.to_labels();
  int correct = 0;
  for (int i = 0; i < 64; ++i) {
    int best = 0;
    for (int c = 1; c < 4; ++c)
      if (logits[i * 4 + c] > logits[i * 4 + best]) best = c;
    correct += best == labels[i];
  }
  CHECK(correct >= 56);
}

TEST_CASE("after the first step, a repeated training step allocates nothing from the system") {
  random::Rng rng(5);
  TinyResNet net(rng, 4);
  optim::AdamW opt(net.named_parameters(), {.lr = 1e-3f});
  Tensor x, y;
  make_batch(rng, 8, x, y);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = ops::cross_entropy(net.forward(x), y);
    loss.backward();
    opt.step();
  };
  step();
  step();
  const auto before = cpu_allocator().stats();
  for (int i = 0; i < 3; ++i) step();
  const auto after = cpu_allocator().stats();
  CHECK(after.requests > before.requests);
  CHECK(after.system_allocs == before.system_allocs);
}

TEST_CASE("module names, state, freezing and device moves") {
  random::Rng rng(1);
  TinyResNet net(rng, 3);
  auto names = net.named_parameters();
  CHECK(names.front().first == "stem.weight");
  CHECK(net.find("block1.bn2.running_var") != nullptr);
  CHECK(net.find("block1.bn2.running_var")->shape() == Shape{8});
  CHECK(net.find("fc.bias")->shape() == Shape{3});
  CHECK(net.find("nope.weight") == nullptr);
  CHECK(net.named_buffers().size() == 10);  // 5 BN layers x (mean, var)
  net.fc->set_frozen(true);
  CHECK_FALSE(net.fc->weight.requires_grad());
  optim::Sgd opt(net.named_parameters(), {});
  CHECK(opt.state().size() == names.size() - 2 + 1);  // frozen fc skipped, + step
  // PyTorch default init bounds: |w| <= 1/sqrt(fan_in)
  for (float v : net.stem->weight.to_vector()) CHECK(std::fabs(v) <= 1.0f / std::sqrt(27.0f));
}

TEST_CASE("SGD (momentum, Nesterov, weight decay) and AdamW follow PyTorch's update rules") {
  auto run_sgd = [](optim::SgdOptions o) {
    Tensor p = Tensor::from_vector({1}, {1.0f}).set_requires_grad(true);
    Tensor b = Tensor::from_vector({1}, {1.0f}).set_requires_grad(true);
    optim::Sgd opt({{"w", Tensor::from_vector({2, 1}, {0, 0})}, {"p", p}, {"b", b}}, o);
    std::vector<float> trace;
    for (int i = 0; i < 2; ++i) {
      opt.zero_grad();
      ops::scale(p, 2.0f).backward();  // grad 2
      ops::scale(b, 2.0f).backward();
      opt.step();
      trace.push_back(p.item());
    }
    trace.push_back(b.item());
    return trace;
  };
  // plain momentum 0.9, lr 0.1: buf1 = 2 -> p = 0.8; buf2 = 0.9*2+2 = 3.8 -> p = 0.42
  auto t = run_sgd({.lr = 0.1f, .momentum = 0.9f});
  CHECK(t[0] == Approx(0.8));
  CHECK(t[1] == Approx(0.42));
  // Nesterov: d1 = 2 + 0.9*2 = 3.8 -> 0.62; buf2 = 3.8, d2 = 2 + 0.9*3.8 = 5.42 -> 0.078
  t = run_sgd({.lr = 0.1f, .momentum = 0.9f, .nesterov = true});
  CHECK(t[0] == Approx(0.62));
  CHECK(t[1] == Approx(0.078));
  // weight decay 0.5 on p (1-d) only when decay_1d: g = 2 + 0.5*1 = 2.5 -> 0.75
  t = run_sgd({.lr = 0.1f, .momentum = 0.0f, .weight_decay = 0.5f, .decay_1d = true});
  CHECK(t[0] == Approx(0.75));
  t = run_sgd({.lr = 0.1f, .momentum = 0.0f, .weight_decay = 0.5f, .decay_1d = false});
  CHECK(t[0] == Approx(0.8));

  // AdamW step 1: p *= (1 - lr*wd); update = lr * g/|g| (bias-corrected) = lr
  Tensor p = Tensor::from_vector({1}, {1.0f}).set_requires_grad(true);
  optim::AdamW adam({{"p", p}}, {.lr = 0.01f, .weight_decay = 0.1f});
  ops::scale(p, 3.0f).backward();
  adam.step();
  CHECK(p.item() == Approx(1.0 * (1 - 0.001) - 0.01).epsilon(1e-6));
  // checkpointed state restores exactly
  auto st = adam.state();
  optim::AdamW other({{"p", p}}, {.lr = 0.01f});
  other.load_state(st);
  CHECK(other.steps() == 1);
  CHECK(other.state()[0].second.item() == Approx(st[0].second.item()));
}

TEST_CASE("gradient clipping scales the global norm") {
  Tensor a = Tensor::from_vector({2}, {0, 0}).set_requires_grad(true);
  ops::scale(a, 1.0f).backward(Tensor::from_vector({2}, {3, 4}));
  CHECK(optim::clip_grad_norm({a}, 1.0f) == Approx(5.0));
  auto g = a.grad().to_vector();
  CHECK(g[0] == Approx(0.6).epsilon(1e-4));
  CHECK(g[1] == Approx(0.8).epsilon(1e-4));
}

TEST_CASE("learning-rate schedules") {
  optim::ScheduleOptions c;
  c.steps = 100;
  c.lr = 1.0f;
  c.schedule = optim::Schedule::Cosine;
  CHECK(optim::learning_rate(c, 0) == doctest::Approx(1.0));
  CHECK(optim::learning_rate(c, 50) == doctest::Approx(0.5));
  c.schedule = optim::Schedule::MultiStep;
  c.milestones = {30, 60};
  CHECK(optim::learning_rate(c, 29) == doctest::Approx(1.0));
  CHECK(optim::learning_rate(c, 30) == doctest::Approx(0.1));
  CHECK(optim::learning_rate(c, 99) == doctest::Approx(0.01));
  c.schedule = optim::Schedule::Step;
  c.step_size = 10;
  CHECK(optim::learning_rate(c, 25) == doctest::Approx(0.01));
  c.schedule = optim::Schedule::CosineRestarts;
  c.step_size = 10;
  c.restart_mult = 2;
  CHECK(optim::learning_rate(c, 10) == doctest::Approx(1.0));  // restart
  CHECK(optim::learning_rate(c, 20) == doctest::Approx(0.5));  // middle of the 20-step period
  c.warmup_steps = 10;
  c.schedule = optim::Schedule::Constant;
  CHECK(optim::learning_rate(c, 0) == doctest::Approx(0.1));
  CHECK_THROWS_AS(optim::parse_schedule("linear"), ValueError);
}
