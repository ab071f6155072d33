// The rows of the op table (op_table.hpp). Tolerances against the CPU (|x - cpu| <= atol + rtol |cpu|):
//   exact (0)            : relu, add, add_relu, scale, mul_scalar, fill, dropout, max pool values and argmax,
//                          convert (bits), knn on quantised data (exact arithmetic in any order)
//   rtol 1e-5, atol 1e-6 : other elementwise, pooling averages, optimiser steps, softmax losses, haversine
//   rtol 1e-4, atol 1e-4 : convolutions, linear layers (fp32 FMA math, no TF32; only the order of the sums
//                          differs), batch norm (double-accumulated statistics on both sides)
// Shapes include odd sizes, sizes that are not multiples of 32 or 256, stride 2 and padding; the rows
// labelled "(bench)" are the larger ones bench_ops.cpp is mostly about (they are tested all the same).
#include "op_table.hpp"

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

namespace geoloc::optest {

// ---------------------------------------------------------------- junk, backends, names
float junk_f32(int junk) {
  static const float v[] = {std::numeric_limits<float>::quiet_NaN(), -7.7e29f, 3.3e38f, 1e30f};
  return v[static_cast<size_t>(junk) % 4];
}
uint8_t junk_byte(int junk) {
  static const uint8_t v[] = {0x7f, 0x55, 0xAB, 0x3c};
  return v[static_cast<size_t>(junk) % 4];
}
Tensor junk_tensor(const Shape& s, DType t, Device d, int junk) {
  Tensor h = Tensor::empty(s, t);
  if (h.numel() > 0) {
    if (t == DType::F32)
      std::fill_n(h.data<float>(), h.numel(), junk_f32(junk));
    else
      std::memset(h.raw(), junk_byte(junk), h.nbytes());
  }
  return h.to(d);
}

std::vector<Device> backends() {
  std::vector<Device> b{Device::cpu()};
  if (cuda::available()) b.push_back(Device::cuda(0));
  return b;
}

#define GEOLOC_OPTEST_STR_(...) #__VA_ARGS__
#define GEOLOC_OPTEST_STR(...) GEOLOC_OPTEST_STR_(__VA_ARGS__)

std::vector<std::string> backend_function_names() {
  // Comments are gone before macros expand, so the text is the declarations alone, ';'-separated; each
  // name is the identifier before the declaration's first '('.
  const std::string text = GEOLOC_OPTEST_STR(GEOLOC_BACKEND_DECLARATIONS);
  std::vector<std::string> names;
  std::istringstream decls(text);
  std::string decl;
  while (std::getline(decls, decl, ';')) {
    const size_t paren = decl.find('(');
    if (paren == std::string::npos) continue;
    size_t end = paren;
    while (end > 0 && decl[end - 1] == ' ') --end;
    size_t begin = end;
    while (begin > 0 && (std::isalnum(static_cast<unsigned char>(decl[begin - 1])) || decl[begin - 1] == '_')) --begin;
    if (end > begin) names.push_back(decl.substr(begin, end - begin));
  }
  return names;
}

std::vector<Tensor> run(const OpRow& row, const std::vector<Tensor>& in, Device d, int junk) {
  Launch l = row.prepare(in, d, junk);
  l.call();
  std::vector<Tensor> out;
  for (const Tensor& t : l.outs) out.push_back(t.to(Device::cpu()));
  return out;
}

namespace {
using V = std::vector<Tensor>;

// ---------------------------------------------------------------- input helpers
Tensor randn(const Shape& s, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = shift + scale * d(rng);
  return Tensor::from_vector(s, v);
}
Tensor unif(const Shape& s, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(s, v);
}
// Small multiples of 1/4: dot products and squared distances of these are exact in float in any order.
Tensor quantised(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = 0.25f * static_cast<float>(d(rng));
  return Tensor::from_vector(s, v);
}
// The gradient checks' generators (as tests/core/gradcheck.hpp's, drawing from one stream).
Tensor grad_random(const Shape& s, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v) x = u(rng);
  return Tensor::from_vector(s, v);
}
// Values in [-1, 1] at least `gap` away from 0 and from each other (relu and max-pool kinks).
Tensor grad_spread(const Shape& s, std::mt19937& rng, float gap = 0.02f) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  const float step = 2.0f / static_cast<float>(v.size() + 1);
  for (size_t i = 0; i < v.size(); ++i) v[i] = -1.0f + step * static_cast<float>(i + 1);
  std::shuffle(v.begin(), v.end(), rng);
  for (float& x : v)
    if (std::fabs(x) < gap) x = x < 0 ? -gap : gap;
  return Tensor::from_vector(s, v);
}
Tensor rg(Tensor t) {
  t.set_requires_grad(true);
  return t;
}
Tensor labels_with_ignored(int64_t n, int64_t c, bool all_ignored = false) {
  std::vector<int32_t> lab(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    lab[i] = (all_ignored || i % 4 == 3) ? -1 : static_cast<int32_t>((i * 7919) % c);
  return Tensor::from_labels(lab);
}
// Rows normalised to sum 1, row `zero_row` all zeros (an ignored sample).
Tensor soft_targets(int64_t n, int64_t c, uint32_t seed, int64_t zero_row) {
  Tensor t = unif({n, c}, seed, 0.0f, 1.0f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += p[i * c + j];
    for (int64_t j = 0; j < c; ++j) p[i * c + j] = (i == zero_row) ? 0.0f : static_cast<float>(p[i * c + j] / s);
  }
  return t;
}

Tensor on(const Tensor& t, Device d) { return t.defined() ? t.to(d) : Tensor(); }
// A copy for the functions that update a tensor in place (the CPU's to() would share the input).
Tensor mut(const Tensor& t, Device d) { return t.defined() ? t.clone().to(d) : Tensor(); }
Tensor J(const Shape& s, Device d, int j, DType t = DType::F32) { return junk_tensor(s, t, d, j); }
double numel(const Shape& s) { return static_cast<double>(s.numel()); }

// "name3" (GCC 12 warns falsely, -Wrestrict, about "literal" + std::to_string(i))
std::string nth(const char* name, size_t i) {
  std::string s(name);
  s += std::to_string(i);
  return s;
}

std::string shape_str(const Shape& s) {
  std::string r;
  for (int i = 0; i < s.ndim(); ++i) {
    if (i) r += 'x';
    r += std::to_string(s[i]);
  }
  return r;
}

// |a - b| <= atol + rtol |b| for every element, in double; "" or what failed.
std::string close(const std::vector<double>& ref, const Tensor& got, double rtol, double atol, const std::string& what) {
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
std::vector<double> dvec(const Tensor& t) {
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

// ---------------------------------------------------------------- convolution
struct ConvCase {
  int64_t n, h, w, ci, co, k;
  int stride, pad;
  bool grad;
  const char* note;
};

void conv_rows(Table& t) {
  const ConvCase cases[] = {
      {2, 7, 9, 3, 5, 3, 1, 1, true, "odd sizes, padding"},
      {3, 8, 8, 4, 6, 3, 2, 1, true, "stride 2"},
      {2, 5, 5, 8, 4, 1, 1, 0, true, "1x1 (direct GEMM)"},
      {1, 9, 7, 5, 3, 5, 2, 2, true, "5x5 s2 p2"},
      {2, 6, 6, 16, 8, 1, 2, 0, true, "strided 1x1 (downsample)"},
      {2, 4, 5, 3, 2, 4, 1, 0, true, "even kernel"},
      {1, 9, 9, 3, 2, 7, 2, 3, true, "7x7 s2 p3 (stem)"},
      {1, 4, 5, 16, 16, 3, 1, 1, true, "16->16 (AVX-512 kernels)"},
      {1, 5, 4, 16, 32, 3, 2, 1, true, "16->32 s2 (AVX-512 kernels)"},
      {4, 14, 14, 32, 64, 3, 1, 1, false, "ResNet-like"},
      {4, 28, 28, 64, 64, 3, 1, 1, false, "bench"},
  };
  for (const ConvCase& c : cases) {
    const Conv2dArgs a{c.stride, c.pad};
    const int64_t ho = conv_out_size(c.h, c.k, c.stride, c.pad), wo = conv_out_size(c.w, c.k, c.stride, c.pad);
    const Shape xs{c.n, c.h, c.w, c.ci}, ws{c.co, c.k, c.k, c.ci}, ys{c.n, ho, wo, c.co};
    const double fl = 2.0 * numel(ys) * static_cast<double>(c.ci * c.k * c.k);
    const std::string lab = "x " + shape_str(xs) + " w " + shape_str(ws) + " s" + std::to_string(c.stride) + " p" +
                            std::to_string(c.pad) + " (" + c.note + ")";
    const uint32_t s = t.seeds(4);
    for (bool bias : {false, true}) {
      OpRow& r = t.add(
          "conv2d_forward", lab + (bias ? " +bias" : ""), {{"y", 1e-4f, 1e-4f}},
          [=] { return V{randn(xs, s), randn(ws, s + 1, 0.3f), bias ? randn({c.co}, s + 2) : Tensor()}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), w = on(in[1], d), b = on(in[2], d), y = J(ys, d, j);
            return Launch{{y}, [=] { GEOLOC_DISPATCH(d, conv2d_forward, x, w, b, y, a); }};
          },
          fl, 4.0 * (numel(xs) + numel(ws) + numel(ys)));
      if (c.grad && bias)
        r.grad = {[=] {
                    std::mt19937 g(s);
                    return V{rg(grad_random(xs, g)), rg(grad_random(ws, g)), rg(grad_random({c.co}, g))};
                  },
                  [=](const V& v) { return ops::conv2d(v[0], v[1], v[2], c.stride, c.pad); }};
    }
    t.add(
        "conv2d_backward_data", lab, {{"dx", 1e-4f, 1e-4f}},
        [=] { return V{randn(ys, s + 3), randn(ws, s + 1, 0.3f)}; },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), w = on(in[1], d), dx = J(xs, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, conv2d_backward_data, dy, w, dx, a); }};
        },
        fl, 4.0 * (numel(xs) + numel(ws) + numel(ys)));
    for (bool dbias : {true, false})
      t.add(
          "conv2d_backward_filter", lab + (dbias ? " +dbias" : ""),
          dbias ? std::vector<OutSpec>{{"dw", 1e-4f, 1e-4f}, {"dbias", 1e-4f, 1e-4f}}
                : std::vector<OutSpec>{{"dw", 1e-4f, 1e-4f}},
          [=] { return V{randn(xs, s), randn(ys, s + 3)}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), dy = on(in[1], d), dw = J(ws, d, j), db = dbias ? J({c.co}, d, j) : Tensor();
            return Launch{dbias ? V{dw, db} : V{dw}, [=] { GEOLOC_DISPATCH(d, conv2d_backward_filter, x, dy, dw, db, a); }};
          },
          fl, 4.0 * (numel(xs) + numel(ws) + numel(ys)));
  }

  // inference fusion, checked against conv2d -> batch_norm(eval) -> add -> relu from the separate ops
  struct FusedCase {
    ConvCase c;
    bool residual, relu;
  };
  const FusedCase fused[] = {
      {{2, 7, 9, 3, 5, 3, 1, 1, false, "odd sizes"}, true, true},
      {{2, 8, 8, 16, 8, 1, 2, 0, false, "strided 1x1"}, false, true},
      {{1, 9, 7, 5, 6, 3, 2, 1, false, "stride 2"}, true, false},
      {{2, 6, 5, 4, 4, 3, 1, 1, false, "plain"}, false, false},
      {{4, 28, 28, 64, 64, 3, 1, 1, false, "bench"}, true, true},
  };
  for (const FusedCase& f : fused) {
    const ConvCase& c = f.c;
    const Conv2dArgs a{c.stride, c.pad};
    const int64_t ho = conv_out_size(c.h, c.k, c.stride, c.pad), wo = conv_out_size(c.w, c.k, c.stride, c.pad);
    const Shape xs{c.n, c.h, c.w, c.ci}, ws{c.co, c.k, c.k, c.ci}, ys{c.n, ho, wo, c.co};
    const bool residual = f.residual, relu = f.relu;
    const uint32_t s = t.seeds(7);
    OpRow& r = t.add(
        "conv2d_bn_act_forward",
        "x " + shape_str(xs) + " w " + shape_str(ws) + " s" + std::to_string(c.stride) + (residual ? " +residual" : "") +
            (relu ? " +relu" : "") + " (" + c.note + ")",
        {{"y", 1e-4f, 1e-4f}},
        [=] {
          return V{randn(xs, s),          randn(ws, s + 1, 0.3f),     unif({c.co}, s + 2, 0.5f, 1.5f),
                   randn({c.co}, s + 3),  randn({c.co}, s + 4, 0.2f), unif({c.co}, s + 5, 0.5f, 2.0f),
                   residual ? randn(ys, s + 6) : Tensor()};
        },
        [=](const V& in, Device d, int j) {
          V v;
          for (const Tensor& x : in) v.push_back(on(x, d));
          Tensor y = J(ys, d, j);
          return Launch{{y}, [=] {
                          GEOLOC_DISPATCH(d, conv2d_bn_act_forward, v[0], v[1], v[2], v[3], v[4], v[5], 1e-5f, v[6],
                                          relu, y, a);
                        }};
        },
        2.0 * numel(ys) * static_cast<double>(c.ci * c.k * c.k) + 4.0 * numel(ys),
        4.0 * (numel(xs) + numel(ws) + numel(ys) * (residual ? 2 : 1)));
    r.reference = [=](const V& in, const V& out) {
      NoGradGuard ng;
      Tensor y = ops::batch_norm(ops::conv2d(in[0], in[1], {}, c.stride, c.pad), in[2], in[3], in[4], in[5], false,
                                 0.1f, 1e-5f);
      if (residual) y = ops::add(y, in[6]);
      if (relu) y = ops::relu(y);
      return close(dvec(y), out[0], 1e-4, 1e-4, "fused vs conv2d -> batch_norm -> add -> relu");
    };
  }
}

