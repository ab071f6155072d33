// The table of op cases: every differentiable op's backward against central finite differences, on
// random shapes including odd sizes, stride 2 and padding.
#include <doctest/doctest.h>

#include "gradcheck.hpp"

using namespace geoloc;
using test::gradcheck;

namespace {
struct OpCase {
  std::string name;
  std::function<std::vector<Tensor>(std::mt19937&)> make;  // inputs; those to check require grad
  std::function<Tensor(const std::vector<Tensor>&)> f;
  test::GradcheckOptions opt{};
};

Tensor rg(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

std::vector<OpCase> op_cases() {
  using V = std::vector<Tensor>;
  auto R = [](const Shape& s) { return [s](std::mt19937& g) { return rg(test::random_tensor(s, g)); }; };
  std::vector<OpCase> c;
  auto conv = [&](std::string name, Shape xs, Shape ws, bool bias, int stride, int pad) {
    c.push_back({name,
                 [=](std::mt19937& g) {
                   V v{rg(test::random_tensor(xs, g)), rg(test::random_tensor(ws, g))};
                   v.push_back(bias ? rg(test::random_tensor({ws[0]}, g)) : Tensor());
                   return v;
                 },
                 [=](const V& v) { return ops::conv2d(v[0], v[1], v[2], stride, pad); }});
  };
  conv("conv2d 3x3 s1 p1 +bias", {2, 5, 6, 3}, {4, 3, 3, 3}, true, 1, 1);
  conv("conv2d 3x3 s2 p1 odd", {1, 7, 5, 2}, {3, 3, 3, 2}, false, 2, 1);
  conv("conv2d 1x1 s1 (direct GEMM)", {2, 4, 3, 5}, {6, 1, 1, 5}, true, 1, 0);
  conv("conv2d 1x1 s2 (downsample)", {2, 5, 5, 3}, {4, 1, 1, 3}, false, 2, 0);
  conv("conv2d 7x7 s2 p3 (stem)", {1, 9, 9, 3}, {2, 7, 7, 3}, false, 2, 3);
  conv("conv2d 2x3 kernel via 3x3 s1 p0", {1, 4, 6, 2}, {2, 3, 3, 2}, true, 1, 0);
  // channels in multiples of 16: the AVX-512 kernels (forward, backward-data, backward-filter)
  conv("conv2d 3x3 s1 p1 16->16 (AVX-512 kernels)", {1, 4, 5, 16}, {16, 3, 3, 16}, true, 1, 1);
  conv("conv2d 3x3 s2 p1 16->32 (AVX-512 kernels)", {1, 5, 4, 16}, {32, 3, 3, 16}, false, 2, 1);

  auto bn = [&](std::string name, Shape xs, bool training) {
    const int64_t ch = xs[xs.ndim() - 1];
    c.push_back({name,
                 [=](std::mt19937& g) {
                   return V{rg(test::random_tensor(xs, g)), rg(test::random_tensor({ch}, g, 0.5f, 1.5f)),
                            rg(test::random_tensor({ch}, g)), test::random_tensor({ch}, g, -0.2f, 0.2f),
                            test::random_tensor({ch}, g, 0.5f, 2.0f)};
                 },
                 [=](const V& v) { return ops::batch_norm(v[0], v[1], v[2], v[3], v[4], training); },
                 {1e-2f, 3e-2, 3e-3, 48}});
  };
  bn("batch_norm train NHWC", {3, 4, 5, 6}, true);
  bn("batch_norm train [N,C]", {7, 5}, true);
  bn("batch_norm eval NHWC", {2, 3, 3, 4}, false);

  // the fused training path of ResNet blocks: relu?(bn(x) + residual?)
  auto bn_act = [&](std::string name, bool residual, bool relu) {
    c.push_back({name,
                 [=](std::mt19937& g) {
                   const Shape xs{2, 3, 3, 4};
                   return V{rg(test::random_tensor(xs, g)), rg(test::random_tensor({4}, g, 0.5f, 1.5f)),
                            rg(test::random_tensor({4}, g)), test::random_tensor({4}, g, -0.2f, 0.2f),
                            test::random_tensor({4}, g, 0.5f, 2.0f),
                            residual ? rg(test::random_tensor(xs, g)) : Tensor()};
                 },
                 [=](const V& v) { return ops::batch_norm_act(v[0], v[1], v[2], v[3], v[4], 0.1f, 1e-5f, v[5], relu); },
                 {1e-3f, 3e-2, 3e-3, 48}});
  };
  bn_act("batch_norm_act + residual + relu", true, true);
  bn_act("batch_norm_act + relu", false, true);
  bn_act("batch_norm_act + residual", true, false);

  c.push_back({"relu", [](std::mt19937& g) { return V{rg(test::spread_tensor({2, 3, 4, 5}, g))}; },
               [](const V& v) { return ops::relu(v[0]); }, {1e-3f, 1e-2, 1e-3, 48}});
  c.push_back({"add", [&](std::mt19937& g) { return V{R({2, 3, 4})(g), R({2, 3, 4})(g)}; },
               [](const V& v) { return ops::add(v[0], v[1]); }});
  c.push_back({"add_relu",
               [](std::mt19937& g) { return V{rg(test::spread_tensor({2, 3, 5}, g)), rg(test::spread_tensor({2, 3, 5}, g, 0.0f))}; },
               [](const V& v) { return ops::add_relu(v[0], ops::scale(v[1], 0.37f)); }, {1e-3f, 1e-2, 1e-3, 48}});
  c.push_back({"scale", [&](std::mt19937& g) { return V{R({3, 7})(g)}; },
               [](const V& v) { return ops::scale(v[0], -1.7f); }});
  c.push_back({"max_pool2d 3x3 s2 p1", [](std::mt19937& g) { return V{rg(test::spread_tensor({2, 7, 7, 3}, g))}; },
               [](const V& v) { return ops::max_pool2d(v[0], 3, 2, 1); }, {1e-4f, 1e-2, 1e-3, 64}});
  c.push_back({"max_pool2d 2x2 s2 odd", [](std::mt19937& g) { return V{rg(test::spread_tensor({1, 5, 4, 2}, g))}; },
               [](const V& v) { return ops::max_pool2d(v[0], 2, 2, 0); }, {1e-4f, 1e-2, 1e-3, 64}});
  c.push_back({"global_avg_pool", [&](std::mt19937& g) { return V{R({2, 3, 5, 4})(g)}; },
               [](const V& v) { return ops::global_avg_pool(v[0]); }});
  c.push_back({"linear +bias", [&](std::mt19937& g) { return V{R({5, 7})(g), R({3, 7})(g), R({3})(g)}; },
               [](const V& v) { return ops::linear(v[0], v[1], v[2]); }});
  c.push_back({"linear no bias", [&](std::mt19937& g) { return V{R({1, 4})(g), R({6, 4})(g)}; },
               [](const V& v) { return ops::linear(v[0], v[1]); }});
  c.push_back({"reshape + flatten", [&](std::mt19937& g) { return V{R({2, 2, 3, 2})(g), R({5, 12})(g)}; },
               [](const V& v) { return ops::linear(ops::flatten(ops::reshape(v[0], {2, 6, 2})), v[1]); }});
  c.push_back({"dropout p=0.3", [&](std::mt19937& g) { return V{R({4, 9})(g)}; },
               [](const V& v) { return ops::dropout(v[0], 0.3f, true, 42); }});
  c.push_back({"cross_entropy (one ignored label)", [&](std::mt19937& g) { return V{R({4, 5})(g)}; },
               [](const V& v) { return ops::cross_entropy(ops::scale(v[0], 2.0f), Tensor::from_labels({3, -1, 0, 4})); }});
  c.push_back({"cross_entropy_soft",
               [&](std::mt19937& g) {
                 return V{R({3, 4})(g), Tensor::from_vector({3, 4}, {0.1f, 0.2f, 0.3f, 0.4f, 0, 0, 0, 0, 1, 0, 0, 0})};
               },
               [](const V& v) { return ops::cross_entropy_soft(v[0], v[1]); }});
  c.push_back({"mse_loss", [&](std::mt19937& g) { return V{R({3, 3})(g), R({3, 3})(g)}; },
               [](const V& v) { return ops::mse_loss(v[0], v[1]); }});
  c.push_back({"weighted_sum of losses",
               [&](std::mt19937& g) { return V{R({3, 4})(g), R({3, 2})(g)}; },
               [](const V& v) {
                 return ops::weighted_sum({ops::cross_entropy(v[0], Tensor::from_labels({0, 1, 3})),
                                           ops::cross_entropy(v[1], Tensor::from_labels({1, -1, 0}))},
                                          {1.0f, 0.5f});
               }});
  c.push_back({"residual block (tensor used twice)",
               [](std::mt19937& g) {
                 return V{rg(test::random_tensor({2, 4, 4, 3}, g)), rg(test::random_tensor({3, 3, 3, 3}, g, -0.3f, 0.3f))};
               },
               [](const V& v) { return ops::add(ops::conv2d(v[0], v[1], {}, 1, 1), v[0]); }});
  return c;
}
}  // namespace

TEST_CASE("every op's backward matches central finite differences") {
  for (auto& oc : op_cases()) {
    SUBCASE(oc.name.c_str()) {
      std::mt19937 g(7);
      gradcheck(oc.name, oc.make(g), oc.f, oc.opt);
    }
  }
}

TEST_CASE("batch_norm_act gives the values of batch_norm -> add -> relu") {
  std::mt19937 g(3);
  const Tensor x = test::random_tensor({3, 4, 5, 6}, g), r = test::random_tensor({3, 4, 5, 6}, g);
  const Tensor gamma = test::random_tensor({6}, g, 0.5f, 1.5f), beta = test::random_tensor({6}, g);
  Tensor rm1 = Tensor::zeros({6}), rv1 = Tensor::full({6}, 1.0f), rm2 = Tensor::zeros({6}), rv2 = Tensor::full({6}, 1.0f);
  const auto fused = ops::batch_norm_act(x, gamma, beta, rm1, rv1, 0.1f, 1e-5f, r, true).to_vector();
  const auto plain = ops::relu(ops::add(ops::batch_norm(x, gamma, beta, rm2, rv2, true, 0.1f, 1e-5f), r)).to_vector();
  REQUIRE(fused.size() == plain.size());
  for (size_t i = 0; i < fused.size(); ++i) CHECK(fused[i] == doctest::Approx(plain[i]).epsilon(1e-6));
  CHECK(rm1.to_vector() == rm2.to_vector());
  CHECK(rv1.to_vector() == rv2.to_vector());
}

TEST_CASE("gradients accumulate across uses and backward calls, and zero_grad resets them") {
  Tensor x = Tensor::from_vector({2, 2}, {1, 2, 3, 4}).set_requires_grad(true);
  Tensor y = ops::add(x, x);  // dy/dx = 2
  y.backward(Tensor::full({2, 2}, 1.0f));
  CHECK(x.grad().to_vector() == std::vector<float>{2, 2, 2, 2});
  ops::scale(x, 3.0f).backward(Tensor::full({2, 2}, 1.0f));
  CHECK(x.grad().to_vector() == std::vector<float>{5, 5, 5, 5});
  const void* buf = x.grad().raw();
  x.zero_grad();
  CHECK(x.grad().to_vector() == std::vector<float>{0, 0, 0, 0});
  CHECK(x.grad().raw() == buf);  // same buffer: no allocation
  // a diamond: z = relu(x) + scale(relu(x)) shares the relu node between two consumers
  Tensor r = ops::relu(x);
  ops::add(r, ops::scale(r, 2.0f)).backward(Tensor::full({2, 2}, 1.0f));
  CHECK(x.grad().to_vector() == std::vector<float>{3, 3, 3, 3});
}

TEST_CASE("a released graph cannot be walked twice, and no_grad records nothing") {
  Tensor x = Tensor::from_vector({1, 2}, {1, 2}).set_requires_grad(true);
  Tensor y = ops::scale(ops::relu(x), 2.0f);
  y.backward(Tensor::full({1, 2}, 1.0f));
  CHECK_THROWS_AS(y.backward(Tensor::full({1, 2}, 1.0f)), Error);
  NoGradGuard ng;
  Tensor z = ops::relu(x);
  CHECK_FALSE(z.requires_grad());
  CHECK(z.is_leaf());
}
