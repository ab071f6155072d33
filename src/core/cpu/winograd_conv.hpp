// Winograd F(4x4, 3x3) convolution for inference on the CPU (winograd_conv.cpp). Internal to the CPU
// backend; not installed. conv.cpp decides when it is used (winograd_conv.cpp's header comment says why
// and what it costs in accuracy) and caches the transformed weights like the packed ones.
#pragma once

#include <cstddef>
#include <cstdint>

#include "direct_conv.hpp"

namespace geoloc::cpu::winograd {

// A 3x3 stride-1 convolution y[n, ho, wo, co] = epilogue(conv(x[n, h, w, ci], w) ) with `pad` zeros on
// every side (ho = h + 2 pad - 2), and the epilogue of the direct kernels: y = relu?(acc * scale + shift +
// residual), each part optional (residual: [n, ho, wo, co]).
struct Problem {
  const float* x;
  int64_t n, h, w, ci, co, pad;
  float* y;
  const float* scale = nullptr;
  const float* shift = nullptr;
  const float* residual = nullptr;
  bool relu = false;
  int64_t ho() const { return h + 2 * pad - 2; }
  int64_t wo() const { return w + 2 * pad - 2; }
};

// Whether the kernels can take this problem (channels in multiples of 16, at least one output).
bool supports(int64_t ci, int64_t co, int64_t ho, int64_t wo);

// Whether it is expected to be faster than the direct kernels for this layer (it is not where the
// transformed weights, 4x the size of the weights, must be read from memory for a handful of tiles:
// ResNet's 7x7 layer at batch 1).
bool pays(int64_t n, int64_t ho, int64_t wo);

// Floats of the transformed weights (36 x ci x co), and the transform itself: w [co, 3, 3, ci] into
// 36 k-major [ci][panel] panel sets of K.panel output channels (64-byte aligned destination).
size_t weight_floats(int64_t ci, int64_t co);
void transform_weights(const direct::Kernels& K, const float* w, int64_t ci, int64_t co, float* u);

// The convolution with weights transformed by transform_weights for the same K.
void forward(const direct::Kernels& K, const Problem& p, const float* u);

// On unless GEOLOC_CPU_WINOGRAD=0; set_enabled switches it in a running program (tests, benchmarks).
bool enabled();
void set_enabled(bool on);
// How many convolutions forward() has run (tests check which path a case took).
uint64_t calls();

}  // namespace geoloc::cpu::winograd