// ---------------------------------------------------------------- batch norm
void batch_norm_rows(Table& t) {
  struct BnCase {
    Shape s;
    bool grad;
    const char* note;
  };
  const BnCase cases[] = {{{4, 5, 7, 3}, true, "odd"},       {{2, 8, 8, 64}, false, "64 channels"},
                          {{37, 13}, true, "[N,C]"},        {{3, 3, 3, 130}, false, "130 channels"},
                          {{8, 28, 28, 64}, false, "bench"}};
  for (const BnCase& bc : cases) {
    const Shape s = bc.s;
    const int64_t c = s[-1];
    const std::string lab = shape_str(s) + " (" + bc.note + ")";
    const uint32_t sd = t.seeds(8);
    auto params = [=] {
      return V{randn(s, sd, 2.0f, 0.5f), randn({c}, sd + 1), randn({c}, sd + 2), randn({c}, sd + 3),
               unif({c}, sd + 4, 0.5f, 2.0f)};
    };
    const double n = numel(s);
    OpRow& tr = t.add(
        "batch_norm_forward_train", lab,
        {{"y", 1e-4f, 1e-4f}, {"save_mean", 1e-5f, 1e-6f}, {"save_invstd", 1e-5f, 1e-6f}, {"running_mean", 1e-5f, 1e-6f},
         {"running_var", 1e-5f, 1e-6f}},
        params,
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), g = on(in[1], d), b = on(in[2], d), rm = mut(in[3], d), rv = mut(in[4], d);
          Tensor y = J(s, d, j), m = J({c}, d, j), is = J({c}, d, j);
          return Launch{{y, m, is, rm, rv},
                        [=] { GEOLOC_DISPATCH(d, batch_norm_forward_train, x, g, b, rm, rv, 0.1f, 1e-5f, y, m, is); }};
        },
        8.0 * n, 4.0 * 3 * n);
    if (bc.grad)
      tr.grad = {[=] {
                   std::mt19937 g(sd);
                   return V{rg(grad_random(s, g)), rg(grad_random({c}, g, 0.5f, 1.5f)), rg(grad_random({c}, g)),
                            grad_random({c}, g, -0.2f, 0.2f), grad_random({c}, g, 0.5f, 2.0f)};
                 },
                 [](const V& v) { return ops::batch_norm(v[0], v[1], v[2], v[3], v[4], true); }, 1e-2f, 3e-2, 3e-3};
    OpRow& ev = t.add(
        "batch_norm_forward_eval", lab, {{"y", 1e-5f, 1e-5f}}, params,
        [=](const V& in, Device d, int j) {
          V v;
          for (const Tensor& x : in) v.push_back(on(x, d));
          Tensor y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, batch_norm_forward_eval, v[0], v[1], v[2], v[3], v[4], 1e-5f, y); }};
        },
        2.0 * n, 4.0 * 2 * n);
    if (bc.grad)
      ev.grad = {[=] {
                   std::mt19937 g(sd + 1);
                   return V{rg(grad_random(s, g)), rg(grad_random({c}, g, 0.5f, 1.5f)), rg(grad_random({c}, g)),
                            grad_random({c}, g, -0.2f, 0.2f), grad_random({c}, g, 0.5f, 2.0f)};
                 },
                 [](const V& v) { return ops::batch_norm(v[0], v[1], v[2], v[3], v[4], false); }, 1e-2f, 3e-2, 3e-3};
    // backward: with the batch's saved statistics (all outputs / dx only), and with given statistics and no
    // dx (ops.cpp's eval-mode backward)
    struct BwCase {
      const char* what;
      bool batch_stats, dx, dgb;
    };
    for (const BwCase& bw : {BwCase{"batch statistics, dx dgamma dbeta", true, true, true},
                             BwCase{"batch statistics, dx only", true, true, false},
                             BwCase{"given statistics, dgamma dbeta only", false, false, true}}) {
      std::vector<OutSpec> outs;
      if (bw.dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      if (bw.dgb) outs.insert(outs.end(), {{"dgamma", 1e-4f, 1e-4f}, {"dbeta", 1e-4f, 1e-4f}});
      t.add(
          "batch_norm_backward", lab + " " + bw.what, outs,
          [=] {
            V p = params();
            Tensor dy = randn(s, sd + 5), mean, invstd;
            if (bw.batch_stats) {
              mean = Tensor::empty({c}), invstd = Tensor::empty({c});
              Tensor y = Tensor::empty(s), rm = p[3].clone(), rv = p[4].clone();
              cpu::batch_norm_forward_train(p[0], p[1], p[2], rm, rv, 0.1f, 1e-5f, y, mean, invstd);
            } else {
              mean = p[3], invstd = unif({c}, sd + 6, 0.5f, 1.5f);
            }
            return V{dy, p[0], p[1], mean, invstd};
          },
          [=](const V& in, Device d, int j) {
            V v;
            for (const Tensor& x : in) v.push_back(on(x, d));
            Tensor dx = bw.dx ? J(s, d, j) : Tensor(), dg = bw.dgb ? J({c}, d, j) : Tensor(),
                   db = bw.dgb ? J({c}, d, j) : Tensor();
            V outs;
            for (const Tensor& o : {dx, dg, db})
              if (o.defined()) outs.push_back(o);
            return Launch{outs, [=] { GEOLOC_DISPATCH(d, batch_norm_backward, v[0], v[1], v[2], v[3], v[4], dx, dg, db); }};
          },
          10.0 * n, 4.0 * 3 * n);
    }
  }

  // the fused training path of ResNet blocks: relu?(bn(x) + residual?)
  struct ActCase {
    Shape s;
    bool residual, relu, grad;
    const char* note;
  };
  const ActCase acts[] = {{{3, 5, 7, 6}, true, true, true, "odd"},    {{3, 5, 7, 6}, false, true, true, "odd"},
                          {{3, 5, 7, 6}, true, false, true, "odd"},   {{3, 5, 7, 6}, false, false, true, "odd"},
                          {{2, 8, 8, 64}, true, true, false, "64 ch"}, {{8, 28, 28, 64}, true, true, false, "bench"}};
  for (const ActCase& ac : acts) {
    const Shape s = ac.s;
    const int64_t c = s[-1];
    const bool residual = ac.residual, relu = ac.relu;
    const std::string lab = shape_str(s) + (residual ? " +residual" : "") + (relu ? " +relu" : "") + " (" + ac.note + ")";
    const uint32_t sd = t.seeds(8);
    auto params = [=] {
      return V{randn(s, sd, 2.0f, 0.5f), unif({c}, sd + 1, 0.5f, 1.5f), randn({c}, sd + 2),
               randn({c}, sd + 3, 0.2f), unif({c}, sd + 4, 0.5f, 2.0f), residual ? randn(s, sd + 5) : Tensor()};
    };
    const double n = numel(s);
    OpRow& fw = t.add(
        "batch_norm_act_forward_train", lab,
        {{"y", 1e-4f, 1e-4f}, {"save_mean", 1e-5f, 1e-6f}, {"save_invstd", 1e-5f, 1e-6f}, {"running_mean", 1e-5f, 1e-6f},
         {"running_var", 1e-5f, 1e-6f}},
        params,
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), g = on(in[1], d), b = on(in[2], d), rm = mut(in[3], d), rv = mut(in[4], d),
                 res = on(in[5], d);
          Tensor y = J(s, d, j), m = J({c}, d, j), is = J({c}, d, j);
          return Launch{{y, m, is, rm, rv}, [=] {
                          GEOLOC_DISPATCH(d, batch_norm_act_forward_train, x, g, b, rm, rv, 0.1f, 1e-5f, res, relu, y, m,
                                          is);
                        }};
        },
        10.0 * n, 4.0 * (residual ? 4 : 3) * n);
    fw.reference = [=](const V& in, const V& out) {
      Tensor y = Tensor::empty(s), m = Tensor::empty({c}), is = Tensor::empty({c}), rm = in[3].clone(), rv = in[4].clone();
      cpu::batch_norm_forward_train(in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f, y, m, is);
      if (residual) cpu::add_forward(y, in[5], y);
      if (relu) cpu::relu_forward(y, y);
      std::string e = close(dvec(y), out[0], 1e-6, 1e-6, "fused y vs batch_norm -> add -> relu");
      if (e.empty()) e = close(dvec(rm), out[3], 0, 0, "running_mean vs batch_norm_forward_train");
      if (e.empty()) e = close(dvec(rv), out[4], 0, 0, "running_var vs batch_norm_forward_train");
      return e;
    };
    if (ac.grad)
      fw.grad = {[=] {
                   std::mt19937 g(sd);
                   const Shape gs{2, 3, 3, 4};
                   return V{rg(grad_random(gs, g)), rg(grad_random({4}, g, 0.5f, 1.5f)), rg(grad_random({4}, g)),
                            grad_random({4}, g, -0.2f, 0.2f), grad_random({4}, g, 0.5f, 2.0f),
                            residual ? rg(grad_random(gs, g)) : Tensor()};
                 },
                 [=](const V& v) { return ops::batch_norm_act(v[0], v[1], v[2], v[3], v[4], 0.1f, 1e-5f, v[5], relu); },
                 1e-3f, 3e-2, 3e-3};
    for (bool with_dx : {true, false}) {
      if (!with_dx && !(residual && relu)) continue;
      std::vector<OutSpec> outs;
      if (with_dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      outs.insert(outs.end(), {{"dgamma", 1e-4f, 1e-4f}, {"dbeta", 1e-4f, 1e-4f}});
      if (residual) outs.push_back({"dresidual", 0, 0});
      t.add(
          "batch_norm_act_backward", lab + (with_dx ? "" : " no dx"), outs,
          [=] {
            V p = params();
            Tensor y = Tensor::empty(s), m = Tensor::empty({c}), is = Tensor::empty({c}), rm = p[3].clone(),
                   rv = p[4].clone();
            cpu::batch_norm_act_forward_train(p[0], p[1], p[2], rm, rv, 0.1f, 1e-5f, p[5], relu, y, m, is);
            return V{randn(s, sd + 6), p[0], y, p[1], p[2], m, is};
          },
          [=](const V& in, Device d, int j) {
            V v;
            for (const Tensor& x : in) v.push_back(on(x, d));
            Tensor dx = with_dx ? J(s, d, j) : Tensor(), dg = J({c}, d, j), db = J({c}, d, j),
                   dr = residual ? J(s, d, j) : Tensor();
            V outs;
            for (const Tensor& o : {dx, dg, db, dr})
              if (o.defined()) outs.push_back(o);
            return Launch{outs, [=] {
                            GEOLOC_DISPATCH(d, batch_norm_act_backward, v[0], v[1], v[2], v[3], v[4], v[5], v[6], relu,
                                            dx, dg, db, dr);
                          }};
          },
          12.0 * n, 4.0 * (residual ? 5 : 4) * n);
    }
  }
}

