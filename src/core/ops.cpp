// The differentiable ops: input checks, kernel dispatch by device, and the recorded backward.
#include "geoloc/ops.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "geoloc/dispatch.hpp"

namespace geoloc::ops {

namespace {
Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
Tensor like(const Tensor& t, const Shape& s) { return Tensor::empty(s, t.dtype(), t.device()); }
// Allocates a gradient buffer only where the input wants one.
Tensor grad_for(const Tensor& t) { return t.defined() && t.requires_grad() ? like(t) : Tensor(); }

// A float input: f32, or bf16 (mixed precision: the backend computes in float and rounds each output once).
void check_float_input(const Tensor& t, const char* op, const char* what) {
  GEOLOC_CHECK(t.defined(), ShapeError, op, ": ", what, " is undefined");
  GEOLOC_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, ShapeError, op, ": ", what,
               " must be f32 or bf16, got ", t.str());
  GEOLOC_CHECK(t.numel() > 0, ShapeError, op, ": ", what, " is empty (shape ", t.shape().str(), ")");
}

// Inputs that stay f32 in a bf16 call: batch-norm parameters and statistics, the losses' soft targets.
void check_f32_input(const Tensor& t, const char* op, const char* what) {
  check_float_input(t, op, what);
  GEOLOC_CHECK(t.dtype() == DType::F32, ShapeError, op, ": ", what, " must be f32, got ", t.str());
}

// The tensors of one call share the input's dtype (no silent mixing of f32 and bf16).
void check_same_dtype(const Tensor& ref, const Tensor& t, const char* op, const char* what) {
  if (!t.defined()) return;
  GEOLOC_CHECK(t.dtype() == ref.dtype(), ShapeError, op, ": ", what, " ", t.str(), " and the input ",
               ref.str(), " differ in dtype (convert one with ops::to_dtype)");
}

void check_device(const Tensor& ref, const Tensor& t, const char* op, const char* what) {
  if (!t.defined()) return;
  GEOLOC_CHECK(t.device() == ref.device(), ShapeError, op, ": ", what, " is on ", t.device().str(),
               " but the input is on ", ref.device().str());
}

// x [N,H,W,C] or [N,C]; the four per-channel batch-norm vectors f32 [C] on x's device.
void check_bn_inputs(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                     const Tensor& running_var, const char* op) {
  check_float_input(x, op, "input");
  GEOLOC_CHECK(x.ndim() == 4 || x.ndim() == 2, ShapeError, op, ": input must be [N,H,W,C] or [N,C], got ",
               x.shape().str());
  const int64_t c = x.dim(-1);
  for (auto [t, what] : {std::pair{&gamma, "weight"}, {&beta, "bias"}, {&running_mean, "running_mean"},
                         {&running_var, "running_var"}}) {
    check_f32_input(*t, op, what);
    check_device(x, *t, op, what);
    GEOLOC_CHECK(t->ndim() == 1 && t->dim(0) == c, ShapeError, op, ": ", what, " is ", t->shape().str(),
                 " but the input ", x.shape().str(), " has ", c, " channels");
  }
}

// The innermost SyncBatchNormGuard's replicas on this thread (null: batch norm is per process).
thread_local const CrossReplica* sync_replicas = nullptr;
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad) {
  check_float_input(x, "conv2d", "input");
  check_float_input(w, "conv2d", "weight");
  GEOLOC_CHECK(x.ndim() == 4, ShapeError, "conv2d: input must be NHWC [N,H,W,C], got ", x.shape().str());
  GEOLOC_CHECK(w.ndim() == 4, ShapeError, "conv2d: weight must be [Cout,KH,KW,Cin], got ", w.shape().str());
  GEOLOC_CHECK(w.dim(3) == x.dim(3), ShapeError, "conv2d: input ", x.shape().str(), " has ", x.dim(3),
               " channels but weight ", w.shape().str(), " expects ", w.dim(3));
  GEOLOC_CHECK(stride >= 1 && pad >= 0, ValueError, "conv2d: stride ", stride, " / padding ", pad, " invalid");
  check_device(x, w, "conv2d", "weight");
  check_same_dtype(x, w, "conv2d", "weight");
  check_same_dtype(x, bias, "conv2d", "bias");
  if (bias.defined()) {
    check_device(x, bias, "conv2d", "bias");
    GEOLOC_CHECK(bias.ndim() == 1 && bias.dim(0) == w.dim(0), ShapeError, "conv2d: bias ", bias.shape().str(),
                 " does not match weight ", w.shape().str());
  }
  const int64_t ho = conv_out_size(x.dim(1), w.dim(1), stride, pad);
  const int64_t wo = conv_out_size(x.dim(2), w.dim(2), stride, pad);
  GEOLOC_CHECK(ho > 0 && wo > 0, ShapeError, "conv2d: input ", x.shape().str(), " is smaller than kernel ",
               w.shape().str(), " with padding ", pad);
  const Conv2dArgs a{stride, pad};
  Tensor y = like(x, {x.dim(0), ho, wo, w.dim(0)});
  GEOLOC_DISPATCH(x.device(), conv2d_forward, x, w, bias, y, a);
  record(y, "conv2d", {x, w, bias}, [x, w, bias, a](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = grad_for(x), dw = grad_for(w), db = grad_for(bias);
    if (dx.defined()) GEOLOC_DISPATCH(dy.device(), conv2d_backward_data, dy, w, dx, a);
    if (dw.defined() || db.defined()) {
      Tensor dw_buf = dw.defined() ? dw : like(w);
      GEOLOC_DISPATCH(dy.device(), conv2d_backward_filter, x, dy, dw_buf, db, a);
    }
    return {dx, dw, db};
  });
  return y;
}

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum, float eps) {
  check_bn_inputs(x, gamma, beta, running_mean, running_var, "batch_norm");
  if (training && sync_replicas) return batch_norm_sync(x, gamma, beta, running_mean, running_var, momentum, eps, *sync_replicas);
  const int64_t c = x.dim(-1);
  Tensor y = like(x);
  if (!training) {
    GEOLOC_DISPATCH(x.device(), batch_norm_forward_eval, x, gamma, beta, running_mean, running_var, eps, y);
    // Eval mode is a per-channel affine map y = x * gamma * invstd + const, with invstd from the running
    // variance: dx = dy * gamma * invstd; dgamma and dbeta are batch_norm_backward's with the running mean.
    record(y, "batch_norm_eval", {x, gamma, beta}, [x, gamma, running_mean, running_var, eps](const Tensor& dy) {
      std::vector<float> invstd = running_var.to_vector(), g = gamma.to_vector();
      std::vector<float> x_scale(g.size());
      for (size_t j = 0; j < g.size(); ++j) {
        invstd[j] = 1.0f / std::sqrt(invstd[j] + eps);
        x_scale[j] = g[j] * invstd[j];
      }
      const Tensor invstd_t = Tensor::from_vector(gamma.shape(), invstd, x.device());
      Tensor dx = grad_for(x), dg = like(gamma), db = like(gamma);
      GEOLOC_DISPATCH(dy.device(), batch_norm_backward, dy, x, gamma, running_mean.detach(), invstd_t, Tensor(), dg,
                      db);
      if (dx.defined()) {
        // dx = dy * x_scale per channel: the eval kernel with mean 0, variance 1 - eps (so invstd is 1), shift 0.
        const Tensor zero = Tensor::zeros(gamma.shape(), DType::F32, x.device());
        const Tensor unit = Tensor::full(gamma.shape(), 1.0f - eps, x.device());
        const Tensor xs = Tensor::from_vector(gamma.shape(), x_scale, x.device());
        GEOLOC_DISPATCH(dy.device(), batch_norm_forward_eval, dy, xs, zero, zero, unit, eps, dx);
      }
      return std::vector<Tensor>{dx, dg, db};
    });
    return y;
  }
  const int64_t m = x.numel() / c;
  GEOLOC_CHECK(m > 1, ValueError, "batch_norm: training needs more than one value per channel, input is ",
               x.shape().str());
  // the statistics stay f32 whatever x's dtype
  Tensor mean = Tensor::empty({c}, DType::F32, x.device()),
         invstd = Tensor::empty({c}, DType::F32, x.device());
  GEOLOC_DISPATCH(x.device(), batch_norm_forward_train, x, gamma, beta, running_mean, running_var, momentum, eps, y,
                  mean, invstd);
  record(y, "batch_norm", {x, gamma, beta}, [x, gamma, beta, mean, invstd](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = grad_for(x), dg = grad_for(gamma), db = grad_for(beta);
    GEOLOC_DISPATCH(dy.device(), batch_norm_backward, dy, x, gamma, mean, invstd, dx, dg, db);
    return {dx, dg, db};
  });
  return y;
}

