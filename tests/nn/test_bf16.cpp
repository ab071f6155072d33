// bf16 mixed precision on the CPU (issue #14): the backend's bf16 reference through autograd, checked
// against an independent computation: the same network in f32 with an explicit rounding op at every point
// where the bf16 path must round (each op's output, each gradient, the working copies of the weights).
// "Compute in float, one rounding per output" makes the two bit-identical; a missing, extra or misplaced
// rounding breaks the equality. The bf16 run is also compared with a plain f32 run (close, not equal).
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "geoloc/detail/math.hpp"
#include "geoloc/module.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;

namespace {
Tensor randn(const Shape& s, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = d(rng);
  return Tensor::from_vector(s, v);
}

// f32 values rounded to the nearest bf16 (kept in f32): written here from math::f32_to_bf16 / bf16_to_f32,
// not through the backend's convert.
Tensor round_values(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  for (float& x : v) x = math::bf16_to_f32(math::f32_to_bf16(x));
  return Tensor::from_vector(t.shape(), v);
}

// The reference's rounding point: forward rounds the value, backward rounds the gradient.
Tensor R(const Tensor& x) {
  Tensor y = round_values(x.detach());
  record(y, "round_bf16", {x}, [](const Tensor& g) -> std::vector<Tensor> { return {round_values(g)}; });
  return y;
}

enum class Mode { F32, BF16, Reference };

struct Net {
  Tensor w1, g1, b1, rm1, rv1, w2, b2;
};

Net make_net() {
  Net n;
  n.w1 = randn({8, 3, 3, 3}, 1, 0.4f);
  n.g1 = randn({8}, 2, 0.1f);
  n.b1 = randn({8}, 3, 0.1f);
  for (float* p = n.g1.data<float>(); p != n.g1.data<float>() + 8; ++p) *p += 1.0f;
  n.rm1 = Tensor::zeros({8});
  n.rv1 = Tensor::full({8}, 1.0f);
  n.w2 = randn({5, 8}, 4, 0.5f);
  n.b2 = randn({5}, 5, 0.1f);
  for (Tensor* t : {&n.w1, &n.g1, &n.b1, &n.w2, &n.b2}) t->set_requires_grad(true);
  return n;
}

// conv -> BN + ReLU -> max pool -> global average pool -> dropout -> linear -> cross-entropy; returns the loss.
Tensor forward(const Net& n, const Tensor& x, const Tensor& labels, Mode m, uint64_t step) {
  if (m == Mode::Reference) {
    Tensor h = R(ops::conv2d(R(x), R(n.w1), {}, 1, 1));
    h = R(ops::batch_norm_act(h, n.g1, n.b1, n.rm1, n.rv1, 0.1f, 1e-5f, {}, true));
    h = R(ops::global_avg_pool(R(ops::max_pool2d(h, 2, 2))));
    h = R(ops::dropout(h, 0.25f, true, step));
    return ops::cross_entropy(R(ops::linear(h, R(n.w2), R(n.b2))), labels);
  }
  const DType t = m == Mode::BF16 ? DType::BF16 : DType::F32;
  Tensor h = ops::conv2d(x.to_dtype(t), nn::working_copy(n.w1, t), {}, 1, 1);
  h = ops::batch_norm_act(h, n.g1, n.b1, n.rm1, n.rv1, 0.1f, 1e-5f, {}, true);
  h = ops::global_avg_pool(ops::max_pool2d(h, 2, 2));
  h = ops::dropout(h, 0.25f, true, step);
  const Tensor logits = ops::linear(h, nn::working_copy(n.w2, t), nn::working_copy(n.b2, t));
  CHECK(logits.dtype() == t);
  return ops::cross_entropy(logits, labels);
}

struct Run {
  std::vector<float> losses;
  std::vector<std::vector<float>> params;  // after the last step, with the running statistics
};

Run train(Mode m, int steps) {
  Net n = make_net();
  Run r;
  for (int s = 0; s < steps; ++s) {
    const Tensor x = randn({4, 6, 6, 3}, 100 + s, 1.0f);
    const Tensor labels = Tensor::from_labels({1, 4, 0, 2});
    for (Tensor* p : {&n.w1, &n.g1, &n.b1, &n.w2, &n.b2}) p->zero_grad();
    const Tensor loss = forward(n, x, labels, m, static_cast<uint64_t>(s));
    REQUIRE(loss.dtype() == DType::F32);
    r.losses.push_back(loss.item());
    loss.backward();
    NoGradGuard g;
    for (Tensor* p : {&n.w1, &n.g1, &n.b1, &n.w2, &n.b2}) {
      REQUIRE(p->grad().dtype() == DType::F32);  // the masters' gradients, also in bf16
      auto v = p->to_vector();
      const auto gv = p->grad().to_vector();
      for (size_t i = 0; i < v.size(); ++i) v[i] -= 0.5f * gv[i];
      p->copy_(Tensor::from_vector(p->shape(), v));
    }
  }
  for (const Tensor* p : {&n.w1, &n.g1, &n.b1, &n.w2, &n.b2, &n.rm1, &n.rv1}) r.params.push_back(p->to_vector());
  return r;
}
}  // namespace

