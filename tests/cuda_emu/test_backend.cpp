// Every backend function whose cuda:: implementation is an own kernel (kernels/*.cu), run under the
// emulator (geoloc_core_emu: Tensors on cuda:0 in emulated device memory, ASan + UBSan) against its cpu::
// twin. Each row's outputs are pre-filled with different junk on the two devices, so an element the kernel
// forgot to write fails. Shapes are chosen per launcher: sizes that are not multiples of the block size,
// one and many blocks, grid-stride loops (the emulated context reports 2 SMs, so grids are capped small),
// every template instantiation reachable without 2^31 elements, and the bf16 paths.
//
// The rows have the shape of the shared op table's rows (tests/ops/op_table.hpp, optest::OpRow: op, label,
// outs, inputs, prepare(in, device, junk)), so that they can be replaced by it: see docs/cuda.md.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>  // the emulator's: cuda_emu::detail::set_launch_observer

#include "geoloc/backend.hpp"
#include "geoloc/detail/math.hpp"
#include "geoloc/tensor.hpp"

using namespace geoloc;

namespace {

// ---------------------------------------------------------------- the rows (op_table.hpp's shape)
struct OutSpec {
  std::string name;
  float rtol = 0.0f, atol = 0.0f;  // F32 / BF16 (compared as float); other dtypes bit for bit
};
struct Launch {
  std::vector<Tensor> outs;
  std::function<void()> call;
};
struct Row {
  std::string op, label;
  std::vector<OutSpec> outs;
  std::function<std::vector<Tensor>()> inputs;
  std::function<Launch(const std::vector<Tensor>& in, Device d, int junk)> prepare;
  std::string name() const { return op + " [" + label + "]"; }
};

Device emu() { return Device::cuda(0); }

Tensor uniform(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(s, v);
}
Tensor labels(int64_t n, int c, uint32_t seed, bool some_ignored) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = (some_ignored && i % 5 == 3) ? -1 : int32_t(rng() % unsigned(c));
  return Tensor::from_labels(v);
}
Tensor to_bf16(const Tensor& f) {
  Tensor b = Tensor::empty(f.shape(), DType::BF16);
  cpu::convert(f, b);
  return b;
}
Tensor to_f32(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  if (h.dtype() == DType::F32) return h;
  Tensor f = Tensor::empty(h.shape(), DType::F32);
  cpu::convert(h, f);
  return f;
}

// Junk: each junk number its own pattern, none a plausible result.
Tensor junk(const Shape& s, DType t, Device d, int j) {
  Tensor h = Tensor::empty(s, t);
  if (h.nbytes()) {
    if (t == DType::F32) {
      const float v[] = {std::numeric_limits<float>::quiet_NaN(), -7.7e29f, 3.3e38f};
      std::fill_n(h.data<float>(), h.numel(), v[j % 3]);
    } else {
      const int b[] = {0xA5, 0x5A, 0x7F};
      std::memset(h.raw(), b[j % 3], h.nbytes());
    }
  }
  return h.to(d);
}
// A private copy on d (for in-place outputs: axpy's dst, optimiser state).
Tensor copy_on(const Tensor& t, Device d) {
  Tensor c = Tensor::empty(t.shape(), t.dtype(), d);
  c.copy_(t);
  return c;
}

std::vector<Row>& table() {
  static std::vector<Row> rows;
  return rows;
}
void add(Row r) { table().push_back(std::move(r)); }

// ---------------------------------------------------------------- elementwise
// Sizes for the grid-stride map kernel (256 threads, grid capped at 32 blocks per SM = 64 blocks here):
// one partial block, exactly one block, one more than a block, several blocks, and a grid-stride size.
const int64_t kMapSizes[] = {1, 256, 257, 1000, 16384 + 77};

// f32 rows compare with the CPU exactly; bf16 rows: the CPU twin computes in f32 on the bf16-rounded
// inputs and rounds once, as the kernels do.
using Unary = std::function<void(const std::vector<Tensor>& in, const std::vector<Tensor>& out)>;
void unary_rows(const std::string& op, int n_in, int n_out, bool in_place, Unary cpu_f, Unary cuda_f, bool bf16,
                float rtol = 0.0f) {
  for (int64_t n : kMapSizes) {
    Row r;
    r.op = op;
    r.label = std::string(bf16 ? "bf16 " : "f32 ") + std::to_string(n);
    for (int o = 0; o < n_out; ++o) r.outs.push_back({"out" + std::to_string(o), rtol, 0.0f});
    r.inputs = [n, n_in] {
      std::vector<Tensor> in;
      for (int i = 0; i < n_in; ++i) in.push_back(uniform({n}, uint32_t(17 * n + i)));
      return in;
    };
    r.prepare = [=](const std::vector<Tensor>& in, Device d, int j) {
      Launch l;
      std::vector<Tensor> args;
      const bool cpu_side = d.is_cpu();
      for (const Tensor& t : in) {
        Tensor v = bf16 ? to_bf16(t) : t;
        if (bf16 && cpu_side) v = to_f32(v);  // the rounded values, in f32 for the CPU twin
        args.push_back(v.to(d));
      }
      const DType dt = bf16 && !cpu_side ? DType::BF16 : DType::F32;
      for (int o = 0; o < n_out; ++o)
        l.outs.push_back(in_place ? copy_on(args.back(), d) : junk({n}, dt, d, j));
      if (in_place) args.pop_back();
      auto outs = l.outs;
      l.call = [=] {
        (cpu_side ? cpu_f : cuda_f)(args, outs);
        if (bf16 && cpu_side)
          for (Tensor o : outs) o.copy_(to_f32(to_bf16(o)));  // one rounding of the f32 result
      };
      return l;
    };
    add(std::move(r));
  }
}

