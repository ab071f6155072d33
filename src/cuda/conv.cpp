// Convolutions on cuDNN's legacy convolution API (libcudnn_cnn, still in cuDNN 9): NHWC activations,
// KRSC (= our OHWI) filters, float32 in full fp32 math (CUDNN_FMA_MATH: no TF32, so results agree with
// the CPU reference to ~1e-5). The algorithm is chosen once per problem shape by cudnnFind*AlgorithmEx
// (which times the candidates on the real buffers) under the context's workspace limit, and cached in
// the context.
#include <algorithm>
#include <vector>

#include "caches.cuh"
#include "cuda_libs.cuh"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(int64_t n, int64_t h, int64_t w, int64_t c, cudnnDataType_t dt = CUDNN_DATA_FLOAT) {
    GEOLOC_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    GEOLOC_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, dt, static_cast<int>(n),
                                                  static_cast<int>(c), static_cast<int>(h),
                                                  static_cast<int>(w)));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(int64_t k, int64_t r, int64_t s, int64_t c, cudnnDataType_t dt) {
    GEOLOC_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    GEOLOC_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, dt, CUDNN_TENSOR_NHWC, static_cast<int>(k),
                                                  static_cast<int>(c), static_cast<int>(r),
                                                  static_cast<int>(s)));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  // Compute type float in both precisions; fp32 is restricted to FMA math (no TF32), bf16 uses tensor cores.
  ConvDesc(const Conv2dArgs& a, bool bf16) {
    GEOLOC_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    GEOLOC_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, a.pad, a.pad, a.stride, a.stride, 1, 1,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    GEOLOC_CUDNN_CHECK(cudnnSetConvolutionMathType(d, bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

struct Geom {
  int64_t n, h, w, ci, co, kh, kw, ho, wo;
  DType dtype;
  bool bf16() const { return dtype == DType::BF16; }
  cudnnDataType_t dt() const { return bf16() ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }
};

// The shapes and devices every convolution entry point checks. x: [N,H,W,Ci], w: [Co,KH,KW,Ci], y:
// [N,Ho,Wo,Co].
Geom check_conv(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dArgs& a, const char* fn,
                const char* xn, const char* yn) {
  const DType t = detail::expect_fp(x, x.dtype(), fn, xn);
  detail::expect_fp(w, t, fn, "w");
  detail::expect_fp(y, t, fn, yn);
  GEOLOC_CHECK(x.ndim() == 4 && w.ndim() == 4 && y.ndim() == 4, ShapeError, "cuda::", fn, ": expected 4-D ",
               xn, " ", x.str(), ", w ", w.str(), ", ", yn, " ", y.str());
  GEOLOC_CHECK(a.stride >= 1 && a.pad >= 0, ValueError, "cuda::", fn, ": stride ", a.stride, " / pad ",
               a.pad);
  Geom g{x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0), w.dim(1), w.dim(2), y.dim(1), y.dim(2), t};
  GEOLOC_CHECK(w.dim(3) == g.ci && y.dim(0) == g.n && y.dim(3) == g.co &&
                   g.ho == conv_out_size(g.h, g.kh, a.stride, a.pad) &&
                   g.wo == conv_out_size(g.w, g.kw, a.stride, a.pad),
               ShapeError, "cuda::", fn, ": ", xn, " ", x.str(), ", w ", w.str(), " and ", yn, " ", y.str(),
               " do not form a convolution with stride ", a.stride, " and padding ", a.pad);
  GEOLOC_CHECK(x.device() == w.device() && x.device() == y.device(), ShapeError, "cuda::", fn,
               ": tensors on different devices");
  return g;
}

ConvKey key(int kind, const Geom& g, const Conv2dArgs& a) {
  return {kind, g.n, g.h, g.w, g.ci, g.co, g.kh, g.kw, a.stride, a.pad, static_cast<int64_t>(g.dtype)};
}

bool fp32_math_ok(cudnnMathType_t m) { return m == CUDNN_DEFAULT_MATH || m == CUDNN_FMA_MATH; }

// Picks the fastest successful algorithm of a Find result list (for fp32: a full-fp32 one).
template <class Perf>
ConvAlgoChoice pick(const Perf* perf, int count, size_t limit, const char* what, bool bf16) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > limit) continue;
    if (!bf16 && !fp32_math_ok(perf[i].mathType)) continue;
    return ConvAlgoChoice{static_cast<int>(perf[i].algo), perf[i].mathType, perf[i].memory};
  }
  throw CudaError(geoloc::detail::cat("cuDNN found no usable ", bf16 ? "bf16" : "fp32", " algorithm for ",
                                      what, " within a workspace of ", limit,
                                      " bytes (raise GEOLOC_CUDNN_WORKSPACE_MB?)"));
}