namespace {
void check_replicas(const CrossReplica& r, const char* who) {
  GEOLOC_CHECK(r.all_reduce_sum && r.size >= 1 && r.rank >= 0 && r.rank < r.size, ValueError, who,
               ": needs an all-reduce and 0 <= rank < size, got rank ", r.rank, " of ", r.size);
}
}  // namespace

SyncBatchNormGuard::SyncBatchNormGuard(CrossReplica replicas) : replicas_(std::move(replicas)), prev_(sync_replicas) {
  check_replicas(replicas_, "SyncBatchNormGuard");
  sync_replicas = &replicas_;
}
SyncBatchNormGuard::~SyncBatchNormGuard() { sync_replicas = prev_; }

Tensor batch_norm_sync(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, float momentum, float eps, const CrossReplica& replicas) {
  check_bn_inputs(x, gamma, beta, running_mean, running_var, "batch_norm_sync");
  check_replicas(replicas, "batch_norm_sync");
  const int64_t c = x.dim(-1), m = x.numel() / c;
  const Device dev = x.device();
  Tensor lmean = Tensor::empty({c}, DType::F32, dev), lvar = Tensor::empty({c}, DType::F32, dev);
  GEOLOC_DISPATCH(dev, batch_norm_stats, x, lmean, lvar);
  // Every process's row count (two floats, exact to 2^48 rows), mean and variance, side by side: one all-reduce
  // of a buffer that is zero but for this process's slot gathers them all.
  const int64_t slot = 2 + 2 * c;
  std::vector<float> buf(static_cast<size_t>(replicas.size * slot), 0.0f);
  {
    float* mine = buf.data() + replicas.rank * slot;
    mine[0] = static_cast<float>(m >> 24);
    mine[1] = static_cast<float>(m & 0xffffff);
    const std::vector<float> lm = lmean.to_vector(), lv = lvar.to_vector();
    std::copy(lm.begin(), lm.end(), mine + 2);
    std::copy(lv.begin(), lv.end(), mine + 2 + c);
  }
  const Tensor gathered = Tensor::from_vector({static_cast<int64_t>(buf.size())}, buf);
  replicas.all_reduce_sum(gathered);
  const float* g = gathered.data<float>();
  // combined in double: N = sum n_r, mean = sum n_r mean_r / N, N var = sum n_r (var_r + (mean_r - mean)^2)
  std::vector<double> rows(static_cast<size_t>(replicas.size));
  double total = 0;
  for (int r = 0; r < replicas.size; ++r) {
    rows[r] = std::ldexp(static_cast<double>(g[r * slot]), 24) + g[r * slot + 1];
    total += rows[r];
  }
  GEOLOC_CHECK(total > 1, ValueError, "batch_norm_sync: training needs more than one value per channel over all ",
               replicas.size, " processes, the input here is ", x.shape().str());
  std::vector<float> mean(c), var(c), invstd(c), rm = running_mean.to_vector(), rv = running_var.to_vector();
  for (int64_t j = 0; j < c; ++j) {
    double mu = 0;
    for (int r = 0; r < replicas.size; ++r) mu += rows[r] * g[r * slot + 2 + j];
    mu /= total;
    double m2 = 0;
    for (int r = 0; r < replicas.size; ++r) {
      const float* s = g + r * slot;
      const double d = s[2 + j] - mu;
      m2 += rows[r] * (s[2 + c + j] + d * d);
    }
    const double v = m2 / total;
    mean[j] = static_cast<float>(mu);
    var[j] = static_cast<float>(v);
    invstd[j] = static_cast<float>(1.0 / std::sqrt(v + eps));
    rm[j] = static_cast<float>((1.0 - momentum) * rm[j] + momentum * mu);
    rv[j] = static_cast<float>((1.0 - momentum) * rv[j] + momentum * v * total / (total - 1));
  }
  const Tensor mean_t = Tensor::from_vector({c}, mean, dev), invstd_t = Tensor::from_vector({c}, invstd, dev);
  GEOLOC_DISPATCH(dev, convert, Tensor::from_vector({c}, rm, dev), running_mean);
  GEOLOC_DISPATCH(dev, convert, Tensor::from_vector({c}, rv, dev), running_var);
  // y = (x - mean) * invstd * gamma + beta: the eval kernel with the global statistics in place of the running ones
  Tensor y = like(x);
  GEOLOC_DISPATCH(dev, batch_norm_forward_eval, x, gamma, beta, mean_t, Tensor::from_vector({c}, var, dev), eps, y);
  record(y, "batch_norm_sync", {x, gamma, beta},
         [x, gamma, beta, mean_t, invstd_t, total, replicas](const Tensor& dy) -> std::vector<Tensor> {
           const Device d = dy.device();
           Tensor dx = grad_for(x), dg = grad_for(gamma), db = grad_for(beta);
           // this process's sums of dy * xhat and dy (its share of dgamma and dbeta)
           const Tensor sdyx = dg.defined() ? dg : like(gamma), sdy = db.defined() ? db : like(gamma);
           GEOLOC_DISPATCH(d, batch_norm_backward, dy, x, gamma, mean_t, invstd_t, Tensor(), sdyx, sdy);
           if (!dx.defined()) return {dx, dg, db};
           const int64_t c = gamma.numel();
           std::vector<float> sums = sdy.to_vector(), part = sdyx.to_vector();
           sums.insert(sums.end(), part.begin(), part.end());
           const Tensor all = Tensor::from_vector({2 * c}, sums);
           replicas.all_reduce_sum(all);
           const float* a = all.data<float>();
           const Tensor all_sdy = Tensor::from_vector({c}, std::vector<float>(a, a + c), d),
                        all_sdyx = Tensor::from_vector({c}, std::vector<float>(a + c, a + 2 * c), d);
           GEOLOC_DISPATCH(d, batch_norm_backward_dx, dy, x, gamma, mean_t, invstd_t, all_sdy, all_sdyx, total, dx);
           return {dx, dg, db};
         });
  return y;
}