void elementwise_rows() {
  for (bool b : {false, true}) {
    unary_rows("relu_forward", 1, 1, false, [](auto& i, auto& o) { cpu::relu_forward(i[0], o[0]); },
               [](auto& i, auto& o) { cuda::relu_forward(i[0], o[0]); }, b);
    unary_rows("relu_backward", 2, 1, false, [](auto& i, auto& o) { cpu::relu_backward(i[0], i[1], o[0]); },
               [](auto& i, auto& o) { cuda::relu_backward(i[0], i[1], o[0]); }, b);
    unary_rows("add_forward", 2, 1, false, [](auto& i, auto& o) { cpu::add_forward(i[0], i[1], o[0]); },
               [](auto& i, auto& o) { cuda::add_forward(i[0], i[1], o[0]); }, b);
    unary_rows("add_relu_forward", 2, 1, false, [](auto& i, auto& o) { cpu::add_relu_forward(i[0], i[1], o[0]); },
               [](auto& i, auto& o) { cuda::add_relu_forward(i[0], i[1], o[0]); }, b);
    // axpy: dst (the second input) is updated in place
    unary_rows("axpy", 2, 1, true, [](auto& i, auto& o) { cpu::axpy(0.75f, i[0], o[0]); },
               [](auto& i, auto& o) { cuda::axpy(0.75f, i[0], o[0]); }, b, b ? 8e-3f : 0.0f);
    unary_rows("scale", 1, 1, false, [](auto& i, auto& o) { cpu::scale(i[0], -1.5f, o[0]); },
               [](auto& i, auto& o) { cuda::scale(i[0], -1.5f, o[0]); }, b);
    unary_rows("fill", 0, 1, false, [](auto&, auto& o) { cpu::fill(o[0], 0.3f); },
               [](auto&, auto& o) { cuda::fill(o[0], 0.3f); }, b);
  }
  unary_rows("mul_scalar", 1, 1, false,
             [](auto& i, auto& o) { cpu::mul_scalar(i[0], Tensor::full({1}, -2.5f), o[0]); },
             [](auto& i, auto& o) { cuda::mul_scalar(i[0], Tensor::full({1}, -2.5f, emu()), o[0]); }, false);
  unary_rows("dropout_backward", 1, 1, false,
             [](auto& i, auto& o) {
               Tensor m = Tensor::empty(i[0].shape(), DType::U8), y = Tensor::empty(i[0].shape());
               cpu::dropout_forward(i[0], m, y, 0.3f, 99);
               cpu::dropout_backward(i[0], m, o[0], 0.3f);
             },
             [](auto& i, auto& o) {
               Tensor m = Tensor::empty(i[0].shape(), DType::U8, emu()), y = Tensor::empty(i[0].shape(), DType::F32, emu());
               cuda::dropout_forward(i[0], m, y, 0.3f, 99);
               cuda::dropout_backward(i[0], m, o[0], 0.3f);
             },
             false);
  // dropout_forward: y and the U8 mask
  for (int64_t n : kMapSizes) {
    add({"dropout_forward", "f32 " + std::to_string(n), {{"mask"}, {"y"}},
         [n] { return std::vector<Tensor>{uniform({n}, 5)}; },
         [n](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), m = junk({n}, DType::U8, d, j), y = junk({n}, DType::F32, d, j);
           l.outs = {m, y};
           l.call = [=] {
             if (d.is_cpu()) cpu::dropout_forward(x, m, y, 0.25f, 1234567);
             else cuda::dropout_forward(x, m, y, 0.25f, 1234567);
           };
           return l;
         }});
  }
  // convert: f32 -> bf16 (NaN, infinities and ties included), bf16 -> f32, and the same-dtype copy
  for (int64_t n : kMapSizes) {
    for (int mode = 0; mode < 3; ++mode) {
      const char* lab[] = {"f32->bf16 ", "bf16->f32 ", "f32->f32 "};
      add({"convert", lab[mode] + std::to_string(n), {{"dst"}},
           [n] {
             Tensor x = uniform({n}, 9, -3.0f, 3.0f);
             float* p = x.data<float>();
             if (n > 3) p[0] = std::numeric_limits<float>::quiet_NaN(), p[1] = INFINITY, p[2] = 1.00390625f;
             return std::vector<Tensor>{x};
           },
           [n, mode](const std::vector<Tensor>& in, Device d, int j) {
             Launch l;
             Tensor src = (mode == 1 ? to_bf16(in[0]) : in[0]).to(d);
             Tensor dst = junk({n}, mode == 0 ? DType::BF16 : DType::F32, d, j);
             l.outs = {dst};
             l.call = [=] {
               if (d.is_cpu()) cpu::convert(src, dst);
               else cuda::convert(src, dst);
             };
             return l;
           }});
    }
  }
  // reduce_sum: one block of 1024 threads, strided; fewer elements than threads, and many more
  for (int64_t n : {int64_t(1), int64_t(31), int64_t(1000), int64_t(5000)}) {
    add({"reduce_sum", std::to_string(n), {{"y", 1e-6f, 1e-6f}},
         [n] { return std::vector<Tensor>{uniform({n}, 3)}; },
         [](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), y = junk({1}, DType::F32, d, j);
           l.outs = {y};
           l.call = [=] {
             if (d.is_cpu()) cpu::reduce_sum(x, 0.5f, y);
             else cuda::reduce_sum(x, 0.5f, y);
           };
           return l;
         }});
  }
}