// ---------------------------------------------------------------- elementwise
void elementwise_rows(Table& t) {
  const Shape shapes[] = {{1}, {3, 5, 7, 9}, {1000003}};
  for (const Shape& s : shapes) {
    const std::string lab = shape_str(s) + (s.numel() > 100000 ? " (bench)" : "");
    const double n = numel(s);
    const uint32_t sd = t.seeds(3);
    const bool grad = s.ndim() == 4;
    OpRow& relu = t.add(
        "relu_forward", lab, {{"y"}}, [=] { return V{randn(s, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, relu_forward, x, y); }};
        },
        n, 8 * n);
    if (grad)
      relu.grad = {[] {
                     std::mt19937 g(7);
                     return V{rg(grad_spread({2, 3, 4, 5}, g))};
                   },
                   [](const V& v) { return ops::relu(v[0]); }, 1e-3f, 1e-2, 1e-3};
    t.add(
        "relu_backward", lab, {{"dx"}},
        [=] {
          Tensor y = randn(s, sd);
          cpu::relu_forward(y, y);
          return V{randn(s, sd + 1), y};
        },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), y = on(in[1], d), dx = J(s, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, relu_backward, dy, y, dx); }};
        },
        n, 12 * n);
    OpRow& add = t.add(
        "add_forward", lab, {{"y"}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int j) {
          Tensor a = on(in[0], d), b = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, add_forward, a, b, y); }};
        },
        n, 12 * n);
    if (grad)
      add.grad = {[] {
                    std::mt19937 g(7);
                    return V{rg(grad_random({2, 3, 4}, g)), rg(grad_random({2, 3, 4}, g))};
                  },
                  [](const V& v) { return ops::add(v[0], v[1]); }};
    OpRow& ar = t.add(
        "add_relu_forward", lab, {{"y"}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int j) {
          Tensor a = on(in[0], d), b = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, add_relu_forward, a, b, y); }};
        },
        2 * n, 12 * n);
    if (grad)
      ar.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(grad_spread({2, 3, 5}, g)), rg(grad_spread({2, 3, 5}, g, 0.0f))};
                 },
                 [](const V& v) { return ops::add_relu(v[0], ops::scale(v[1], 0.37f)); }, 1e-3f, 1e-2, 1e-3};
    t.add(
        "axpy", lab + " alpha 0.37", {{"dst", 1e-6f, 1e-7f}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int) {
          Tensor src = on(in[0], d), dst = mut(in[1], d);
          return Launch{{dst}, [=] { GEOLOC_DISPATCH(d, axpy, 0.37f, src, dst); }};
        },
        2 * n, 12 * n)
        .reference = [](const V& in, const V& out) {
      auto a = dvec(in[0]), b = dvec(in[1]);
      for (size_t i = 0; i < a.size(); ++i) b[i] += 0.37 * a[i];
      return close(b, out[0], 1e-6, 1e-7, "dst + 0.37 src");
    };
    OpRow& sc = t.add(
        "scale", lab + " alpha -1.5", {{"y"}}, [=] { return V{randn(s, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, scale, x, -1.5f, y); }};
        },
        n, 8 * n);
    if (grad)
      sc.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(grad_random({3, 7}, g))};
                 },
                 [](const V& v) { return ops::scale(v[0], -1.7f); }};
    t.add(
        "mul_scalar", lab + " s 0.37", {{"y"}}, [=] { return V{randn(s, sd), Tensor::from_vector({1}, {0.37f})}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), k = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, mul_scalar, x, k, y); }};
        },
        n, 8 * n)
        .reference = [](const V& in, const V& out) {
      auto a = in[0].to_vector();
      std::vector<double> r(a.size());
      for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] * 0.37f;  // one float product: exact match
      return close(r, out[0], 0, 0, "x * s");
    };
    t.add(
        "reduce_sum", lab + " alpha 0.25", {{"y", 1e-6f, 1e-6f}}, [=] { return V{randn(s, sd, 1.0f, 0.3f)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J({1}, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, reduce_sum, x, 0.25f, y); }};
        },
        n, 4 * n)
        .reference = [](const V& in, const V& out) {
      double sum = 0;
      for (float v : in[0].to_vector()) sum += v;
      return close({0.25 * sum}, out[0], 1e-6, 1e-6, "0.25 * sum (double)");
    };
    t.add(
        "fill", lab + " 2.25", {{"y"}}, [] { return V{}; },
        [=](const V&, Device d, int j) {
          Tensor y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, fill, y, 2.25f); }};
        },
        0, 4 * n)
        .reference = [s](const V&, const V& out) { return close(std::vector<double>(s.numel(), 2.25), out[0], 0, 0, "2.25"); };
    for (float p : {0.1f, 0.5f}) {
      const std::string pl = lab + " p " + (p == 0.1f ? "0.1" : "0.5");
      OpRow& df = t.add(
          "dropout_forward", pl, {{"mask"}, {"y"}}, [=] { return V{randn(s, sd)}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), m = J(s, d, j, DType::U8), y = J(s, d, j);
            return Launch{{m, y}, [=] { GEOLOC_DISPATCH(d, dropout_forward, x, m, y, p, 1234); }};
          },
          n, 9 * n);
      df.reference = [=](const V& in, const V& out) -> std::string {
        const uint8_t* m = out[0].data<uint8_t>();
        const auto x = in[0].to_vector();
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          const bool keep = math::dropout_keep(1234, i, p);
          if (m[i] != (keep ? 1 : 0)) return "mask[" + std::to_string(i) + "] is not the counter hash's";
          y[i] = keep ? x[i] / (1.0 - p) : 0.0;
        }
        return close(y, out[1], 1e-6, 0, "x * mask / (1 - p)");
      };
      if (grad && p == 0.1f)
        df.grad = {[] {
                     std::mt19937 g(7);
                     return V{rg(grad_random({4, 9}, g))};
                   },
                   [](const V& v) { return ops::dropout(v[0], 0.3f, true, 42); }};
      t.add(
          "dropout_backward", pl, {{"dx"}},
          [=] {
            Tensor m = Tensor::empty(s, DType::U8), y = Tensor::empty(s);
            cpu::dropout_forward(randn(s, sd), m, y, p, 1234);
            return V{randn(s, sd + 2), m};
          },
          [=](const V& in, Device d, int j) {
            Tensor dy = on(in[0], d), m = on(in[1], d), dx = J(s, d, j);
            return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, dropout_backward, dy, m, dx, p); }};
          },
          n, 9 * n);
    }
  }
}