Tensor batch_norm_act(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                      const Tensor& running_var, float momentum, float eps, const Tensor& residual, bool relu) {
  check_bn_inputs(x, gamma, beta, running_mean, running_var, "batch_norm_act");
  const int64_t c = x.dim(-1);
  if (residual.defined()) {
    check_float_input(residual, "batch_norm_act", "residual");
    check_same_shape(x, residual, "batch_norm_act: input", "residual");
    check_same_dtype(x, residual, "batch_norm_act", "residual");
    check_device(x, residual, "batch_norm_act", "residual");
  }
  if (sync_replicas) {  // unfused: the synchronised batch norm, then the residual add and the ReLU
    const Tensor y = batch_norm_sync(x, gamma, beta, running_mean, running_var, momentum, eps, *sync_replicas);
    if (residual.defined()) return relu ? add_relu(y, residual) : add(y, residual);
    return relu ? ops::relu(y) : y;
  }
  const int64_t m = x.numel() / c;
  GEOLOC_CHECK(m > 1, ValueError, "batch_norm_act: training needs more than one value per channel, input is ",
               x.shape().str());
  Tensor y = like(x);
  Tensor mean = Tensor::empty({c}, DType::F32, x.device()),
         invstd = Tensor::empty({c}, DType::F32, x.device());
  GEOLOC_DISPATCH(x.device(), batch_norm_act_forward_train, x, gamma, beta, running_mean, running_var, momentum,
                  eps, residual, relu, y, mean, invstd);
  const bool has_res = residual.defined();
  Tensor yd = relu ? y.detach() : Tensor();  // saving y itself would make the graph own its own output
  std::vector<Tensor> inputs{x, gamma, beta};
  if (has_res) inputs.push_back(residual);
  const char* name = has_res ? (relu ? "batch_norm_add_relu" : "batch_norm_add") : (relu ? "batch_norm_relu" : "batch_norm");
  record(y, name, inputs,
         [x, gamma, beta, mean, invstd, yd, relu, has_res](const Tensor& dy) -> std::vector<Tensor> {
           Tensor dx = grad_for(x), dg = grad_for(gamma), db = grad_for(beta);
           // the residual's gradient is dy itself without a ReLU; with one, the kernel writes it
           Tensor dres = has_res && relu ? like(dy) : Tensor();
           GEOLOC_DISPATCH(dy.device(), batch_norm_act_backward, dy, x, yd, gamma, beta.detach(), mean, invstd,
                           relu, dx, dg, db, dres);
           if (!has_res) return {dx, dg, db};
           return {dx, dg, db, relu ? dres : dy};
         });
  return y;
}

