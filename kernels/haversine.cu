// The backend's haversine_loss: forward + backward in one pass, one thread per sample, memory-bound (28
// or 32 bytes per sample). The per-sample math is geoloc/detail/haversine.hpp, the CPU backend's too.
#include <cstdint>

#include "cuda_common.cuh"
#include "device.cuh"
#include "geoloc/detail/haversine.hpp"

namespace geoloc::cuda {
namespace {

__global__ void haversine_latlng_kernel(const float2* __restrict__ pred, const float2* __restrict__ target,
                                        float* __restrict__ loss, float2* __restrict__ dpred, int64_t n,
                                        float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 p = pred[i], t = target[i];
    float ga, gb;
    loss[i] = math::sphere_angle_latlng(p.x, p.y, t.x, t.y, &ga, &gb);
    if (dpred) dpred[i] = make_float2(gs * ga, gs * gb);
  }
}

__global__ void haversine_unitvec_kernel(const float* __restrict__ pred, const float2* __restrict__ target,
                                         float* __restrict__ loss, float* __restrict__ dpred, int64_t n,
                                         float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 t = target[i];
    const float v[3] = {pred[3 * i], pred[3 * i + 1], pred[3 * i + 2]};
    float g[3];
    loss[i] = math::sphere_angle_vec3(v, t.x, t.y, g);
    if (dpred) {
      dpred[3 * i] = gs * g[0];
      dpred[3 * i + 1] = gs * g[1];
      dpred[3 * i + 2] = gs * g[2];
    }
  }
}

bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }
}  // namespace

void haversine_loss(const Tensor& pred, const Tensor& target, const Tensor& loss, const Tensor& dpred,
                    float grad_scale) {
  const char* fn = "haversine_loss";
  detail::expect(pred, DType::F32, fn, "pred");
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
    detail::expect(dpred, DType::F32, fn, "dpred");
    GEOLOC_CHECK(dpred.shape() == pred.shape(), ShapeError, "cuda::", fn, ": dpred ", dpred.str(),
                 " does not match pred ", pred.str());
  }
  GEOLOC_CHECK(aligned8(pred.raw()) && aligned8(target.raw()) && (!dpred.defined() || aligned8(dpred.raw())),
               ShapeError, "cuda::", fn, ": tensors must be 8-byte aligned (a view at an odd float offset?)");
  if (n == 0) return;
  Context& ctx = detail::context_of(pred, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const unsigned g = detail::blocks_for(n, dev::kThreads, int64_t(ctx.sm_count()) * 32);
  float* dp = dpred.defined() ? static_cast<float*>(dpred.raw()) : nullptr;
  if (pred.dim(1) == 2) {
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, haversine_latlng_kernel)
    (static_cast<const float2*>(pred.raw()), static_cast<const float2*>(target.raw()),
     static_cast<float*>(loss.raw()), reinterpret_cast<float2*>(dp), n, grad_scale);
  } else {
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, haversine_unitvec_kernel)
    (static_cast<const float*>(pred.raw()), static_cast<const float2*>(target.raw()),
     static_cast<float*>(loss.raw()), dp, n, grad_scale);
  }
  GEOLOC_CUDA_LAUNCH_CHECK(s, "haversine_kernel");
}

}  // namespace geoloc::cuda