// ---------------------------------------------------------------- pooling
void pooling_rows() {
  struct P {
    Shape x;
    Pool2dArgs a;
  };
  // 2x2/2, 3x3/2 pad 1 (overlapping windows: atomics in the backward), a size with a grid-stride loop
  for (const P& p : {P{{2, 6, 5, 3}, {2, 2, 0}}, P{{1, 7, 7, 5}, {3, 2, 1}}, P{{3, 20, 18, 33}, {3, 2, 1}}}) {
    const int64_t ho = conv_out_size(p.x[1], p.a.kernel, p.a.stride, p.a.pad);
    const int64_t wo = conv_out_size(p.x[2], p.a.kernel, p.a.stride, p.a.pad);
    const Shape ys{p.x[0], ho, wo, p.x[3]};
    const std::string lab = p.x.str() + " k" + std::to_string(p.a.kernel) + " s" + std::to_string(p.a.stride) +
                            " p" + std::to_string(p.a.pad);
    add({"max_pool2d_forward", lab, {{"y"}, {"argmax"}}, [p] { return std::vector<Tensor>{uniform(p.x, 21)}; },
         [p, ys](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), y = junk(ys, DType::F32, d, j), am = junk(ys, DType::I32, d, j);
           l.outs = {y, am};
           l.call = [=] {
             if (d.is_cpu()) cpu::max_pool2d_forward(x, y, am, p.a);
             else cuda::max_pool2d_forward(x, y, am, p.a);
           };
           return l;
         }});
    add({"max_pool2d_backward", lab, {{"dx", 1e-6f, 1e-6f}},
         [p, ys] { return std::vector<Tensor>{uniform(p.x, 22), uniform(ys, 23)}; },
         [p, ys](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor am = Tensor::empty(ys, DType::I32);
           cpu::max_pool2d_forward(in[0], Tensor::empty(ys), am, p.a);
           Tensor dy = in[1].to(d), a = am.to(d), dx = junk(p.x, DType::F32, d, j);
           l.outs = {dx};
           l.call = [=] {
             if (d.is_cpu()) cpu::max_pool2d_backward(dy, a, dx);
             else cuda::max_pool2d_backward(dy, a, dx);
           };
           return l;
         }});
    add({"global_avg_pool_forward", lab, {{"y", 1e-6f, 1e-6f}}, [p] { return std::vector<Tensor>{uniform(p.x, 24)}; },
         [p](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), y = junk({p.x[0], p.x[3]}, DType::F32, d, j);
           l.outs = {y};
           l.call = [=] {
             if (d.is_cpu()) cpu::global_avg_pool_forward(x, y);
             else cuda::global_avg_pool_forward(x, y);
           };
           return l;
         }});
    add({"global_avg_pool_backward", lab, {{"dx", 1e-6f, 1e-6f}},
         [p] { return std::vector<Tensor>{uniform({p.x[0], p.x[3]}, 25)}; },
         [p](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor dy = in[0].to(d), dx = junk(p.x, DType::F32, d, j);
           l.outs = {dx};
           l.call = [=] {
             if (d.is_cpu()) cpu::global_avg_pool_backward(dy, dx);
             else cuda::global_avg_pool_backward(dy, dx);
           };
           return l;
         }});
  }
}

// ---------------------------------------------------------------- batch norm
// Shapes: C % 4 == 0 (scale_shift_act<uint32_t, true>, float4) and C odd (<uint32_t, false>); one row split
// and many (the emulated 2 SMs give 16 / ceil(C/32) splits); C > 32 (several channel blocks), C > 256
// (several finalize blocks). The <int64_t, *> instantiations need n >= 2^31 elements: not run (see report).
const Shape kBnShapes[] = {{3, 5}, {2, 3, 3, 8}, {4, 5, 7, 12}, {2, 9, 7, 37}, {1, 3, 2, 260}};
const OutSpec bn_out(const char* n) { return {n, 2e-5f, 2e-5f}; }

std::vector<Tensor> bn_inputs(const Shape& s, uint32_t seed) {
  const int64_t C = s[s.ndim() - 1];
  return {uniform(s, seed, -2, 3),   uniform({C}, seed + 1, 0.5f, 1.5f), uniform({C}, seed + 2),
          uniform({C}, seed + 3),    uniform({C}, seed + 4, 0.5f, 2.0f), uniform(s, seed + 5),
          uniform(s, seed + 6)};  // x, gamma, beta, running_mean, running_var, residual / dy, dy2
}