TEST_CASE("bf16 training on the CPU equals f32 with rounding at each op's output and gradient") {
  const int steps = 4;
  const Run b = train(Mode::BF16, steps), ref = train(Mode::Reference, steps), f = train(Mode::F32, steps);
  for (int s = 0; s < steps; ++s) {
    INFO("step ", s, ": bf16 ", b.losses[s], ", reference ", ref.losses[s], ", f32 ", f.losses[s]);
    CHECK(b.losses[s] == ref.losses[s]);
    CHECK(std::fabs(b.losses[s] - f.losses[s]) < 0.03f * std::fabs(f.losses[s]) + 0.01f);
  }
  CHECK(b.losses.back() < b.losses.front());
  size_t differ_from_f32 = 0;
  for (size_t k = 0; k < b.params.size(); ++k) {
    for (size_t i = 0; i < b.params[k].size(); ++i) {
      INFO("tensor ", k, " element ", i);
      CHECK(std::memcmp(&b.params[k][i], &ref.params[k][i], 4) == 0);
      CHECK(std::fabs(b.params[k][i] - f.params[k][i]) < 0.05f * std::fabs(f.params[k][i]) + 0.02f);
      differ_from_f32 += b.params[k][i] != f.params[k][i];
    }
  }
  CHECK(differ_from_f32 > 50);  // the bf16 run did round
}

TEST_CASE("bf16 ops: outputs in the input's dtype, bf16 values, clear errors for mixed dtypes") {
  const Tensor x = randn({2, 4, 4, 3}, 7, 1.0f).to_dtype(DType::BF16);
  const Tensor w32 = randn({4, 3, 3, 3}, 8, 0.3f);
  CHECK_THROWS_AS(ops::conv2d(x, w32), ShapeError);
  const Tensor y = ops::conv2d(x, w32.to_dtype(DType::BF16), {}, 1, 1);
  CHECK(y.dtype() == DType::BF16);
  CHECK_THROWS_AS(ops::add(y, y.to_dtype(DType::F32)), ShapeError);
  // the bf16 result is the f32 result on the same (rounded) inputs, rounded once
  const Tensor yf = ops::conv2d(x.to_dtype(DType::F32), w32.to_dtype(DType::BF16).to_dtype(DType::F32), {}, 1, 1);
  CHECK(y.to_dtype(DType::F32).to_vector() == round_values(yf).to_vector());
  // backend twins with mixed dtypes are a ShapeError too (the contract: one dtype per call)
  CHECK_THROWS_AS(cpu::relu_forward(y, Tensor::empty(y.shape())), ShapeError);
  // batch-norm parameters stay f32
  const Tensor g16 = Tensor::full({4}, 1.0f).to_dtype(DType::BF16);
  CHECK_THROWS_AS(ops::batch_norm(y, g16, g16, g16, g16, true), ShapeError);
}