Tensor conv2d_bn_act(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                     const Tensor& running_mean, const Tensor& running_var, float eps, const Tensor& residual,
                     bool relu, int stride, int pad) {
  check_float_input(x, "conv2d_bn_act", "input");
  check_float_input(w, "conv2d_bn_act", "weight");
  GEOLOC_CHECK(x.ndim() == 4 && w.ndim() == 4 && w.dim(3) == x.dim(3), ShapeError, "conv2d_bn_act: input ",
               x.shape().str(), " and weight ", w.shape().str(), " must be NHWC [N,H,W,C] and [Cout,KH,KW,C]");
  GEOLOC_CHECK(stride >= 1 && pad >= 0, ValueError, "conv2d_bn_act: stride ", stride, " / padding ", pad, " invalid");
  check_device(x, w, "conv2d_bn_act", "weight");
  check_same_dtype(x, w, "conv2d_bn_act", "weight");
  for (auto [t, what] : {std::pair{&gamma, "weight"}, {&beta, "bias"}, {&running_mean, "running_mean"},
                         {&running_var, "running_var"}}) {
    check_f32_input(*t, "conv2d_bn_act", what);
    check_device(x, *t, "conv2d_bn_act", what);
    GEOLOC_CHECK(t->ndim() == 1 && t->dim(0) == w.dim(0), ShapeError, "conv2d_bn_act: batch-norm ", what, " is ",
                 t->shape().str(), " but the convolution has ", w.dim(0), " output channels");
  }
  const int64_t ho = conv_out_size(x.dim(1), w.dim(1), stride, pad);
  const int64_t wo = conv_out_size(x.dim(2), w.dim(2), stride, pad);
  GEOLOC_CHECK(ho > 0 && wo > 0, ShapeError, "conv2d_bn_act: input ", x.shape().str(), " is smaller than kernel ",
               w.shape().str(), " with padding ", pad);
  Tensor y = like(x, {x.dim(0), ho, wo, w.dim(0)});
  if (residual.defined()) {
    check_float_input(residual, "conv2d_bn_act", "residual");
    check_same_shape(y, residual, "conv2d_bn_act: output", "residual");
    check_same_dtype(x, residual, "conv2d_bn_act", "residual");
    check_device(x, residual, "conv2d_bn_act", "residual");
  }
  GEOLOC_CHECK(!needs_grad({&x, &w, &gamma, &beta, &residual}), ValueError,
               "conv2d_bn_act is inference only, but an input needs a gradient");
  GEOLOC_DISPATCH(x.device(), conv2d_bn_act_forward, x, w, gamma, beta, running_mean, running_var, eps, residual,
                  relu, y, Conv2dArgs{stride, pad});
  return y;
}