void batch_norm_rows() {
  for (const Shape& s : kBnShapes) {
    const int64_t C = s[s.ndim() - 1];
    for (int variant = 0; variant < 3; ++variant) {  // plain, +residual +relu, relu only
      const bool fused = variant > 0, res = variant == 1, relu = variant > 0;
      const std::string lab = s.str() + (res ? " +res" : "") + (relu ? " relu" : "");
      add({fused ? "batch_norm_act_forward_train" : "batch_norm_forward_train", lab,
           {bn_out("y"), bn_out("running_mean"), bn_out("running_var"), bn_out("save_mean"), bn_out("save_invstd")},
           [s] { return bn_inputs(s, 31); },
           [=](const std::vector<Tensor>& in, Device d, int j) {
             Launch l;
             Tensor x = in[0].to(d), g = in[1].to(d), b = in[2].to(d), r = res ? in[5].to(d) : Tensor();
             Tensor rm = copy_on(in[3], d), rv = copy_on(in[4], d);
             Tensor y = junk(s, DType::F32, d, j), sm = junk({C}, DType::F32, d, j), si = junk({C}, DType::F32, d, j);
             l.outs = {y, rm, rv, sm, si};
             l.call = [=] {
               if (!fused) {
                 if (d.is_cpu()) cpu::batch_norm_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, y, sm, si);
                 else cuda::batch_norm_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, y, sm, si);
               } else if (d.is_cpu()) {
                 cpu::batch_norm_act_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, r, relu, y, sm, si);
               } else {
                 cuda::batch_norm_act_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, r, relu, y, sm, si);
               }
             };
             return l;
           }});
    }
    add({"batch_norm_forward_eval", s.str(), {bn_out("y")}, [s] { return bn_inputs(s, 41); },
         [=](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), g = in[1].to(d), b = in[2].to(d), rm = in[3].to(d), rv = in[4].to(d);
           Tensor y = junk(s, DType::F32, d, j);
           l.outs = {y};
           l.call = [=] {
             if (d.is_cpu()) cpu::batch_norm_forward_eval(x, g, b, rm, rv, 1e-5f, y);
             else cuda::batch_norm_forward_eval(x, g, b, rm, rv, 1e-5f, y);
           };
           return l;
         }});
    for (int variant = 0; variant < 2; ++variant) {  // all outputs; dx only (dgamma, dbeta undefined)
      add({"batch_norm_backward", s.str() + (variant ? " dx only" : ""),
           variant ? std::vector<OutSpec>{bn_out("dx")} : std::vector<OutSpec>{bn_out("dx"), bn_out("dgamma"), bn_out("dbeta")},
           [s] { return bn_inputs(s, 51); },
           [=](const std::vector<Tensor>& in, Device d, int j) {
             Launch l;
             // the saved statistics from the CPU forward (both devices get the same)
             Tensor sm = Tensor::empty({C}), si = Tensor::empty({C});
             cpu::batch_norm_forward_train(in[0], in[1], in[2], in[3].clone(), in[4].clone(), 0.1f, 1e-5f,
                                           Tensor::empty(s), sm, si);
             Tensor x = in[0].to(d), g = in[1].to(d), dy = in[5].to(d), m = sm.to(d), is = si.to(d);
             Tensor dx = junk(s, DType::F32, d, j);
             Tensor dg = variant ? Tensor() : junk({C}, DType::F32, d, j), db = variant ? Tensor() : junk({C}, DType::F32, d, j);
             l.outs = variant ? std::vector<Tensor>{dx} : std::vector<Tensor>{dx, dg, db};
             l.call = [=] {
               if (d.is_cpu()) cpu::batch_norm_backward(dy, x, g, m, is, dx, dg, db);
               else cuda::batch_norm_backward(dy, x, g, m, is, dx, dg, db);
             };
             return l;
           }});
    }
    for (int variant = 0; variant < 3; ++variant) {  // relu + residual, relu only, residual without relu
      const bool relu = variant < 2, res = variant != 1;
      add({"batch_norm_act_backward", s.str() + (res ? " +res" : "") + (relu ? " relu" : ""),
           res ? std::vector<OutSpec>{bn_out("dx"), bn_out("dgamma"), bn_out("dbeta"), bn_out("dresidual")}
               : std::vector<OutSpec>{bn_out("dx"), bn_out("dgamma"), bn_out("dbeta")},
           [s] { return bn_inputs(s, 61); },
           [=](const std::vector<Tensor>& in, Device d, int j) {
             Launch l;
             Tensor sm = Tensor::empty({C}), si = Tensor::empty({C}), yh = Tensor::empty(s);
             cpu::batch_norm_act_forward_train(in[0], in[1], in[2], in[3].clone(), in[4].clone(), 0.1f, 1e-5f,
                                               res ? in[6] : Tensor(), relu, yh, sm, si);
             Tensor dy = in[5].to(d), x = in[0].to(d), y = yh.to(d), g = in[1].to(d), b = in[2].to(d);
             Tensor m = sm.to(d), is = si.to(d);
             Tensor dx = junk(s, DType::F32, d, j), dg = junk({C}, DType::F32, d, j), db = junk({C}, DType::F32, d, j);
             Tensor dr = res ? junk(s, DType::F32, d, j) : Tensor();
             l.outs = res ? std::vector<Tensor>{dx, dg, db, dr} : std::vector<Tensor>{dx, dg, db};
             l.call = [=] {
               if (d.is_cpu()) cpu::batch_norm_act_backward(dy, x, y, g, b, m, is, relu, dx, dg, db, dr);
               else cuda::batch_norm_act_backward(dy, x, y, g, b, m, is, relu, dx, dg, db, dr);
             };
             return l;
           }});
    }
  }
  // conv2d_bn_act_forward: the convolution is a host stand-in (cuDNN), its epilogue the emulated kernels
  for (int variant = 0; variant < 2; ++variant) {
    const bool res = variant == 0;
    const int64_t co = variant ? 7 : 8;
    const Shape xs{2, 6, 5, 3}, ws{co, 3, 3, 3}, ys{2, 6, 5, co};
    add({"conv2d_bn_act_forward", std::string("3x3 pad 1, Co ") + std::to_string(co) + (res ? " +res relu" : ""),
         {bn_out("y")},
         [=] {
           return std::vector<Tensor>{uniform(xs, 71), uniform(ws, 72), uniform({co}, 73, 0.5f, 1.5f),
                                      uniform({co}, 74), uniform({co}, 75), uniform({co}, 76, 0.5f, 2.0f),
                                      uniform(ys, 77)};
         },
         [=](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           std::vector<Tensor> a;
           for (const Tensor& t : in) a.push_back(t.to(d));
           Tensor y = junk(ys, DType::F32, d, j);
           l.outs = {y};
           const Tensor r = res ? a[6] : Tensor();
           l.call = [=] {
             if (d.is_cpu()) cpu::conv2d_bn_act_forward(a[0], a[1], a[2], a[3], a[4], a[5], 1e-5f, r, res, y, {1, 1});
             else cuda::conv2d_bn_act_forward(a[0], a[1], a[2], a[3], a[4], a[5], 1e-5f, r, res, y, {1, 1});
           };
           return l;
         }});
  }
}