// ---------------------------------------------------------------- pooling
void pooling_rows(Table& t) {
  struct PoolCase {
    Shape x;
    Pool2dArgs a;
    const char* note;
    int grad;  // 0 none, 1: 3x3 s2 p1 grad case, 2: 2x2 s2 odd grad case
  };
  const PoolCase cases[] = {{{2, 7, 9, 3}, {2, 2, 0}, "2x2 s2 odd", 2},
                            {{3, 11, 10, 5}, {3, 2, 1}, "3x3 s2 p1 (-inf padding)", 1},
                            {{1, 5, 5, 64}, {3, 1, 1}, "3x3 s1 p1", 0},
                            {{2, 8, 8, 4}, {2, 3, 0}, "2x2 s3 (gaps)", 0},
                            {{8, 56, 56, 64}, {3, 2, 1}, "bench", 0}};
  for (const PoolCase& pc : cases) {
    const Shape xs = pc.x;
    const Pool2dArgs a = pc.a;
    const int64_t ho = conv_out_size(xs[1], a.kernel, a.stride, a.pad), wo = conv_out_size(xs[2], a.kernel, a.stride, a.pad);
    const Shape ys{xs[0], ho, wo, xs[3]}, gs{xs[0], xs[3]};
    const std::string lab = shape_str(xs) + " k" + std::to_string(a.kernel) + " s" + std::to_string(a.stride) + " p" +
                            std::to_string(a.pad) + " (" + pc.note + ")";
    const uint32_t sd = t.seeds(3);
    OpRow& mp = t.add(
        "max_pool2d_forward", lab, {{"y"}, {"argmax"}}, [=] { return V{randn(xs, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(ys, d, j), am = J(ys, d, j, DType::I32);
          return Launch{{y, am}, [=] { GEOLOC_DISPATCH(d, max_pool2d_forward, x, y, am, a); }};
        },
        numel(ys) * a.kernel * a.kernel, 4 * numel(xs) + 8 * numel(ys));
    if (pc.grad == 1)
      mp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(grad_spread({2, 7, 7, 3}, g))};
                 },
                 [](const V& v) { return ops::max_pool2d(v[0], 3, 2, 1); }, 1e-4f, 1e-2, 1e-3, 64};
    if (pc.grad == 2)
      mp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(grad_spread({1, 5, 4, 2}, g))};
                 },
                 [](const V& v) { return ops::max_pool2d(v[0], 2, 2, 0); }, 1e-4f, 1e-2, 1e-3, 64};
    t.add(
        "max_pool2d_backward", lab, {{"dx", 1e-6f, 1e-6f}},
        [=] {
          Tensor y = Tensor::empty(ys), am = Tensor::empty(ys, DType::I32);
          cpu::max_pool2d_forward(randn(xs, sd), y, am, a);
          return V{randn(ys, sd + 1), am};
        },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), am = on(in[1], d), dx = J(xs, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, max_pool2d_backward, dy, am, dx); }};
        },
        numel(ys), 4 * numel(xs) + 8 * numel(ys));
    OpRow& gp = t.add(
        "global_avg_pool_forward", shape_str(xs), {{"y", 1e-5f, 1e-6f}}, [=] { return V{randn(xs, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(gs, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, global_avg_pool_forward, x, y); }};
        },
        numel(xs), 4 * (numel(xs) + numel(gs)));
    if (pc.grad == 1)
      gp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(grad_random({2, 3, 5, 4}, g))};
                 },
                 [](const V& v) { return ops::global_avg_pool(v[0]); }};
    t.add(
        "global_avg_pool_backward", shape_str(xs), {{"dx", 1e-6f, 1e-7f}}, [=] { return V{randn(gs, sd + 2)}; },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), dx = J(xs, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, global_avg_pool_backward, dy, dx); }};
        },
        numel(xs), 4 * (numel(xs) + numel(gs)));
  }
}

