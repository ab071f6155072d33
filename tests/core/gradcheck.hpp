#pragma once
// Finite-difference gradient checking shared by the op tests: the scalar probe L = sum(w * f(inputs))
// with fixed random w is differentiated by autograd and by central differences, the differences and
// sums accumulated in double precision.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "geoloc/ops.hpp"
#include "test_inputs.hpp"

namespace geoloc::test {

inline double probe(const Tensor& y, const std::vector<float>& w) {
  const auto v = y.to_vector();
  double s = 0.0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(v[i]) * w[i];
  return s;
}

struct GradcheckOptions {
  float step = 1e-2f;        // central-difference step
  double rtol = 2e-2, atol = 2e-3;
  int max_elements = 48;     // elements checked per input (a random subset for large tensors)
};

/// Checks d(sum(w * f(inputs)))/d(input) for every input that requires a gradient.
inline void gradcheck(const std::string& name, std::vector<Tensor> inputs,
                      const std::function<Tensor(const std::vector<Tensor>&)>& f, GradcheckOptions o = {}) {
  std::mt19937 rng(1234);
  for (auto& t : inputs)
    if (t.defined()) t.zero_grad();
  Tensor y = f(inputs);
  std::vector<float> w(static_cast<size_t>(y.numel()));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : w) x = u(rng);
  y.backward(Tensor::from_vector(y.shape(), w));
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor& in = inputs[i];
    if (!in.defined() || !in.requires_grad()) continue;
    INFO(name, ": input ", i, " ", in.shape().str());
    REQUIRE(in.grad().defined());
    const auto analytic = in.grad().to_vector();
    std::vector<int64_t> idx(static_cast<size_t>(in.numel()));
    for (size_t k = 0; k < idx.size(); ++k) idx[k] = static_cast<int64_t>(k);
    std::shuffle(idx.begin(), idx.end(), rng);
    if (static_cast<int>(idx.size()) > o.max_elements) idx.resize(o.max_elements);
    float* p = in.data<float>();
    double err_norm = 0.0, ref_norm = 0.0;
    for (int64_t k : idx) {
      const float orig = p[k];
      double lp, lm;
      {
        NoGradGuard ng;
        p[k] = orig + o.step;
        lp = probe(f(inputs), w);
        p[k] = orig - o.step;
        lm = probe(f(inputs), w);
        p[k] = orig;
      }
      const double numeric = (lp - lm) / (2.0 * static_cast<double>(o.step));
      const double a = analytic[k];
      INFO("element ", k, ": autograd ", a, " vs finite difference ", numeric);
      CHECK(std::fabs(a - numeric) <= o.atol + o.rtol * std::max(std::fabs(a), std::fabs(numeric)));
      err_norm += (a - numeric) * (a - numeric);
      ref_norm += numeric * numeric;
    }
    CHECK(std::sqrt(err_norm) <= 1e-2 * std::sqrt(ref_norm) + o.atol);
  }
}

}  // namespace geoloc::test