// ---------------------------------------------------------------- losses
void loss_rows() {
  // (N, C): one row; rows narrower than the 256 threads; C > 256; C >= 8192 (the 1024-thread blocks)
  struct NC {
    int64_t n, c;
  };
  for (const NC& s : {NC{1, 3}, NC{7, 10}, NC{5, 300}, NC{2, 8200}}) {
    const std::string lab = std::to_string(s.n) + "x" + std::to_string(s.c);
    add({"cross_entropy_hard", lab + " (label -1 every 5th)", {{"loss", 1e-5f, 1e-5f}, {"dlogits", 1e-5f, 1e-6f}},
         [s] { return std::vector<Tensor>{uniform({s.n, s.c}, 81, -4, 4), labels(s.n, int(s.c), 82, true)}; },
         [s](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), y = in[1].to(d), loss = junk({s.n}, DType::F32, d, j),
                  dl = junk({s.n, s.c}, DType::F32, d, j);
           l.outs = {loss, dl};
           l.call = [=] {
             if (d.is_cpu()) cpu::cross_entropy_hard(x, y, loss, dl, 0.5f);
             else cuda::cross_entropy_hard(x, y, loss, dl, 0.5f);
           };
           return l;
         }});
    add({"cross_entropy_soft", lab + " (one zero row)", {{"loss", 1e-5f, 1e-5f}, {"dlogits", 1e-5f, 1e-6f}},
         [s] {
           Tensor t = uniform({s.n, s.c}, 84, 0, 1);
           float* p = t.data<float>();
           for (int64_t r = 0; r < s.n; ++r) {
             double sum = 0;
             for (int64_t c = 0; c < s.c; ++c) sum += p[r * s.c + c];
             for (int64_t c = 0; c < s.c; ++c) p[r * s.c + c] = r == 1 ? 0.0f : float(p[r * s.c + c] / sum);
           }
           return std::vector<Tensor>{uniform({s.n, s.c}, 83, -4, 4), t};
         },
         [s](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), t = in[1].to(d), loss = junk({s.n}, DType::F32, d, j),
                  dl = junk({s.n, s.c}, DType::F32, d, j);
           l.outs = {loss, dl};
           l.call = [=] {
             if (d.is_cpu()) cpu::cross_entropy_soft(x, t, loss, dl, 2.0f);
             else cuda::cross_entropy_soft(x, t, loss, dl, 2.0f);
           };
           return l;
         }});
  }
  // multihead: 18 heads (two launches of up to 16), mixed hard/soft, different N and C
  add({"cross_entropy_multihead", "18 heads, mixed hard/soft, N 1..9, C 2..40", {},
       [] {
         std::vector<Tensor> in;
         for (int h = 0; h < 18; ++h) {
           const int64_t n = 1 + h % 9, c = 2 + (h * 7) % 39;
           in.push_back(uniform({n, c}, 90 + h, -3, 3));
           if (h % 3 == 2) {
             Tensor t = uniform({n, c}, 190 + h, 0, 1);
             in.push_back(t);
           } else {
             in.push_back(labels(n, int(c), 290 + h, true));
           }
         }
         return in;
       },
       [](const std::vector<Tensor>& in, Device d, int j) {
         Launch l;
         std::vector<CrossEntropyHead> heads;
         for (size_t h = 0; h < in.size() / 2; ++h) {
           const Tensor& x = in[2 * h];
           CrossEntropyHead hd;
           hd.logits = x.to(d);
           (in[2 * h + 1].dtype() == DType::I32 ? hd.labels : hd.targets) = in[2 * h + 1].to(d);
           hd.loss = junk({x.dim(0)}, DType::F32, d, j);
           hd.dlogits = junk(x.shape(), DType::F32, d, j);
           hd.grad_scale = 1.0f / float(h + 1);
           l.outs.push_back(hd.loss);
           l.outs.push_back(hd.dlogits);
           heads.push_back(hd);
         }
         l.call = [=] {
           if (d.is_cpu()) cpu::cross_entropy_multihead(heads);
           else cuda::cross_entropy_multihead(heads);
         };
         return l;
       }});
  for (Row& r : table())
    if (r.op == "cross_entropy_multihead")
      for (int h = 0; h < 18; ++h)
        r.outs.push_back({"loss" + std::to_string(h), 1e-5f, 1e-5f}), r.outs.push_back({"dlogits" + std::to_string(h), 1e-5f, 1e-6f});
  // haversine: [N,2] and [N,3] predictions, with and without the gradient, N across several blocks
  for (int64_t n : {int64_t(1), int64_t(300), int64_t(5000)}) {
    for (int pd : {2, 3}) {
      for (bool grad : {true, false}) {
        add({"haversine_loss", "[" + std::to_string(n) + "," + std::to_string(pd) + "]" + (grad ? " +dpred" : ""),
             grad ? std::vector<OutSpec>{{"loss", 1e-5f, 1e-6f}, {"dpred", 1e-4f, 1e-5f}}
                  : std::vector<OutSpec>{{"loss", 1e-5f, 1e-6f}},
             [n, pd] { return std::vector<Tensor>{uniform({n, pd}, 101, -1.5f, 1.5f), uniform({n, 2}, 102, -1.5f, 1.5f)}; },
             [n, pd, grad](const std::vector<Tensor>& in, Device d, int j) {
               Launch l;
               Tensor p = in[0].to(d), t = in[1].to(d), loss = junk({n}, DType::F32, d, j);
               Tensor dp = grad ? junk({n, pd}, DType::F32, d, j) : Tensor();
               l.outs = grad ? std::vector<Tensor>{loss, dp} : std::vector<Tensor>{loss};
               l.call = [=] {
                 if (d.is_cpu()) cpu::haversine_loss(p, t, loss, dp, 0.25f);
                 else cuda::haversine_loss(p, t, loss, dp, 0.25f);
               };
               return l;
             }});
      }
    }
  }
}

