#pragma once
// Helpers of the CUDA-vs-CPU tests. Every GPU output is pre-filled with junk (NaN for floats, 0x7f7f7f7f
// for integers, 0xAB for bytes), so an element a kernel forgot to write fails the comparison.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "geoloc/backend.hpp"
#include "geoloc/cuda/context.hpp"
#include "geoloc/tensor.hpp"
#include "test_inputs.hpp"

#define GEOLOC_SKIP_WITHOUT_CUDA()                                             \
  do {                                                                         \
    if (!::geoloc::cuda::available()) {                                        \
      MESSAGE("SKIPPED: no CUDA device (geoloc::cuda::available() is false)"); \
      return;                                                                  \
    }                                                                          \
  } while (0)

namespace geoloc::test {

inline Device gpu() { return Device::cuda(0); }

/// A GPU tensor of shape/dtype filled with junk.
inline Tensor junk(const Shape& s, DType t = DType::F32) {
  Tensor h = Tensor::empty(s, t);
  if (h.nbytes()) {
    if (t == DType::F32)
      std::fill_n(h.data<float>(), h.numel(), std::numeric_limits<float>::quiet_NaN());
    else
      std::memset(h.raw(), t == DType::U8 ? 0xAB : 0x7f, h.nbytes());
  }
  return h.to(gpu());
}
/// A CPU tensor of the same kind filled with other junk (the CPU side must overwrite it too).
inline Tensor cpu_junk(const Shape& s, DType t = DType::F32) {
  Tensor h = Tensor::empty(s, t);
  if (h.nbytes()) {
    if (t == DType::F32)
      std::fill_n(h.data<float>(), h.numel(), 1e30f);
    else
      std::memset(h.raw(), 0x55, h.nbytes());
  }
  return h;
}

/// |gpu - cpu| <= atol + rtol * |cpu| for every element (NaN anywhere fails); reports the worst element.
inline void check_close(const Tensor& g, const Tensor& c, float rtol, float atol, const std::string& what) {
  INFO(what);
  REQUIRE(g.shape() == c.shape());
  const std::vector<float> a = g.to_vector(), b = c.to_vector();
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = std::fabs(double(a[i]) - double(b[i]));
    const double lim = atol + rtol * std::fabs(double(b[i]));
    const bool same_inf = std::isinf(a[i]) && a[i] == b[i];
    const bool ok = same_inf || (!std::isnan(a[i]) && !std::isnan(b[i]) && diff <= lim);
    if (!ok) ++bad;
    const double excess = std::isnan(diff) ? 1e300 : diff - lim;
    if (!same_inf && excess > worst_excess) worst_excess = excess, worst = i;
  }
  INFO("elements out of tolerance: " << bad << " of " << a.size() << "; worst at " << worst << ": gpu "
                                     << (a.empty() ? 0.f : a[worst]) << " vs cpu "
                                     << (b.empty() ? 0.f : b[worst]) << " (rtol " << rtol << ", atol " << atol
                                     << ")");
  CHECK(bad == 0);
}

inline void check_equal_i32(const Tensor& g, const Tensor& c, const std::string& what) {
  INFO(what);
  REQUIRE(g.shape() == c.shape());
  const auto a = g.to_labels(), b = c.to_labels();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && !bad++) first = i;
  INFO("mismatches: " << bad << " of " << a.size() << "; first at " << first << ": gpu "
                      << (a.empty() ? 0 : a[first]) << " vs cpu " << (b.empty() ? 0 : b[first]));
  CHECK(bad == 0);
}

inline std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  const auto* p = static_cast<const uint8_t*>(h.raw());
  return std::vector<uint8_t>(p, p + h.nbytes());
}

}  // namespace geoloc::test