Tensor relu(const Tensor& x) {
  check_float_input(x, "relu", "input");
  Tensor y = like(x);
  GEOLOC_DISPATCH(x.device(), relu_forward, x, y);
  Tensor yd = y.detach();  // saving y itself would make the graph own its own output
  record(y, "relu", {x}, [yd](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = like(dy);
    GEOLOC_DISPATCH(dy.device(), relu_backward, dy, yd, dx);
    return {dx};
  });
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  check_float_input(a, "add", "a");
  check_float_input(b, "add", "b");
  check_same_shape(a, b, "add: a", "b");
  check_device(a, b, "add", "b");
  check_same_dtype(a, b, "add", "b");
  Tensor y = like(a);
  GEOLOC_DISPATCH(a.device(), add_forward, a, b, y);
  record(y, "add", {a, b}, [](const Tensor& dy) -> std::vector<Tensor> { return {dy, dy}; });
  return y;
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  check_float_input(a, "add_relu", "a");
  check_float_input(b, "add_relu", "b");
  check_same_shape(a, b, "add_relu: a", "b");
  check_device(a, b, "add_relu", "b");
  check_same_dtype(a, b, "add_relu", "b");
  Tensor y = like(a);
  GEOLOC_DISPATCH(a.device(), add_relu_forward, a, b, y);
  Tensor yd = y.detach();
  record(y, "add_relu", {a, b}, [yd](const Tensor& dy) -> std::vector<Tensor> {
    Tensor d = like(dy);
    GEOLOC_DISPATCH(dy.device(), relu_backward, dy, yd, d);
    return {d, d};
  });
  return y;
}

