// The backend's haversine_loss: forward + backward in one pass, one thread per sample, memory-bound (28
// or 32 bytes per sample). The per-sample math is geoloc/detail/haversine.hpp, the CPU backend's too.
// pred and dpred f32 or bf16 (loaded to float, dpred rounded once); target and loss f32 always.
#include <cstdint>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"
#include "geoloc/detail/haversine.hpp"

namespace geoloc::cuda {
namespace {
using dev::bf16;
using dev::ld;
using dev::st;

template <class T>
__global__ void haversine_latlng_kernel(const T* __restrict__ pred, const float2* __restrict__ target,
                                        float* __restrict__ loss, T* __restrict__ dpred, int64_t n, float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 t = target[i];
    float ga, gb;
    loss[i] = math::sphere_angle_latlng(ld(pred, 2 * i), ld(pred, 2 * i + 1), t.x, t.y, &ga, &gb);
    if (dpred) {
      st(dpred, 2 * i, gs * ga);
      st(dpred, 2 * i + 1, gs * gb);
    }
  }
}

template <class T>
__global__ void haversine_unitvec_kernel(const T* __restrict__ pred, const float2* __restrict__ target,
                                         float* __restrict__ loss, T* __restrict__ dpred, int64_t n, float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 t = target[i];
    const float v[3] = {ld(pred, 3 * i), ld(pred, 3 * i + 1), ld(pred, 3 * i + 2)};
    float g[3];
    loss[i] = math::sphere_angle_vec3(v, t.x, t.y, g);
    if (dpred) {
      st(dpred, 3 * i, gs * g[0]);
      st(dpred, 3 * i + 1, gs * g[1]);
      st(dpred, 3 * i + 2, gs * g[2]);
    }
  }
}

template <class T>
void launch_haversine(unsigned g, cudaStream_t s, const Tensor& pred, const Tensor& target, const Tensor& loss,
                      const Tensor& dpred, int64_t n, float gs) {
  const T* p = static_cast<const T*>(pred.raw());
  const float2* t = static_cast<const float2*>(target.raw());
  float* l = static_cast<float*>(loss.raw());
  T* dp = dpred.defined() ? static_cast<T*>(dpred.raw()) : nullptr;
  if (pred.dim(1) == 2)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, haversine_latlng_kernel<T>)(p, t, l, dp, n, gs);
  else
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, haversine_unitvec_kernel<T>)(p, t, l, dp, n, gs);
}

bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }
}  // namespace

void haversine_loss(const Tensor& pred, const Tensor& target, const Tensor& loss, const Tensor& dpred,
                    float grad_scale) {
  const char* fn = "haversine_loss";
  const DType pt = detail::expect_fp(pred, pred.dtype(), fn, "pred");
  detail::expect(target, DType::F32, fn, "target");
  detail::expect(loss, DType::F32, fn, "loss");
  GEOLOC_CHECK(pred.ndim() == 2 && (pred.dim(1) == 2 || pred.dim(1) == 3), ShapeError, "cuda::", fn,
               ": pred must be [N,2] (lat, lng radians) or [N,3] (a direction), got ", pred.str());
  const int64_t n = pred.dim(0);
  GEOLOC_CHECK(target.ndim() == 2 && target.dim(0) == n && target.dim(1) == 2, ShapeError, "cuda::", fn,
               ": target must be [", n, ",2] (lat, lng radians), got ", target.str());
  GEOLOC_CHECK(loss.numel() == n, ShapeError, "cuda::", fn, ": loss ", loss.str(), " must have ", n,
               " elements");
  if (dpred.defined()) {
    detail::expect_fp(dpred, pt, fn, "dpred");
    GEOLOC_CHECK(dpred.shape() == pred.shape(), ShapeError, "cuda::", fn, ": dpred ", dpred.str(),
                 " does not match pred ", pred.str());
  }
  GEOLOC_CHECK(aligned8(target.raw()), ShapeError, "cuda::", fn, ": target ", target.str(),
               " must be 8-byte aligned (a view at an odd float offset?)");
  if (n == 0) return;
  Context& ctx = detail::context_of(pred, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const unsigned g = detail::blocks_for(n, dev::kThreads, int64_t(ctx.sm_count()) * 32);
  if (pt == DType::BF16)
    launch_haversine<bf16>(g, s, pred, target, loss, dpred, n, grad_scale);
  else
    launch_haversine<float>(g, s, pred, target, loss, dpred, n, grad_scale);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "haversine_kernel");
}

}  // namespace geoloc::cuda
