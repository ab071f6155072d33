// The op table's rows of the convolutions and the conv + batch norm + add + ReLU inference fusion (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

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
                    return V{rg(random_tensor(xs, g)), rg(random_tensor(ws, g)), rg(random_tensor({c.co}, g))};
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
          return V{randn(xs, s),          randn(ws, s + 1, 0.3f),     uniform({c.co}, s + 2, 0.5f, 1.5f),
                   randn({c.co}, s + 3),  randn({c.co}, s + 4, 0.2f), uniform({c.co}, s + 5, 0.5f, 2.0f),
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

}  // namespace geoloc::optest::rows