Tensor scale(const Tensor& x, float alpha) {
  check_float_input(x, "scale", "input");
  Tensor y = like(x);
  GEOLOC_DISPATCH(x.device(), scale, x, alpha, y);
  record(y, "scale", {x}, [alpha](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = like(dy);
    GEOLOC_DISPATCH(dy.device(), scale, dy, alpha, dx);
    return {dx};
  });
  return y;
}

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad) {
  check_float_input(x, "max_pool2d", "input");
  GEOLOC_CHECK(x.ndim() == 4, ShapeError, "max_pool2d: input must be NHWC, got ", x.shape().str());
  GEOLOC_CHECK(kernel >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= kernel, ValueError, "max_pool2d: kernel ",
               kernel, ", stride ", stride, ", padding ", pad, " invalid (padding at most half the kernel)");
  const int64_t ho = conv_out_size(x.dim(1), kernel, stride, pad), wo = conv_out_size(x.dim(2), kernel, stride, pad);
  GEOLOC_CHECK(ho > 0 && wo > 0, ShapeError, "max_pool2d: input ", x.shape().str(), " smaller than kernel ", kernel);
  const Pool2dArgs a{kernel, stride, pad};
  Tensor y = like(x, {x.dim(0), ho, wo, x.dim(3)});
  Tensor idx = Tensor::empty(y.shape(), DType::I32, x.device());
  GEOLOC_DISPATCH(x.device(), max_pool2d_forward, x, y, idx, a);
  const Shape xs = x.shape();
  record(y, "max_pool2d", {x}, [idx, xs](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = like(dy, xs);
    GEOLOC_DISPATCH(dy.device(), max_pool2d_backward, dy, idx, dx);
    return {dx};
  });
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  check_float_input(x, "global_avg_pool", "input");
  GEOLOC_CHECK(x.ndim() == 4, ShapeError, "global_avg_pool: input must be NHWC, got ", x.shape().str());
  Tensor y = like(x, {x.dim(0), x.dim(3)});
  GEOLOC_DISPATCH(x.device(), global_avg_pool_forward, x, y);
  const Shape xs = x.shape();
  record(y, "global_avg_pool", {x}, [xs](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = like(dy, xs);
    GEOLOC_DISPATCH(dy.device(), global_avg_pool_backward, dy, dx);
    return {dx};
  });
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_float_input(x, "linear", "input");
  check_float_input(w, "linear", "weight");
  GEOLOC_CHECK(x.ndim() == 2 && w.ndim() == 2 && x.dim(1) == w.dim(1), ShapeError, "linear: input ",
               x.shape().str(), " does not match weight ", w.shape().str(), " (expected [N,D] and [C,D])");
  check_device(x, w, "linear", "weight");
  check_same_dtype(x, w, "linear", "weight");
  check_same_dtype(x, bias, "linear", "bias");
  if (bias.defined()) {
    check_device(x, bias, "linear", "bias");
    GEOLOC_CHECK(bias.ndim() == 1 && bias.dim(0) == w.dim(0), ShapeError, "linear: bias ", bias.shape().str(),
                 " does not match weight ", w.shape().str());
  }
  Tensor y = like(x, {x.dim(0), w.dim(0)});
  GEOLOC_DISPATCH(x.device(), linear_forward, x, w, bias, y);
  record(y, "linear", {x, w, bias}, [x, w, bias](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = grad_for(x), dw = grad_for(w), db = grad_for(bias);
    GEOLOC_DISPATCH(dy.device(), linear_backward, dy, x, w, dx, dw, db);
    return {dx, dw, db};
  });
  return y;
}

Tensor to_dtype(const Tensor& x, DType t) {
  check_float_input(x, "to_dtype", "input");
  GEOLOC_CHECK(t == DType::F32 || t == DType::BF16, ShapeError, "to_dtype: ", x.str(), " to ", dtype_name(t),
               " (f32 <-> bf16 only)");
  if (x.dtype() == t) return x;
  Tensor y = x.to_dtype(t);
  const DType from = x.dtype();
  record(y, "to_dtype", {x}, [from](const Tensor& dy) -> std::vector<Tensor> { return {dy.to_dtype(from)}; });
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_defined(x, "reshape");
  Tensor y = x.view(shape);
  const Shape xs = x.shape();
  record(y, "reshape", {x}, [xs](const Tensor& dy) -> std::vector<Tensor> { return {dy.view(xs)}; });
  return y;
}

Tensor flatten(const Tensor& x) {
  check_defined(x, "flatten");
  GEOLOC_CHECK(x.ndim() >= 1, ShapeError, "flatten: needs a batch dimension, got ", x.shape().str());
  const int64_t n = x.dim(0);
  return reshape(x, {n, n ? x.numel() / n : 0});
}

