#pragma once
// Seeded random input tensors shared by the test suites (op table, gradient checks, CUDA tests). No
// doctest here: the op table's library includes it too.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::test {

/// shift + scale * N(0, 1), from its own stream seeded with `seed`.
inline Tensor randn(const Shape& s, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = shift + scale * d(rng);
  return Tensor::from_vector(s, v);
}
/// U[lo, hi), from its own stream seeded with `seed`.
inline Tensor uniform(const Shape& s, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(s, v);
}
/// U[lo, hi) drawn from a caller's stream (the gradient checks draw all inputs from one).
inline Tensor random_tensor(const Shape& s, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = u(rng);
  return Tensor::from_vector(s, v);
}
/// Values in [-1, 1] at least `gap` away from 0 and from each other (for relu / max-pool kinks).
inline Tensor spread_tensor(const Shape& s, std::mt19937& rng, float gap = 0.02f) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  const float step = 2.0f / static_cast<float>(v.size() + 1);
  for (size_t i = 0; i < v.size(); ++i) v[i] = -1.0f + step * static_cast<float>(i + 1);
  std::shuffle(v.begin(), v.end(), rng);
  for (float& x : v)
    if (std::fabs(x) < gap) x = x < 0 ? -gap : gap;
  return Tensor::from_vector(s, v);
}

}  // namespace geoloc::test