// ---------------------------------------------------------------- linear
void linear_rows(Table& t) {
  const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {64, 512, 1000}, {256, 2048, 3}};
  for (const auto& dm : dims) {
    const int64_t n = dm[0], k = dm[1], c = dm[2];
    const std::string lab = "x " + std::to_string(n) + "x" + std::to_string(k) + " w " + std::to_string(c) + "x" +
                            std::to_string(k) + (n == 64 ? " (bench)" : "");
    const uint32_t sd = t.seeds(4);
    const double fl = 2.0 * n * k * c, by = 4.0 * (n * k + c * k + n * c);
    for (bool bias : {false, true}) {
      OpRow& r = t.add(
          "linear_forward", lab + (bias ? " +bias" : ""), {{"y", 1e-4f, 1e-4f}},
          [=] { return V{randn({n, k}, sd), randn({c, k}, sd + 1, 0.1f), bias ? randn({c}, sd + 2) : Tensor()}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), w = on(in[1], d), b = on(in[2], d), y = J({n, c}, d, j);
            return Launch{{y}, [=] { GEOLOC_DISPATCH(d, linear_forward, x, w, b, y); }};
          },
          fl, by);
      if (n == 7)
        r.grad = {[=] {
                    std::mt19937 g(7);
                    return V{rg(grad_random({n, k}, g)), rg(grad_random({c, k}, g)), bias ? rg(grad_random({c}, g)) : Tensor()};
                  },
                  [](const V& v) { return ops::linear(v[0], v[1], v[2]); }};
    }
    struct Which {
      const char* what;
      bool dx, dw, db;
    };
    for (const Which& wh : {Which{"dx dw dbias", true, true, true}, Which{"dw only", false, true, false},
                            Which{"dx only", true, false, false}, Which{"dbias only", false, false, true}}) {
      std::vector<OutSpec> outs;
      if (wh.dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      if (wh.dw) outs.push_back({"dw", 1e-4f, 1e-4f});
      if (wh.db) outs.push_back({"dbias", 1e-4f, 1e-4f});
      t.add(
          "linear_backward", lab + " " + wh.what, outs,
          [=] { return V{randn({n, c}, sd + 3), randn({n, k}, sd), randn({c, k}, sd + 1, 0.1f)}; },
          [=](const V& in, Device d, int j) {
            Tensor dy = on(in[0], d), x = on(in[1], d), w = on(in[2], d);
            Tensor dx = wh.dx ? J({n, k}, d, j) : Tensor(), dw = wh.dw ? J({c, k}, d, j) : Tensor(),
                   db = wh.db ? J({c}, d, j) : Tensor();
            V o;
            for (const Tensor& x2 : {dx, dw, db})
              if (x2.defined()) o.push_back(x2);
            return Launch{o, [=] { GEOLOC_DISPATCH(d, linear_backward, dy, x, w, dx, dw, db); }};
          },
          fl * ((wh.dx ? 1 : 0) + (wh.dw ? 1 : 0)) + (wh.db ? n * c : 0), by);
    }
  }
}

// ---------------------------------------------------------------- losses
std::vector<double> xent_hard_ref(const Tensor& logits, const Tensor& labels, float scale, std::vector<double>& dl) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const auto x = logits.to_vector();
  const auto l = labels.to_labels();
  std::vector<double> loss(n, 0.0);
  dl.assign(x.size(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (l[i] < 0) continue;
    double m = -1e300, z = 0;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, double(x[i * c + j]));
    for (int64_t j = 0; j < c; ++j) z += std::exp(x[i * c + j] - m);
    loss[i] = m + std::log(z) - x[i * c + l[i]];
    for (int64_t j = 0; j < c; ++j) dl[i * c + j] = scale * (std::exp(x[i * c + j] - m) / z - (j == l[i] ? 1.0 : 0.0));
  }
  return loss;
}