Tensor dropout(const Tensor& x, float p, bool training, uint64_t seed) {
  check_float_input(x, "dropout", "input");
  GEOLOC_CHECK(p >= 0.0f && p < 1.0f, ValueError, "dropout: probability ", p, " outside [0, 1)");
  if (!training || p == 0.0f) return x;
  Tensor y = like(x);
  Tensor mask = Tensor::empty(x.shape(), DType::U8, x.device());
  GEOLOC_DISPATCH(x.device(), dropout_forward, x, mask, y, p, seed);
  record(y, "dropout", {x}, [mask, p](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = like(dy);
    GEOLOC_DISPATCH(dy.device(), dropout_backward, dy, mask, dx, p);
    return {dx};
  });
  return y;
}

namespace {
// Checks one head's logits and target; returns the target on the logits' device (uploaded once) and the
// number of samples that count. The count is taken where the target is, so a CPU target costs no read-back.
Tensor check_xent_target(const Tensor& logits, const CrossEntropyTarget& t, const char* op, int64_t& count) {
  check_float_input(logits, op, "logits");
  GEOLOC_CHECK(logits.ndim() == 2, ShapeError, op, ": logits must be [N,C], got ", logits.shape().str());
  GEOLOC_CHECK(t.labels.defined() != t.soft.defined(), ValueError, op,
               ": give exactly one of labels and soft targets per head");
  const int64_t n = logits.dim(0), c = logits.dim(1);
  count = 0;
  if (t.labels.defined()) {
    const Tensor& labels = t.labels;
    GEOLOC_CHECK(labels.dtype() == DType::I32 && labels.ndim() == 1 && labels.dim(0) == n, ShapeError, op,
                 ": labels ", labels.str(), " must be i32 [", n, "] for logits ", logits.shape().str());
    for (int32_t l : labels.to_labels()) {
      GEOLOC_CHECK(l < c, ValueError, op, ": label ", l, " out of range for ", c, " classes");
      count += l >= 0;
    }
    return labels.to(logits.device());
  }
  check_same_shape(logits, t.soft, (std::string(op) + ": logits").c_str(), "targets");
  GEOLOC_CHECK(t.soft.dtype() == DType::F32, ShapeError, op, ": soft targets must be f32, got ", t.soft.str());
  const auto v = t.soft.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int64_t j = 0; j < c; ++j) s += v[i * c + j];
    count += s > 0.0;
  }
  return t.soft.to(logits.device());
}

// The mean of a head's per-sample losses, computed on its device; the gradient was computed in the
// forward pass already scaled by 1/count, and backward multiplies it by the upstream scalar there too.
Tensor mean_loss_with_grad(const Tensor& logits, const Tensor& per_sample, const Tensor& dlogits, int64_t count,
                           const char* name) {
  Tensor loss = Tensor::empty({1}, DType::F32, logits.device());
  GEOLOC_DISPATCH(loss.device(), reduce_sum, per_sample, count ? 1.0f / static_cast<float>(count) : 0.0f, loss);
  record(loss, name, {logits}, [dlogits](const Tensor& g) -> std::vector<Tensor> {
    Tensor d = like(dlogits);
    GEOLOC_DISPATCH(d.device(), mul_scalar, dlogits, g, d);
    return {d};
  });
  return loss;
}
}  // namespace

std::vector<Tensor> cross_entropy_multihead(const std::vector<Tensor>& logits,
                                            const std::vector<CrossEntropyTarget>& targets) {
  GEOLOC_CHECK(!logits.empty() && logits.size() == targets.size(), ShapeError, "cross_entropy_multihead: ",
               logits.size(), " logits but ", targets.size(), " targets");
  std::vector<CrossEntropyHead> heads(logits.size());
  std::vector<int64_t> counts(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    check_device(logits[0], logits[i], "cross_entropy_multihead", "a head's logits");
    check_same_dtype(logits[0], logits[i], "cross_entropy_multihead", "a head's logits");
    const Tensor t = check_xent_target(logits[i], targets[i], "cross_entropy_multihead", counts[i]);
    CrossEntropyHead& h = heads[i];
    h.logits = logits[i];
    (targets[i].labels.defined() ? h.labels : h.targets) = t;
    h.loss = Tensor::empty({logits[i].dim(0)}, DType::F32, logits[i].device());  // f32 also for bf16 logits
    h.dlogits = like(logits[i]);
    h.grad_scale = counts[i] ? 1.0f / static_cast<float>(counts[i]) : 0.0f;
  }
  GEOLOC_DISPATCH(logits[0].device(), cross_entropy_multihead, heads);
  std::vector<Tensor> out;
  for (size_t i = 0; i < heads.size(); ++i)
    out.push_back(mean_loss_with_grad(heads[i].logits, heads[i].loss, heads[i].dlogits, counts[i],
                                      heads[i].labels.defined() ? "cross_entropy" : "cross_entropy_soft"));
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  GEOLOC_CHECK(labels.defined(), ShapeError, "cross_entropy: labels are undefined");
  int64_t count = 0;
  const Tensor l = check_xent_target(logits, {labels, Tensor()}, "cross_entropy", count);
  Tensor per = Tensor::empty({logits.dim(0)}, DType::F32, logits.device()), d = like(logits);
  GEOLOC_DISPATCH(logits.device(), cross_entropy_hard, logits, l, per, d, count ? 1.0f / count : 0.0f);
  return mean_loss_with_grad(logits, per, d, count, "cross_entropy");
}

