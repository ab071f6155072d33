#pragma once
// Shared by the op table's row files (tests/ops/rows/*.cpp): input generators, junk-filled outputs, the
// reference comparison, and the Table the rows are added to. Internal to the op table.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "geoloc/backend.hpp"
#include "geoloc/detail/math.hpp"
#include "geoloc/dispatch.hpp"
#include "geoloc/nn/loss.hpp"
#include "geoloc/ops.hpp"

#include "op_table.hpp"
#include "test_inputs.hpp"

namespace geoloc::optest::rows {
using V = std::vector<Tensor>;

// ---------------------------------------------------------------- input helpers
using test::randn;
using test::uniform;
// Small multiples of 1/4: dot products and squared distances of these are exact in float in any order.
inline Tensor quantised(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = 0.25f * static_cast<float>(d(rng));
  return Tensor::from_vector(s, v);
}
using test::random_tensor;
using test::spread_tensor;
inline Tensor rg(Tensor t) {
  t.set_requires_grad(true);
  return t;
}
inline Tensor labels_with_ignored(int64_t n, int64_t c, bool all_ignored = false) {
  std::vector<int32_t> lab(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    lab[i] = (all_ignored || i % 4 == 3) ? -1 : static_cast<int32_t>((i * 7919) % c);
  return Tensor::from_labels(lab);
}
// Rows normalised to sum 1, row `zero_row` all zeros (an ignored sample).
inline Tensor soft_targets(int64_t n, int64_t c, uint32_t seed, int64_t zero_row) {
  Tensor t = uniform({n, c}, seed, 0.0f, 1.0f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += p[i * c + j];
    for (int64_t j = 0; j < c; ++j) p[i * c + j] = (i == zero_row) ? 0.0f : static_cast<float>(p[i * c + j] / s);
  }
  return t;
}

inline Tensor on(const Tensor& t, Device d) { return t.defined() ? t.to(d) : Tensor(); }
// A copy for the functions that update a tensor in place (the CPU's to() would share the input).
inline Tensor mut(const Tensor& t, Device d) { return t.defined() ? t.clone().to(d) : Tensor(); }
// The bf16 twins (rows/bf16.cpp): while a twin's prepare() runs, the float outputs it asks J for are bf16,
// except the 1-D ones (per-sample losses, batch-norm statistics, reduce_sum's y) where the twin says so.
struct Bf16Outputs {
  bool vec_f32 = false;
};
inline thread_local const Bf16Outputs* bf16_outputs = nullptr;
inline Tensor J(const Shape& s, Device d, int j, DType t = DType::F32) {
  if (bf16_outputs && t == DType::F32 && !(bf16_outputs->vec_f32 && s.ndim() == 1)) t = DType::BF16;
  return junk_tensor(s, t, d, j);
}
// An f32 tensor holding bf16 values (rounded to nearest even): inputs whose bf16 twin must compute the same
// thing as the f32 row (e.g. a ReLU mask taken from y on one backend, recomputed from x on the other).
inline Tensor bf16_exact(const Tensor& t) {
  Tensor b = Tensor::empty(t.shape(), DType::BF16);
  cpu::convert(t, b);
  Tensor r = Tensor::empty(t.shape());
  cpu::convert(b, r);
  return r;
}
inline double numel(const Shape& s) { return static_cast<double>(s.numel()); }

// "name3" (GCC 12 warns falsely, -Wrestrict, about "literal" + std::to_string(i))
inline std::string nth(const char* name, size_t i) {
  std::string s(name);
  s += std::to_string(i);
  return s;
}

inline std::string shape_str(const Shape& s) {
  std::string r;
  for (int i = 0; i < s.ndim(); ++i) {
    if (i) r += 'x';
    r += std::to_string(s[i]);
  }
  return r;
}

// |a - b| <= atol + rtol |b| for every element, in double; "" or what failed.
inline std::string close(const std::vector<double>& ref, const Tensor& got, double rtol, double atol, const std::string& what) {
  const auto g = got.to_vector();
  if (g.size() != ref.size()) return what + ": " + std::to_string(g.size()) + " elements, expected " + std::to_string(ref.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const bool same_inf = std::isinf(ref[i]) && static_cast<double>(g[i]) == ref[i];
    if (!same_inf && !(std::fabs(g[i] - ref[i]) <= atol + rtol * std::fabs(ref[i]))) {
      std::ostringstream o;
      o << what << "[" << i << "] = " << g[i] << ", reference " << ref[i];
      return o.str();
    }
  }
  return "";
}
inline std::vector<double> dvec(const Tensor& t) {
  const auto v = t.to_vector();
  return {v.begin(), v.end()};
}

// ---------------------------------------------------------------- the table
struct Table {
  std::vector<OpRow> rows;
  uint32_t seed = 1;
  OpRow& add(std::string op, std::string label, std::vector<OutSpec> outs, std::function<V()> inputs,
             std::function<Launch(const V&, Device, int)> prepare, double flops, double bytes) {
    OpRow r;
    r.op = std::move(op);
    r.label = std::move(label);
    r.outs = std::move(outs);
    r.inputs = std::move(inputs);
    r.prepare = std::move(prepare);
    r.flops = flops;
    r.bytes = bytes;
    rows.push_back(std::move(r));
    return rows.back();
  }
  uint32_t seeds(uint32_t n) {
    const uint32_t s = seed;
    seed += n;
    return s;
  }
};

// one function per op family, each in rows/<family>.cpp
void conv_rows(Table& t);
void batch_norm_rows(Table& t);
void elementwise_rows(Table& t);
void pooling_rows(Table& t);
void linear_rows(Table& t);
void loss_rows(Table& t);
void optim_rows(Table& t);
void knn_rows(Table& t);
void convert_rows(Table& t);
void bf16_rows(Table& t);  // last: bf16 twins of the rows above

}  // namespace geoloc::optest::rows