void loss_rows(Table& t) {
  const int64_t dims[][2] = {{1, 1}, {5, 3}, {17, 1000}, {8, 40000}, {4, 6}};
  for (const auto& dm : dims) {
    const int64_t n = dm[0], c = dm[1];
    const bool all_ignored = n == 4;
    const std::string lab = std::to_string(n) + "x" + std::to_string(c) +
                            (all_ignored ? " every label ignored" : " (every 4th label ignored)") + (c == 40000 ? " (bench)" : "");
    const uint32_t sd = t.seeds(2);
    OpRow& h = t.add(
        "cross_entropy_hard", lab, {{"loss", 1e-5f, 1e-5f}, {"dlogits", 1e-5f, 1e-7f}},
        [=] { return V{randn({n, c}, sd, 3.0f), labels_with_ignored(n, c, all_ignored)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), l = on(in[1], d), loss = J({n}, d, j), dl = J({n, c}, d, j);
          return Launch{{loss, dl}, [=] { GEOLOC_DISPATCH(d, cross_entropy_hard, x, l, loss, dl, 0.25f); }};
        },
        5.0 * n * c, 4.0 * (2 * n * c + 2 * n));
    h.reference = [](const V& in, const V& out) {
      std::vector<double> dl;
      const auto loss = xent_hard_ref(in[0], in[1], 0.25f, dl);
      std::string e = close(loss, out[0], 1e-5, 1e-5, "loss vs double logsumexp");
      return e.empty() ? close(dl, out[1], 1e-5, 1e-7, "dlogits vs 0.25 (softmax - onehot)") : e;
    };
    if (n == 5)
      h.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(grad_random({4, 5}, g))};
                },
                [](const V& v) { return ops::cross_entropy(ops::scale(v[0], 2.0f), Tensor::from_labels({3, -1, 0, 4})); }};
    const int64_t zero_row = 1;
    OpRow& s = t.add(
        "cross_entropy_soft", std::to_string(n) + "x" + std::to_string(c) + (n > 1 ? " (row 1 all zeros)" : "") +
                                  (c == 40000 ? " (bench)" : ""),
        {{"loss", 1e-4f, 1e-4f}, {"dlogits", 1e-5f, 1e-7f}},
        [=] { return V{randn({n, c}, sd, 3.0f), soft_targets(n, c, sd + 1, zero_row)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), tg = on(in[1], d), loss = J({n}, d, j), dl = J({n, c}, d, j);
          return Launch{{loss, dl}, [=] { GEOLOC_DISPATCH(d, cross_entropy_soft, x, tg, loss, dl, 0.5f); }};
        },
        6.0 * n * c, 4.0 * (3 * n * c + n));
    if (n == 5)
      s.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(grad_random({3, 4}, g)),
                           Tensor::from_vector({3, 4}, {0.1f, 0.2f, 0.3f, 0.4f, 0, 0, 0, 0, 1, 0, 0, 0})};
                },
                [](const V& v) { return ops::cross_entropy_soft(v[0], v[1]); }};
  }

  // multi-head: hard heads (ignored labels, one head all ignored) and soft heads (a zero row), of different
  // N and C, in one call; each head must equal its own cross_entropy_hard / cross_entropy_soft
  struct HeadCase {
    int64_t n, c;
    bool soft, all_ignored;
  };
  struct MultiCase {
    std::vector<HeadCase> heads;
    const char* label;
  };
  const MultiCase multis[] = {
      {{{17, 1000, false, false}, {9, 40, true, false}, {5, 3, false, true}, {1, 1, true, false}},
       "hard 17x1000, soft 9x40, hard 5x3 all ignored, soft 1x1"},
      {{{64, 3003, false, false}, {64, 3003, true, false}, {64, 157, false, false}}, "64x3003 hard+soft, 64x157 (bench)"}};
  for (const MultiCase& mc : multis) {
    const auto heads = mc.heads;
    const uint32_t sd = t.seeds(2 * static_cast<uint32_t>(heads.size()));
    std::vector<OutSpec> outs;
    double fl = 0, by = 0;
    for (size_t i = 0; i < heads.size(); ++i) {
      outs.push_back({nth("loss", i), 1e-4f, 1e-4f});
      outs.push_back({nth("dlogits", i), 1e-5f, 1e-7f});
      fl += 6.0 * heads[i].n * heads[i].c;
      by += 4.0 * ((heads[i].soft ? 3 : 2) * heads[i].n * heads[i].c + 2 * heads[i].n);
    }
    auto scale_of = [](size_t i) { return 1.0f / static_cast<float>(i + 2); };
    OpRow& r = t.add(
        "cross_entropy_multihead", mc.label, outs,
        [=] {
          V v;
          for (size_t i = 0; i < heads.size(); ++i) {
            const HeadCase& h = heads[i];
            v.push_back(randn({h.n, h.c}, sd + 2 * i, 3.0f));
            v.push_back(h.soft ? soft_targets(h.n, h.c, sd + 2 * i + 1, h.n > 1 ? 1 : -1)
                               : labels_with_ignored(h.n, h.c, h.all_ignored));
          }
          return v;
        },
        [=](const V& in, Device d, int j) {
          std::vector<CrossEntropyHead> hs(heads.size());
          V o;
          for (size_t i = 0; i < heads.size(); ++i) {
            CrossEntropyHead& h = hs[i];
            h.logits = on(in[2 * i], d);
            (heads[i].soft ? h.targets : h.labels) = on(in[2 * i + 1], d);
            h.loss = J({heads[i].n}, d, j);
            h.dlogits = J({heads[i].n, heads[i].c}, d, j);
            h.grad_scale = scale_of(i);
            o.push_back(h.loss);
            o.push_back(h.dlogits);
          }
          return Launch{o, [=] { GEOLOC_DISPATCH(d, cross_entropy_multihead, hs); }};
        },
        fl, by);
    r.reference = [=](const V& in, const V& out) {
      for (size_t i = 0; i < heads.size(); ++i) {
        const int64_t n = heads[i].n, c = heads[i].c;
        Tensor loss = Tensor::empty({n}), dl = Tensor::empty({n, c});
        if (heads[i].soft)
          cpu::cross_entropy_soft(in[2 * i], in[2 * i + 1], loss, dl, scale_of(i));
        else
          cpu::cross_entropy_hard(in[2 * i], in[2 * i + 1], loss, dl, scale_of(i));
        const std::string h = "head " + std::to_string(i) + (heads[i].soft ? " vs cross_entropy_soft" : " vs cross_entropy_hard");
        std::string e = close(dvec(loss), out[2 * i], 1e-6, 1e-7, h + " loss");
        if (e.empty()) e = close(dvec(dl), out[2 * i + 1], 1e-6, 1e-9, h + " dlogits");
        if (!e.empty()) return e;
      }
      return std::string();
    };
    if (heads.size() == 4)
      r.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(grad_random({4, 5}, g)), rg(grad_random({3, 4}, g))};
                },
                [](const V& v) {
                  const Tensor soft = Tensor::from_vector({3, 4}, {0.1f, 0.2f, 0.3f, 0.4f, 0, 0, 0, 0, 1, 0, 0, 0});
                  const auto l = ops::cross_entropy_multihead({ops::scale(v[0], 2.0f), v[1]},
                                                              {{Tensor::from_labels({3, -1, 0, 4}), {}}, {{}, soft}});
                  return ops::weighted_sum(l, {1.0f, 0.5f});
                }};
  }

  // haversine: [N,3] vectors and [N,2] lat/lng, with and without dpred; edge samples at the target, at its
  // antipode, and a zero vector (gradient 0 where it does not exist)
  struct HavCase {
    int64_t n;
    int cols;
    bool dpred, edges;
    const char* note;
  };
  for (const HavCase& hc : {HavCase{37, 3, true, true, "vec3, edge samples"}, HavCase{37, 2, true, true, "lat/lng, edge samples"},
                            HavCase{5, 3, false, false, "no dpred"}, HavCase{1 << 20, 3, true, false, "bench"}}) {
    const int64_t n = hc.n;
    const int cols = hc.cols;
    const bool dpred = hc.dpred, edges = hc.edges;
    const uint32_t sd = t.seeds(2);
    std::vector<OutSpec> outs{{"loss", 1e-5f, 1e-5f}};
    if (dpred) outs.push_back({"dpred", 1e-4f, 1e-5f});
    OpRow& r = t.add(
        "haversine_loss", "pred " + std::to_string(n) + "x" + std::to_string(cols) + " (" + hc.note + ")", outs,
        [=] {
          Tensor tg = unif({n, 2}, sd, -1.5f, 1.5f);
          float* T = tg.data<float>();
          for (int64_t i = 0; i < n; ++i) T[2 * i + 1] *= 2.0f;  // lng in [-3, 3]
          Tensor p = cols == 3 ? randn({n, 3}, sd + 1) : unif({n, 2}, sd + 1, -1.5f, 1.5f);
          float* P = p.data<float>();
          if (edges) {
            const float lat = T[0], lng = T[1];
            if (cols == 3) {
              const float v[3] = {std::cos(lat) * std::cos(lng), std::cos(lat) * std::sin(lng), std::sin(lat)};
              for (int k = 0; k < 3; ++k) P[k] = 2.0f * v[k], P[3 + k] = -v[k], P[6 + k] = 0.0f;
              T[2] = lat, T[3] = lng;
            } else {
              P[0] = lat, P[1] = lng;                                   // at the target
              P[2] = -T[2], P[3] = T[3] > 0 ? T[3] - 3.14159265f : T[3] + 3.14159265f;  // the antipode
            }
          }
          return V{p, tg};
        },
        [=](const V& in, Device d, int j) {
          Tensor p = on(in[0], d), tg = on(in[1], d), loss = J({n}, d, j), dp = dpred ? J({n, cols}, d, j) : Tensor();
          return Launch{dpred ? V{loss, dp} : V{loss}, [=] { GEOLOC_DISPATCH(d, haversine_loss, p, tg, loss, dp, 0.5f); }};
        },
        40.0 * n, 4.0 * n * (2 + 1 + (dpred ? 2 * cols : cols)));
    if (edges)
      r.reference = [=](const V&, const V& out) -> std::string {
        const auto l = out[0].to_vector(), g = out[1].to_vector();
        if (!(std::fabs(l[0]) < 1e-3f)) return "loss at the target is " + std::to_string(l[0]);
        if (!(std::fabs(l[1] - 3.14159265f) < 1e-3f)) return "loss at the antipode is " + std::to_string(l[1]);
        if (cols == 3)
          for (int k = 0; k < 3; ++k)
            if (g[6 + k] != 0.0f || l[2] != 0.0f) return "a zero vector must give loss 0 and gradient 0";
        return "";
      };
    if (n == 37)
      r.grad = {[=] {
                  std::mt19937 rng(5);
                  std::normal_distribution<float> nd;
                  std::uniform_real_distribution<float> ulat(-1.3f, 1.3f), ulng(-3.0f, 3.0f);
                  std::vector<float> tv, pv;
                  for (int i = 0; i < 6; ++i) {
                    tv.push_back(ulat(rng));
                    tv.push_back(ulng(rng));
                    if (cols == 3)
                      for (int k = 0; k < 3; ++k) pv.push_back(nd(rng));
                    else
                      pv.push_back(ulat(rng)), pv.push_back(ulng(rng));
                  }
                  return V{rg(Tensor::from_vector({6, cols}, pv)), Tensor::from_vector({6, 2}, tv)};
                },
                [](const V& v) { return nn::haversine_loss(v[0], v[1], nn::DistanceUnit::Radians); }, 1e-3f, 2e-3, 1.5e-4};
  }
}

