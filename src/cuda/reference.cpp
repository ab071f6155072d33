// CPU references of geoloc's own CUDA kernels (include/geoloc/cuda/*.hpp, namespace cuda::ref): the
// specification the GPU tests compare against. Plain loops, double precision where it is cheap.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "geoloc/backend.hpp"
#include "geoloc/cuda/fused_optim.hpp"
#include "geoloc/cuda/fusion.hpp"
#include "geoloc/cuda/haversine.hpp"
#include "geoloc/cuda/knn.hpp"
#include "geoloc/cuda/multihead_loss.hpp"
#include "geoloc/cuda/precision.hpp"

namespace geoloc::cuda::ref {
namespace {
void need_cpu(const Tensor& t, const char* fn, const char* what) {
  GEOLOC_CHECK(t.defined() && t.device().is_cpu(), ShapeError, "cuda::ref::", fn, ": ", what, " ",
               t.defined() ? t.str() : std::string("undefined"), " must be a CPU tensor");
}
float* fp(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
}  // namespace

void multihead_softmax_xent(const std::vector<LossHead>& heads) {
  for (const LossHead& h : heads) {
    need_cpu(h.logits, "multihead_softmax_xent", "logits");
    if (h.labels.defined())
      cpu::softmax_xent_hard(h.logits, h.labels, h.loss, h.dlogits, h.grad_scale);
    else
      cpu::softmax_xent_soft(h.logits, h.targets, h.loss, h.dlogits, h.grad_scale);
  }
}

void haversine_loss(const Tensor& pred, const Tensor& target, CoordFormat format, float grad_scale,
                    const Tensor& loss, const Tensor& dpred) {
  need_cpu(pred, "haversine_loss", "pred");
  const int64_t n = pred.dim(0);
  const double R = kEarthRadiusKm, k = M_PI / 180.0;
  const float *P = fp(pred), *T = fp(target);
  float *L = fp(loss), *G = fp(dpred);
  for (int64_t i = 0; i < n; ++i) {
    const double p2 = T[2 * i] * k, l2 = T[2 * i + 1] * k;
    if (format == CoordFormat::LatLngDeg) {
      const double p1 = P[2 * i] * k, l1 = P[2 * i + 1] * k, dp = p1 - p2, dl = l1 - l2;
      const double sp = std::sin(dp / 2), sl = std::sin(dl / 2);
      const double a = std::clamp(sp * sp + std::cos(p1) * std::cos(p2) * sl * sl, 0.0, 1.0);
      L[i] = static_cast<float>(2 * R * std::atan2(std::sqrt(a), std::sqrt(1 - a)));
      if (G) {
        double gl = 0, gg = 0;
        if (a > 0 && a < 1) {
          const double dd_da = R / std::sqrt(a * (1 - a));
          gl = dd_da * (0.5 * std::sin(dp) - std::sin(p1) * std::cos(p2) * sl * sl) * k;
          gg = dd_da * 0.5 * std::cos(p1) * std::cos(p2) * std::sin(dl) * k;
        }
        G[2 * i] = static_cast<float>(grad_scale * gl);
        G[2 * i + 1] = static_cast<float>(grad_scale * gg);
      }
    } else {
      const double t[3] = {std::cos(p2) * std::cos(l2), std::cos(p2) * std::sin(l2), std::sin(p2)};
      const double x = P[3 * i], y = P[3 * i + 1], z = P[3 * i + 2];
      const double nrm = std::sqrt(x * x + y * y + z * z);
      double g[3] = {0, 0, 0};
      if (!(nrm > 0)) {
        L[i] = static_cast<float>(0.5 * M_PI * R);
      } else {
        const double u[3] = {x / nrm, y / nrm, z / nrm};
        const double c = u[0] * t[0] + u[1] * t[1] + u[2] * t[2];
        const double cr[3] = {u[1] * t[2] - u[2] * t[1], u[2] * t[0] - u[0] * t[2],
                              u[0] * t[1] - u[1] * t[0]};
        const double s = std::sqrt(cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]);
        L[i] = static_cast<float>(R * std::atan2(s, c));
        if (s > 1e-7)
          for (int j = 0; j < 3; ++j) g[j] = -R * (t[j] - c * u[j]) / (s * nrm);
      }
      if (G)
        for (int j = 0; j < 3; ++j) G[3 * i + j] = static_cast<float>(grad_scale * g[j]);
    }
  }
}

void fused_sgd_step(const std::vector<ParamSlot>& slots, float lr, float momentum, float dampening,
                    bool nesterov, bool first_step) {
  for (const ParamSlot& s : slots) {
    need_cpu(s.param, "fused_sgd_step", "param");
    cpu::sgd_step(s.param, s.grad, s.state1, lr, momentum, dampening, s.weight_decay, nesterov, first_step);
  }
}

void fused_adamw_step(const std::vector<ParamSlot>& slots, float lr, float beta1, float beta2, float eps,
                      int64_t step) {
  for (const ParamSlot& s : slots) {
    need_cpu(s.param, "fused_adamw_step", "param");
    cpu::adamw_step(s.param, s.grad, s.state1, s.state2, lr, beta1, beta2, eps, s.weight_decay, step);
  }
}

void scale_shift_act(const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& residual,
                     bool relu, const Tensor& y) {
  need_cpu(x, "scale_shift_act", "x");
  const int64_t n = x.numel(), C = x.dim(-1);
  const float *X = fp(x), *S = fp(scale), *H = fp(shift), *Rs = fp(residual);
  float* Y = fp(y);
  for (int64_t i = 0; i < n; ++i) {
    float o = X[i] * S[i % C] + H[i % C];
    if (Rs) o += Rs[i];
    Y[i] = relu ? std::max(o, 0.0f) : o;
  }
}

void bn_fold(const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& invstd,
             const Tensor& scale, const Tensor& shift) {
  need_cpu(gamma, "bn_fold", "gamma");
  for (int64_t c = 0; c < gamma.numel(); ++c) {
    const float sc = fp(gamma)[c] * fp(invstd)[c];
    fp(scale)[c] = sc;
    fp(shift)[c] = fp(beta)[c] - fp(mean)[c] * sc;
  }
}

void batch_norm_train_add_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               const Tensor& running_mean, const Tensor& running_var, float momentum,
                               float eps, const Tensor& residual, const Tensor& y, const Tensor& save_mean,
                               const Tensor& save_invstd) {
  need_cpu(x, "batch_norm_train_add_relu", "x");
  cpu::batch_norm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
                                save_invstd);
  float* Y = fp(y);
  const float* Rs = fp(residual);
  for (int64_t i = 0; i < y.numel(); ++i) Y[i] = std::max(Y[i] + (Rs ? Rs[i] : 0.0f), 0.0f);
}