Tensor cross_entropy_soft(const Tensor& logits, const Tensor& targets) {
  GEOLOC_CHECK(targets.defined(), ShapeError, "cross_entropy_soft: targets are undefined");
  int64_t count = 0;
  const Tensor t = check_xent_target(logits, {Tensor(), targets}, "cross_entropy_soft", count);
  Tensor per = Tensor::empty({logits.dim(0)}, DType::F32, logits.device()), d = like(logits);
  GEOLOC_DISPATCH(logits.device(), cross_entropy_soft, logits, t, per, d, count ? 1.0f / count : 0.0f);
  return mean_loss_with_grad(logits, per, d, count, "cross_entropy_soft");
}

void check_finite(const Tensor& t, const char* what) {
  if (!t.defined() || !t.device().is_cpu() || t.dtype() != DType::F32) return;
  const float* v = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    GEOLOC_CHECK(std::isfinite(v[i]), ValueError, what, ": element ", i, " of ", t.shape().str(), " is ", v[i],
                 " (not finite)");
}

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  check_f32_input(pred, "mse_loss", "prediction");
  check_same_shape(pred, target, "mse_loss: prediction", "target");
  check_device(pred, target, "mse_loss", "target");
  // diff = pred - target, loss = mean(diff^2); small tensors (regression heads), so host math is fine
  const auto p = pred.to_vector(), t = target.to_vector();
  std::vector<float> diff(p.size());
  double s = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    diff[i] = p[i] - t[i];
    s += static_cast<double>(diff[i]) * diff[i];
  }
  const float inv_n = 1.0f / static_cast<float>(p.size());
  Tensor loss = Tensor::full({1}, static_cast<float>(s * inv_n), pred.device());
  Tensor dpred = Tensor::from_vector(pred.shape(), diff, pred.device());
  record(loss, "mse_loss", {pred, target}, [dpred, inv_n, target](const Tensor& g) -> std::vector<Tensor> {
    const float k = 2.0f * inv_n * g.item();
    Tensor dp = like(dpred), dt = grad_for(target);
    GEOLOC_DISPATCH(dp.device(), scale, dpred, k, dp);
    if (dt.defined()) GEOLOC_DISPATCH(dp.device(), scale, dpred, -k, dt);
    return {dp, dt};
  });
  return loss;
}

Tensor weighted_sum(const std::vector<Tensor>& terms, const std::vector<float>& weights) {
  GEOLOC_CHECK(!terms.empty() && terms.size() == weights.size(), ShapeError, "weighted_sum: ", terms.size(),
               " terms but ", weights.size(), " weights");
  for (size_t i = 0; i < terms.size(); ++i) {
    GEOLOC_CHECK(terms[i].defined() && terms[i].numel() == 1 && terms[i].dtype() == DType::F32, ShapeError,
                 "weighted_sum: term ", i, " must be a one-element f32 tensor, got ", terms[i].str());
    check_device(terms[0], terms[i], "weighted_sum", "a term");
  }
  // on the terms' device: nothing is read back until someone asks for the value
  Tensor y = Tensor::empty({1}, DType::F32, terms[0].device());
  GEOLOC_DISPATCH(y.device(), fill, y, 0.0f);
  for (size_t i = 0; i < terms.size(); ++i) GEOLOC_DISPATCH(y.device(), axpy, weights[i], terms[i], y);
  record(y, "weighted_sum", terms, [terms, weights](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> out;
    for (size_t i = 0; i < terms.size(); ++i) {
      Tensor d = like(g);
      GEOLOC_DISPATCH(g.device(), scale, g, weights[i], d);
      out.push_back(d);
    }
    return out;
  });
  return y;
}

}  // namespace geoloc::ops