// Looks the problem up in the context's cache, running `find` (which benchmarks) on a miss.
template <class Find>
ConvAlgoChoice cached(Context& ctx, const ConvKey& k, Find find) {
  auto& caches = ctx.caches();
  {
    std::lock_guard<std::mutex> lock(caches.mu);
    auto it = caches.conv.find(k);
    if (it != caches.conv.end()) return it->second;
  }
  ConvAlgoChoice c = find();
  std::lock_guard<std::mutex> lock(caches.mu);
  caches.conv[k] = c;
  return c;
}

constexpr int kMaxAlgos = 16;
}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const Conv2dArgs& a) {
  const char* fn = "conv2d_forward";
  const Geom g = check_conv(x, w, y, a, fn, "x", "y");
  if (bias.defined()) {
    GEOLOC_CHECK(!g.bf16(), CudaError,
                 "not implemented: bf16 conv2d_forward with a bias (fold it into the next "
                 "batch norm, or use f32)");
    expect(bias, DType::F32, fn, "bias");
    GEOLOC_CHECK(bias.numel() == g.co, ShapeError, "cuda::", fn, ": bias ", bias.str(), " must have ", g.co,
                 " elements");
  }
  if (y.numel() == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudnnHandle_t h = ctx.cudnn();
  TensorDesc xd(g.n, g.h, g.w, g.ci, g.dt()), yd(g.n, g.ho, g.wo, g.co, g.dt());
  FilterDesc wd(g.co, g.kh, g.kw, g.ci, g.dt());
  ConvDesc cd(a, g.bf16());
  const ConvAlgoChoice c = cached(ctx, key(0, g, a), [&] {
    const size_t limit = ctx.cudnn_workspace_limit();
    void* ws = ctx.workspace(limit);
    cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
    int n = 0;
    GEOLOC_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, xd.d, x.raw(), wd.d, w.raw(), cd.d, yd.d,
                                                              y.raw(), kMaxAlgos, &n, perf, ws, limit));
    return pick(perf, n, limit, "conv2d_forward", g.bf16());
  });
  GEOLOC_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  void* ws = ctx.workspace(c.workspace);
  const float one = 1.0f, zero = 0.0f;
  GEOLOC_CUDNN_CHECK(cudnnConvolutionForward(h, &one, xd.d, x.raw(), wd.d, w.raw(), cd.d,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws, c.workspace,
                                             &zero, yd.d, y.raw()));
  if (bias.defined()) {
    TensorDesc bd(1, 1, 1, g.co);
    GEOLOC_CUDNN_CHECK(cudnnAddTensor(h, &one, bd.d, bias.raw(), &one, yd.d, y.raw()));
  }
  GEOLOC_CUDA_LAUNCH_CHECK(detail::stream_of(ctx), fn);
}