void knn_topk(const Tensor& queries, const Tensor& refs, int k, KnnMetric metric, const Tensor& scores,
              const Tensor& index, int64_t) {
  need_cpu(queries, "knn_topk", "queries");
  const int64_t M = queries.dim(0), R = refs.dim(0), D = queries.dim(1);
  const float *Q = fp(queries), *Rf = fp(refs);
  float* S = fp(scores);
  int32_t* I = index.data<int32_t>();
  std::vector<double> sc(R);
  std::vector<int32_t> order(R);
  const bool l2 = metric == KnnMetric::L2;
  for (int64_t q = 0; q < M; ++q) {
    for (int64_t r = 0; r < R; ++r) {
      double acc = 0;
      for (int64_t d = 0; d < D; ++d) {
        const double a = Q[q * D + d], b = Rf[r * D + d];
        acc += l2 ? (a - b) * (a - b) : a * b;
      }
      sc[r] = acc;
    }
    std::iota(order.begin(), order.end(), 0);
    const int64_t kk = std::min<int64_t>(k, R);
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int32_t a, int32_t b) {
      if (sc[a] != sc[b]) return l2 ? sc[a] < sc[b] : sc[a] > sc[b];
      return a < b;
    });
    for (int64_t j = 0; j < k; ++j) {
      const bool have = j < kk;
      S[q * k + j] =
          have ? static_cast<float>(sc[order[j]])
               : (l2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity());
      I[q * k + j] = have ? order[j] : -1;
    }
  }
}

uint16_t f32_to_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if (std::isnan(v)) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFF + ((u >> 16) & 1);                                      // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_f32(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void convert(const Tensor& src, const Tensor& dst) {
  need_cpu(src, "convert", "src");
  GEOLOC_CHECK(src.numel() == dst.numel(), ShapeError, "cuda::ref::convert: ", src.str(), " vs ", dst.str());
  const int64_t n = src.numel();
  if (src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) dst.data<uint16_t>()[i] = f32_to_bf16(src.data<float>()[i]);
  } else if (src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
    for (int64_t i = 0; i < n; ++i) dst.data<float>()[i] = bf16_to_f32(src.data<uint16_t>()[i]);
  } else {
    GEOLOC_CHECK(src.dtype() == dst.dtype(), ShapeError, "cuda::ref::convert: ", src.str(), " to ",
                 dst.str());
    if (n) std::memcpy(dst.raw(), src.raw(), src.nbytes());
  }
}

}  // namespace geoloc::cuda::ref