// ---------------------------------------------------------------- optimisers
void optim_rows(Table& t) {
  // slot 0 large, slot 1 small with no weight decay, slot 2 without a gradient (skipped: unchanged)
  const int64_t sizes[] = {100003, 37, 11};
  struct SgdCase {
    float momentum, dampening, wd;
    bool nesterov, first;
    const char* note;
  };
  for (const SgdCase& sc : {SgdCase{0.9f, 0.0f, 1e-4f, false, true, "momentum, first step"},
                            SgdCase{0.9f, 0.1f, 1e-4f, false, false, "momentum, dampening"},
                            SgdCase{0.9f, 0.0f, 5e-4f, true, false, "nesterov"},
                            SgdCase{0.0f, 0.0f, 0.0f, false, false, "plain (no buffer)"}}) {
    const bool buf = sc.momentum != 0.0f;
    const uint32_t sd = t.seeds(9);
    std::vector<OutSpec> outs;
    for (int i = 0; i < 3; ++i) {
      outs.push_back({nth("param", i), 1e-6f, 1e-6f});
      if (buf) outs.push_back({nth("momentum", i), 1e-6f, 1e-6f});
    }
    const float lr = 0.05f;
    auto wd_of = [sc](int i) { return i == 1 ? 0.0f : sc.wd; };
    t.add(
         "sgd_step", std::string(sc.note) + ", 3 slots (100003, 37, 11 without grad)", outs,
         [=] {
           V v;
           for (int i = 0; i < 3; ++i) {
             const Shape s{sizes[i]};
             v.push_back(randn(s, sd + 3 * i));
             v.push_back(i == 2 ? Tensor() : randn(s, sd + 3 * i + 1));
             v.push_back(buf ? randn(s, sd + 3 * i + 2) : Tensor());
           }
           return v;
         },
         [=](const V& in, Device d, int) {
           std::vector<OptimSlot> slots;
           V o;
           for (int i = 0; i < 3; ++i) {
             slots.push_back({mut(in[3 * i], d), on(in[3 * i + 1], d), mut(in[3 * i + 2], d), Tensor(), wd_of(i)});
             o.push_back(slots.back().param);
             if (buf) o.push_back(slots.back().state1);
           }
           return Launch{o, [=] { GEOLOC_DISPATCH(d, sgd_step, slots, lr, sc.momentum, sc.dampening, sc.nesterov, sc.first); }};
         },
         5.0 * (sizes[0] + sizes[1]), 4.0 * (buf ? 5 : 3) * (sizes[0] + sizes[1]))
        .reference = [=](const V& in, const V& out) {
      size_t k = 0;
      for (int i = 0; i < 3; ++i) {
        auto p = dvec(in[3 * i]);
        std::vector<double> b = buf ? dvec(in[3 * i + 2]) : std::vector<double>();
        if (i != 2) {
          const auto g = dvec(in[3 * i + 1]);
          const double m = sc.momentum, damp = sc.dampening, wd = wd_of(i);
          for (size_t e = 0; e < p.size(); ++e) {
            double dd = g[e] + wd * p[e];
            if (buf) {
              b[e] = sc.first ? dd : m * b[e] + (1.0 - damp) * dd;
              dd = sc.nesterov ? dd + m * b[e] : b[e];
            }
            p[e] -= double(lr) * dd;
          }
        }
        const double tol = i == 2 ? 0.0 : 1e-6;  // a slot without a gradient is left exactly as it was
        std::string e = close(p, out[k++], tol, tol, nth("param", i) + " vs the SGD formula in double");
        if (e.empty() && buf) e = close(b, out[k++], tol, tol, nth("momentum", i) + " vs the formula");
        if (!e.empty()) return e;
      }
      return std::string();
    };
  }
  for (int64_t step : {1, 2, 100}) {
    const uint32_t sd = t.seeds(8);
    std::vector<OutSpec> outs;
    for (int i = 0; i < 2; ++i)
      outs.insert(outs.end(), {{nth("param", i), 1e-5f, 1e-6f},
                               {nth("m", i), 1e-6f, 1e-7f},
                               {nth("v", i), 1e-6f, 1e-7f}});
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    t.add(
         "adamw_step", "step " + std::to_string(step) + ", 2 slots (100003 wd 0.01, 37 wd 0)", outs,
         [=] {
           V v;
           for (int i = 0; i < 2; ++i) {
             const Shape s{sizes[i]};
             v.push_back(randn(s, sd + 4 * i));
             v.push_back(randn(s, sd + 4 * i + 1));
             v.push_back(randn(s, sd + 4 * i + 2, 0.1f));
             v.push_back(unif(s, sd + 4 * i + 3, 0.0f, 0.1f));
           }
           return v;
         },
         [=](const V& in, Device d, int) {
           std::vector<OptimSlot> slots;
           V o;
           for (int i = 0; i < 2; ++i) {
             slots.push_back({mut(in[4 * i], d), on(in[4 * i + 1], d), mut(in[4 * i + 2], d), mut(in[4 * i + 3], d),
                              i == 0 ? 0.01f : 0.0f});
             o.insert(o.end(), {slots.back().param, slots.back().state1, slots.back().state2});
           }
           return Launch{o, [=] { GEOLOC_DISPATCH(d, adamw_step, slots, lr, b1, b2, eps, step); }};
         },
         12.0 * (sizes[0] + sizes[1]), 4.0 * 7 * (sizes[0] + sizes[1]))
        .reference = [=](const V& in, const V& out) {
      for (int i = 0; i < 2; ++i) {
        auto p = dvec(in[4 * i]), m = dvec(in[4 * i + 2]), v = dvec(in[4 * i + 3]);
        const auto g = dvec(in[4 * i + 1]);
        const double wd = i == 0 ? 0.01 : 0.0, bc1 = 1.0 - std::pow(double(b1), double(step)),
                     bc2 = 1.0 - std::pow(double(b2), double(step));
        for (size_t e = 0; e < p.size(); ++e) {
          p[e] *= 1.0 - double(lr) * wd;
          m[e] = double(b1) * m[e] + (1.0 - double(b1)) * g[e];
          v[e] = double(b2) * v[e] + (1.0 - double(b2)) * g[e] * g[e];
          p[e] -= double(lr) * (m[e] / bc1) / (std::sqrt(v[e] / bc2) + double(eps));
        }
        const std::string s = std::to_string(i);
        std::string e = close(p, out[3 * i], 1e-5, 1e-6, "param" + s + " vs the AdamW formula in double");
        if (e.empty()) e = close(m, out[3 * i + 1], 1e-5, 1e-7, "m" + s + " vs the formula");
        if (e.empty()) e = close(v, out[3 * i + 2], 1e-5, 1e-7, "v" + s + " vs the formula");
        if (!e.empty()) return e;
      }
      return std::string();
    };
  }
}