// ---------------------------------------------------------------- optimisers
// Slots of sizes across the 4096-element chunks (one chunk, a partial one, several), one without a
// gradient (skipped), one empty; 200 slots = two launches of up to 192 tensors.
std::vector<int64_t> slot_sizes(bool many) {
  if (!many) return {1, 4096, 4097, 10000, 0, 37};
  std::vector<int64_t> v;
  for (int i = 0; i < 200; ++i) v.push_back(1 + (i * 13) % 50);
  return v;
}

void optim_rows() {
  for (int variant = 0; variant < 5; ++variant) {
    // sgd: momentum first step, momentum later step, nesterov, no momentum; adamw
    const bool adam = variant == 4, many = variant == 1;
    const std::vector<int64_t> sizes = slot_sizes(many);
    const char* labs[] = {"momentum, first step", "momentum, 200 slots", "nesterov", "no momentum", "step 3"};
    const std::string op = adam ? "adamw_step" : "sgd_step";
    Row r{op, labs[variant], {}, nullptr, nullptr};
    for (size_t i = 0; i < sizes.size(); ++i) {
      r.outs.push_back({"param" + std::to_string(i), 1e-6f, 1e-7f});
      if (variant != 3) r.outs.push_back({"state1_" + std::to_string(i), 1e-6f, 1e-7f});
      if (adam) r.outs.push_back({"state2_" + std::to_string(i), 1e-6f, 1e-7f});
    }
    r.inputs = [sizes] {
      std::vector<Tensor> in;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const Shape s{sizes[i]};
        in.push_back(uniform(s, uint32_t(200 + i)));
        in.push_back(uniform(s, uint32_t(400 + i)));
        in.push_back(uniform(s, uint32_t(600 + i)));
        in.push_back(uniform(s, uint32_t(800 + i), 0.0f, 1.0f));
      }
      return in;
    };
    r.prepare = [=](const std::vector<Tensor>& in, Device d, int) {
      Launch l;
      std::vector<OptimSlot> slots;
      for (size_t i = 0; i < sizes.size(); ++i) {
        OptimSlot s;
        s.param = copy_on(in[4 * i], d);
        s.grad = in[4 * i + 1].to(d);
        if (variant != 3) s.state1 = copy_on(in[4 * i + 2], d);
        if (adam) s.state2 = copy_on(in[4 * i + 3], d);
        s.weight_decay = i % 2 ? 0.01f : 0.0f;
        l.outs.push_back(s.param);
        if (variant != 3) l.outs.push_back(s.state1);
        if (adam) l.outs.push_back(s.state2);
        slots.push_back(s);
      }
      // a slot without a gradient is skipped by both backends
      OptimSlot nog;
      nog.param = copy_on(in[0], d);
      l.outs.push_back(nog.param);
      slots.insert(slots.begin() + 1, nog);
      l.call = [=] {
        if (adam) {
          if (d.is_cpu()) cpu::adamw_step(slots, 1e-2f, 0.9f, 0.999f, 1e-8f, 3);
          else cuda::adamw_step(slots, 1e-2f, 0.9f, 0.999f, 1e-8f, 3);
        } else {
          const float mom = variant == 3 ? 0.0f : 0.9f;
          if (d.is_cpu()) cpu::sgd_step(slots, 0.1f, mom, 0.1f, variant == 2, variant == 0);
          else cuda::sgd_step(slots, 0.1f, mom, 0.1f, variant == 2, variant == 0);
        }
      };
      return l;
    };
    r.outs.push_back({"param (no grad)"});
    add(std::move(r));
  }
}