// cuDNN's convolution into a scratch tensor, then the eval BN + residual + ReLU in one pass into y (the
// kernel of batch_norm_forward_eval). cudnnConvolutionBiasActivationForward could take the scale and
// shift too, but not the per-channel scale of a folded BN together with the residual in every algorithm.
void conv2d_bn_act_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                           const Tensor& running_mean, const Tensor& running_var, float eps,
                           const Tensor& residual, bool relu, const Tensor& y, const Conv2dArgs& a) {
  Tensor conv = Tensor::empty(y.shape(), y.dtype(), y.device());
  conv2d_forward(x, w, Tensor(), conv, a);
  detail::batch_norm_eval_act(conv, gamma, beta, running_mean, running_var, eps, residual, relu, y,
                              "conv2d_bn_act_forward");
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a) {
  const char* fn = "conv2d_backward_data";
  const Geom g = check_conv(dx, w, dy, a, fn, "dx", "dy");
  if (dx.numel() == 0) return;
  Context& ctx = detail::context_of(dx, fn);
  cudnnHandle_t h = ctx.cudnn();
  TensorDesc xd(g.n, g.h, g.w, g.ci, g.dt()), yd(g.n, g.ho, g.wo, g.co, g.dt());
  FilterDesc wd(g.co, g.kh, g.kw, g.ci, g.dt());
  ConvDesc cd(a, g.bf16());
  const ConvAlgoChoice c = cached(ctx, key(1, g, a), [&] {
    const size_t limit = ctx.cudnn_workspace_limit();
    void* ws = ctx.workspace(limit);
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
    int n = 0;
    GEOLOC_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        h, wd.d, w.raw(), yd.d, dy.raw(), cd.d, xd.d, dx.raw(), kMaxAlgos, &n, perf, ws, limit));
    return pick(perf, n, limit, "conv2d_backward_data", g.bf16());
  });
  GEOLOC_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  void* ws = ctx.workspace(c.workspace);
  const float one = 1.0f, zero = 0.0f;
  GEOLOC_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, wd.d, w.raw(), yd.d, dy.raw(), cd.d,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws,
                                                  c.workspace, &zero, xd.d, dx.raw()));
  GEOLOC_CUDA_LAUNCH_CHECK(detail::stream_of(ctx), fn);
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,
                            const Conv2dArgs& a) {
  const char* fn = "conv2d_backward_filter";
  const Geom g = check_conv(x, dw, dy, a, fn, "x", "dy");
  if (dbias.defined()) {
    detail::expect_fp(dbias, g.dtype, fn, "dbias");
    GEOLOC_CHECK(dbias.numel() == g.co, ShapeError, "cuda::", fn, ": dbias ", dbias.str(), " must have ",
                 g.co, " elements");
  }
  if (dw.numel() == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  if (dy.numel() == 0) {  // an empty batch: the sums are zero
    GEOLOC_CUDA_CHECK(cudaMemsetAsync(dw.raw(), 0, dw.nbytes(), s));
    if (dbias.defined()) GEOLOC_CUDA_CHECK(cudaMemsetAsync(dbias.raw(), 0, dbias.nbytes(), s));
    return;
  }
  cudnnHandle_t h = ctx.cudnn();
  TensorDesc xd(g.n, g.h, g.w, g.ci, g.dt()), yd(g.n, g.ho, g.wo, g.co, g.dt());
  FilterDesc wd(g.co, g.kh, g.kw, g.ci, g.dt());
  ConvDesc cd(a, g.bf16());
  const ConvAlgoChoice c = cached(ctx, key(2, g, a), [&] {
    const size_t limit = ctx.cudnn_workspace_limit();
    void* ws = ctx.workspace(limit);
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
    int n = 0;
    GEOLOC_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h, xd.d, x.raw(), yd.d, dy.raw(), cd.d, wd.d, dw.raw(), kMaxAlgos, &n, perf, ws, limit));
    return pick(perf, n, limit, "conv2d_backward_filter", g.bf16());
  });
  GEOLOC_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  void* ws = ctx.workspace(c.workspace);
  const float one = 1.0f, zero = 0.0f;
  GEOLOC_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, xd.d, x.raw(), yd.d, dy.raw(), cd.d,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws,
                                                    c.workspace, &zero, wd.d, dw.raw()));
  GEOLOC_CUDA_LAUNCH_CHECK(s, fn);
  // The bias gradient: the own deterministic column sum over the N*Ho*Wo rows of dy (double accumulation,
  // f32 or bf16 rounded once) rather than cudnnConvolutionBackwardBias, so that both dtypes take one path,
  // the one the emulator runs (tests/cuda_emu/host_standins.cpp).
  if (dbias.defined()) detail::column_sum(ctx, g.dtype, dy.raw(), dy.numel() / g.co, g.co, dbias.raw());
}

}  // namespace geoloc::cuda