// ---------------------------------------------------------------- k-NN
void knn_rows(Table& t) {
  struct KnnCase {
    int64_t m, r, d;
    int k;
    KnnMetric metric;
    int64_t chunk;
    int dup;  // refs[j] = refs[j % dup] for j >= dup (exact ties); 0 = none
    const char* note;
  };
  const KnnCase cases[] = {
      {5, 19, 7, 4, KnnMetric::InnerProduct, 0, 6, "ties"},
      {5, 19, 7, 4, KnnMetric::L2, 7, 6, "ties, chunk 7"},
      {3, 5, 4, 8, KnnMetric::InnerProduct, 0, 0, "k > R: -1 / -inf padding"},
      {3, 5, 4, 8, KnnMetric::L2, 2, 0, "k > R: -1 / +inf padding, chunk 2"},
      {33, 1000, 37, 10, KnnMetric::InnerProduct, 0, 0, "odd sizes"},
      {2, 1500, 8, kKnnMaxK, KnnMetric::L2, 0, 300, "k = kKnnMaxK, ties"},
      {32, 20000, 128, 10, KnnMetric::InnerProduct, 0, 0, "bench"},
  };
  for (const KnnCase& kc : cases) {
    const int64_t m = kc.m, r = kc.r, dd = kc.d;
    const int k = kc.k;
    const KnnMetric metric = kc.metric;
    const int64_t chunk = kc.chunk;
    const int dup = kc.dup;
    const bool ip = metric == KnnMetric::InnerProduct;
    const uint32_t sd = t.seeds(2);
    t.add(
         "knn_topk",
         "q " + std::to_string(m) + "x" + std::to_string(dd) + " refs " + std::to_string(r) + " k " + std::to_string(k) +
             (ip ? " inner product" : " L2") + " (" + kc.note + ")",
         {{"scores", 1e-5f, 1e-5f, false}, {"index"}},
         [=] {
           Tensor q = quantised({m, dd}, sd), refs = quantised({r, dd}, sd + 1);
           float* R = refs.data<float>();
           if (dup)
             for (int64_t j = dup; j < r; ++j) std::copy_n(R + (j % dup) * dd, dd, R + j * dd);
           return V{q, refs};
         },
         [=](const V& in, Device d, int j) {
           Tensor q = on(in[0], d), refs = on(in[1], d), sc = J({m, k}, d, j), ix = J({m, k}, d, j, DType::I32);
           return Launch{{sc, ix}, [=] { GEOLOC_DISPATCH(d, knn_topk, q, refs, k, metric, sc, ix, chunk); }};
         },
         3.0 * m * r * dd, 4.0 * (m * dd + r * dd + 2 * m * k))
        .reference = [=](const V& in, const V& out) -> std::string {
      const auto q = in[0].to_vector(), R = in[1].to_vector();
      const auto sc = out[0].to_vector();
      const auto ix = out[1].to_labels();
      std::vector<std::pair<double, int32_t>> s(static_cast<size_t>(r));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < r; ++j) {
          double v = 0;
          for (int64_t e = 0; e < dd; ++e) {
            const double a = q[i * dd + e], b = R[j * dd + e];
            v += ip ? a * b : (a - b) * (a - b);
          }
          s[j] = {ip ? -v : v, static_cast<int32_t>(j)};  // ascending = best first; ties by smaller index
        }
        std::sort(s.begin(), s.end());
        for (int e = 0; e < k; ++e) {
          const size_t o = static_cast<size_t>(i * k + e);
          const bool pad = e >= r;
          const int32_t want_i = pad ? -1 : s[e].second;
          const double want_s = pad ? (ip ? -INFINITY : INFINITY) : (ip ? -s[e].first : s[e].first);
          if (ix[o] != want_i || static_cast<double>(sc[o]) != want_s) {
            std::ostringstream os;
            os << "query " << i << " rank " << e << ": index " << ix[o] << " score " << sc[o] << ", brute force " << want_i
               << " score " << want_s;
            return os.str();
          }
        }
      }
      return "";
    };
  }
}

// ---------------------------------------------------------------- convert
uint16_t bf16_rne_reference(float f) {  // independent of math::f32_to_bf16: nearest of the two neighbours
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  if ((u & 0xFFFFu) == 0) return lo;
  const uint16_t hi = static_cast<uint16_t>(lo + 1);  // magnitude step up (may become inf)
  auto val = [](uint16_t b) {
    const uint32_t x = static_cast<uint32_t>(b) << 16;
    float v;
    std::memcpy(&v, &x, 4);
    return static_cast<double>(v);
  };
  const double dl = std::fabs(double(f) - val(lo));
  // the value above the largest finite bf16 rounds to inf where it is at least halfway to 2^128
  const double vh = (hi & 0x7FFFu) == 0x7F80u ? std::ldexp(std::signbit(f) ? -1.0 : 1.0, 128) : val(hi);
  const double dh = std::fabs(double(f) - vh);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

void convert_rows(Table& t) {
  // special cases: ties to even (both directions), just above a tie, inf, -0, denormals, NaN, the largest
  // float (rounds to inf), the largest bf16
  const std::vector<float> special = {1.0f,
                                      1.0f + 1.0f / 256,                   // tie, even below: 0x3F80
                                      1.0f + 3.0f / 256,                   // tie, even above: 0x3F82
                                      1.0f + 1.0f / 256 + 1.0f / (1 << 20),  // just above the tie: 0x3F81
                                      -1.0f - 1.0f / 256,
                                      std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(),
                                      -0.0f,
                                      0.0f,
                                      std::numeric_limits<float>::denorm_min(),
                                      1.5e-39f,
                                      std::numeric_limits<float>::quiet_NaN(),
                                      -std::numeric_limits<float>::quiet_NaN(),
                                      std::numeric_limits<float>::max(),
                                      3.3895314e38f,
                                      65504.0f,
                                      0.1f,
                                      -123.456f};
  const int64_t n_rand[] = {1000, 1000003};
  for (int64_t nr : n_rand) {
    const int64_t n = static_cast<int64_t>(special.size()) + nr;
    const uint32_t sd = t.seeds(1);
    const std::string sz = std::to_string(n) + (nr > 1000 ? " (bench)" : " (RNE ties, inf, NaN, denormals, max)");
    auto src_f32 = [=] {
      Tensor x = randn({n}, sd, 100.0f);
      std::copy(special.begin(), special.end(), x.data<float>());
      return x;
    };
    t.add(
         "convert", "f32 -> bf16 " + sz, {{"bf16", 0, 0, false}}, [=] { return V{src_f32()}; },
         [=](const V& in, Device d, int j) {
           Tensor x = on(in[0], d), y = J({n}, d, j, DType::BF16);
           return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
         },
         n, 6.0 * n)
        .reference = [=](const V& in, const V& out) -> std::string {
      const auto x = in[0].to_vector();
      const uint16_t* b = out[0].data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t want = bf16_rne_reference(x[i]);
        const bool nan_ok = std::isnan(x[i]) && (b[i] & 0x7F80u) == 0x7F80u && (b[i] & 0x7Fu) != 0;
        if (b[i] != want && !nan_ok) {
          std::ostringstream o;
          o << "element " << i << " (" << x[i] << "): bf16 0x" << std::hex << b[i] << ", round-to-nearest-even 0x" << want;
          return o.str();
        }
      }
      return "";
    };
    t.add(
         "convert", "bf16 -> f32 " + sz, {{"f32", 0, 0, false}},
         [=] {
           Tensor b = Tensor::empty({n}, DType::BF16);
           cpu::convert(src_f32(), b);
           return V{b};
         },
         [=](const V& in, Device d, int j) {
           Tensor x = on(in[0], d), y = J({n}, d, j);
           return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
         },
         n, 6.0 * n)
        .reference = [=](const V& in, const V& out) -> std::string {
      const uint16_t* b = in[0].data<uint16_t>();
      const auto y = out[0].to_vector();
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, &y[i], 4);
        if (u != static_cast<uint32_t>(b[i]) << 16) return "element " + std::to_string(i) + " is not the bf16 bits << 16";
      }
      return "";
    };
    if (nr > 1000) continue;
    for (DType dt : {DType::F32, DType::BF16})
      t.add(
          "convert", std::string(dtype_name(dt)) + " -> " + dtype_name(dt) + " copy " + std::to_string(n),
          {{"y", 0, 0, false}},
          [=] {
            if (dt == DType::F32) return V{src_f32()};
            Tensor b = Tensor::empty({n}, DType::BF16);
            cpu::convert(src_f32(), b);
            return V{b};
          },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), y = J({n}, d, j, dt);
            return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
          },
          0, 2.0 * n * dtype_size(dt));
  }
}

std::vector<OpRow> build() {
  Table t;
  conv_rows(t);
  batch_norm_rows(t);
  elementwise_rows(t);
  pooling_rows(t);
  linear_rows(t);
  loss_rows(t);
  optim_rows(t);
  knn_rows(t);
  convert_rows(t);
  return std::move(t.rows);
}
}  // namespace

const std::vector<OpRow>& op_table() {
  static const std::vector<OpRow> rows = build();
  return rows;
}

}  // namespace geoloc::optest