// ---------------------------------------------------------------- k-NN and linear (GEMM stand-in)
void knn_linear_rows() {
  struct K {
    int64_t m, r, d;
    int k;
    int64_t chunk;
  };
  // several chunks (merges across launches), a chunk larger than the 4096-candidate buffer (merges inside
  // the kernel), R < k (missing entries), R == 0, k = kKnnMaxK
  for (const K& c : {K{3, 50, 8, 5, 16}, K{2, 5000, 4, 7, 0}, K{4, 6, 3, 10, 0}, K{2, 0, 4, 3, 0},
                     K{1, 1500, 2, kKnnMaxK, 700}, K{5, 300, 16, 1, 64}}) {
    for (KnnMetric metric : {KnnMetric::InnerProduct, KnnMetric::L2}) {
      const std::string lab = std::string(metric == KnnMetric::L2 ? "L2 " : "IP ") + "M" + std::to_string(c.m) +
                              " R" + std::to_string(c.r) + " D" + std::to_string(c.d) + " k" + std::to_string(c.k) +
                              " chunk " + std::to_string(c.chunk);
      add({"knn_topk", lab, {{"scores", 1e-5f, 1e-5f}, {"index"}},
           [c] {
             // coarse values: exact ties between references, broken by the smaller index
             Tensor q = uniform({c.m, c.d}, 111), r = uniform({c.r, c.d}, 112);
             float* rp = r.data<float>();
             for (int64_t i = 0; i < r.numel(); ++i) rp[i] = std::round(rp[i] * 4.0f) / 4.0f;
             float* qp = q.data<float>();
             for (int64_t i = 0; i < q.numel(); ++i) qp[i] = std::round(qp[i] * 4.0f) / 4.0f;
             return std::vector<Tensor>{q, r};
           },
           [c, metric](const std::vector<Tensor>& in, Device d, int j) {
             Launch l;
             Tensor q = in[0].to(d), r = in[1].to(d), s = junk({c.m, c.k}, DType::F32, d, j),
                    ix = junk({c.m, c.k}, DType::I32, d, j);
             l.outs = {s, ix};
             l.call = [=] {
               if (d.is_cpu()) cpu::knn_topk(q, r, c.k, metric, s, ix, c.chunk);
               else cuda::knn_topk(q, r, c.k, metric, s, ix, c.chunk);
             };
             return l;
           }});
    }
  }
  // linear: src/cuda/linear.cpp on the host GEMM stand-in; dbias through column_sum (channel_reduce +
  // colsum_finalize kernels)
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(300)}) {
    const int64_t din = 19, c = 45;
    add({"linear_forward", std::to_string(n) + "x" + std::to_string(din) + " -> " + std::to_string(c),
         {{"y", 1e-5f, 1e-5f}},
         [=] { return std::vector<Tensor>{uniform({n, din}, 121), uniform({c, din}, 122), uniform({c}, 123)}; },
         [=](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor x = in[0].to(d), w = in[1].to(d), b = in[2].to(d), y = junk({n, c}, DType::F32, d, j);
           l.outs = {y};
           l.call = [=] {
             if (d.is_cpu()) cpu::linear_forward(x, w, b, y);
             else cuda::linear_forward(x, w, b, y);
           };
           return l;
         }});
    add({"linear_backward", std::to_string(n) + "x" + std::to_string(din) + " -> " + std::to_string(c),
         {{"dx", 1e-5f, 1e-5f}, {"dw", 1e-5f, 1e-5f}, {"dbias", 1e-5f, 1e-5f}},
         [=] { return std::vector<Tensor>{uniform({n, c}, 124), uniform({n, din}, 125), uniform({c, din}, 126)}; },
         [=](const std::vector<Tensor>& in, Device d, int j) {
           Launch l;
           Tensor dy = in[0].to(d), x = in[1].to(d), w = in[2].to(d);
           Tensor dx = junk({n, din}, DType::F32, d, j), dw = junk({c, din}, DType::F32, d, j),
                  db = junk({c}, DType::F32, d, j);
           l.outs = {dx, dw, db};
           l.call = [=] {
             if (d.is_cpu()) cpu::linear_backward(dy, x, w, dx, dw, db);
             else cuda::linear_backward(dy, x, w, dx, dw, db);
           };
           return l;
         }});
  }
}

const std::vector<Row>& rows() {
  static std::once_flag once;
  std::call_once(once, [] {
    elementwise_rows();
    pooling_rows();
    batch_norm_rows();
    loss_rows();
    optim_rows();
    knn_linear_rows();
  });
  return table();
}

// ---------------------------------------------------------------- running and comparing
std::vector<Tensor> run(const Row& r, const std::vector<Tensor>& in, Device d, int j) {
  Launch l = r.prepare(in, d, j);
  l.call();
  std::vector<Tensor> out;
  for (const Tensor& t : l.outs) out.push_back(t.to(Device::cpu()));
  return out;
}

