// Finite-difference checks of the autograd-level compositions that have no backend function of their own
// (views, mse_loss, weighted_sum, a tensor used twice) and of gradient accumulation. Every backend
// function's gradient check is a row of the op table, tests/ops/op_table.cpp (run by tests/ops).
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
  c.push_back({"reshape + flatten", [&](std::mt19937& g) { return V{R({2, 2, 3, 2})(g), R({5, 12})(g)}; },
               [](const V& v) { return ops::linear(ops::flatten(ops::reshape(v[0], {2, 6, 2})), v[1]); }});
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

TEST_CASE("compositions of ops: backward matches central finite differences") {
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