// "" when got matches ref within spec.
std::string compare(const OutSpec& spec, const Tensor& ref, const Tensor& got) {
  std::ostringstream o;
  if (ref.shape() != got.shape()) return spec.name + ": shape " + got.str() + ", the CPU's " + ref.str();
  if (ref.dtype() == DType::F32 || ref.dtype() == DType::BF16) {
    const Tensor a = to_f32(got), b = to_f32(ref);
    const float *pa = a.data<float>(), *pb = b.data<float>();
    int64_t bad = 0, worst = -1;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double diff = std::fabs(double(pa[i]) - double(pb[i]));
      const bool ok = (std::isinf(pb[i]) && pa[i] == pb[i]) || (std::isnan(pa[i]) && std::isnan(pb[i])) ||
                      (!std::isnan(pa[i]) && diff <= spec.atol + spec.rtol * std::fabs(double(pb[i])));
      if (!ok && bad++ == 0) worst = i;
    }
    if (!bad) return "";
    o << spec.name << ": " << bad << " of " << a.numel() << " elements differ (rtol " << spec.rtol << ", atol "
      << spec.atol << "); first [" << worst << "]: emulated " << pa[worst] << ", the CPU's " << pb[worst];
    return o.str();
  }
  if (std::memcmp(ref.raw(), got.raw(), ref.nbytes()) == 0) return "";
  return spec.name + ": differs from the CPU's (bitwise, " + dtype_name(ref.dtype()) + ")";
}

// Launch statistics (kernel expression -> launches, and whether one had several blocks / one block).
struct KernelStats {
  int64_t launches = 0;
  bool one_block = false, many_blocks = false;
};
std::map<std::string, KernelStats>& kernel_stats() {
  static std::map<std::string, KernelStats> m;
  return m;
}
void observe(const cuda_emu::detail::LaunchConfig& cfg) {
  // CUDA_EMU_LAUNCH stringifies the kernel expression as written at the launch (map_kernel's functor
  // type is deduced, so its ~20 instantiations count as one kernel here)
  KernelStats& s = kernel_stats()[cfg.kernel];
  ++s.launches;
  const uint64_t blocks = uint64_t(cfg.grid.x) * cfg.grid.y * cfg.grid.z;
  (blocks == 1 ? s.one_block : s.many_blocks) = true;
}

}  // namespace

TEST_CASE("every own CUDA kernel, emulated, matches the CPU backend (ASan + UBSan)") {
  REQUIRE(cuda::available());
  cuda_emu::detail::set_launch_observer(&observe);
  int64_t cases = 0, failed = 0;
  std::set<std::string> ops;
  for (const Row& r : rows()) {
    INFO(r.name());
    const std::vector<Tensor> in = r.inputs();
    std::vector<Tensor> ref, got;
    try {
      ref = run(r, in, Device::cpu(), 0);
      got = run(r, in, emu(), 1);
    } catch (const std::exception& e) {
      FAIL_CHECK("threw: " << e.what());
      ++failed;
      continue;
    }
    REQUIRE(ref.size() == got.size());
    REQUIRE(r.outs.size() == ref.size());
    bool ok = true;
    for (size_t o = 0; o < ref.size(); ++o) {
      const std::string why = compare(r.outs[o], ref[o], got[o]);
      if (!why.empty()) {
        FAIL_CHECK(why);
        ok = false;
      }
    }
    ++cases;
    ops.insert(r.op);
    if (!ok) ++failed;
  }
  cuda_emu::detail::set_launch_observer(nullptr);
  // Every own kernel (and instantiation) that the rows reach, with its launches.
  const auto& ks = kernel_stats();
  for (const auto& [k, s] : ks)
    std::printf("emulated kernel %-44s %5lld launches%s%s\n", k.c_str(), static_cast<long long>(s.launches),
                s.one_block ? ", one block" : "", s.many_blocks ? ", many blocks" : "");
  // The kernels the launchers have and that must all be reached (the <int64_t, ...> instantiations need
  // 2^31 elements and are not run: docs/cuda.md).
  // (the bf16 instantiations of batch norm, column_sum and haversine run in the op table's bf16 rows:
  // ctest cuda_emu_op_table)
  const char* expected[] = {"channel_reduce_kernel<T>", "bn_train_finalize_kernel", "bn_eval_fold_kernel",
                            "bn_bwd_finalize_kernel", "colsum_finalize_kernel<float>",
                            "scale_shift_act_kernel<float, uint32_t, true>",
                            "scale_shift_act_kernel<float, uint32_t, false>", "bn_bwd_dx_kernel<float, uint32_t>",
                            "multihead_xent_kernel", "reduce_sum_kernel", "map_kernel", "haversine_latlng_kernel<T>",
                            "haversine_unitvec_kernel<T>", "row_sqnorm_kernel", "topk_merge_kernel",
                            "fused_sgd_kernel", "fused_adamw_kernel"};
  for (const char* k : expected) {
    INFO(k);
    CHECK(ks.count(k) == 1);
  }
  CHECK(failed == 0);
  std::printf("emulated CUDA kernels: %zu kernels (%zu ops), %lld cases, %s (ASan+UBSan)\n", ks.size(), ops.size(),
              static_cast<long long>(cases), failed == 0 ? "all passed" : "SOME FAILED");
}
