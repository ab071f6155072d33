#pragma once
// The per-device CUDA context: one per device, created lazily on first use, never destroyed (see
// docs/cuda.md: tensors with static storage duration may outlive any destruction order we could pick).
// It owns the stream every geoloc kernel runs on, the cuDNN and cuBLASLt handles (created on first
// use), the scratch workspaces, the caching allocator and the algorithm caches. Nothing here needs
// cuda_runtime.h: the CUDA handle types are forward-declared opaque structs.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "geoloc/tensor.hpp"

struct CUstream_st;      // cudaStream_t = CUstream_st*
struct cudnnContext;     // cudnnHandle_t = cudnnContext*
struct cublasLtContext;  // cublasLtHandle_t = cublasLtContext*

namespace geoloc::cuda {

/// Number of CUDA devices; 0 where geoloc was built without CUDA, or no driver/device is present.
int device_count();

/// True when GEOLOC_CUDA_SYNC=1 was set at the first CUDA call: every launch is then followed by a
/// stream synchronisation and an error check, so a failing kernel is reported at its own launch.
bool sync_debug();

class Context {
 public:
  /// The context of `device` (created on first use). Throws CudaError where the device does not exist.
  static Context& get(int device);

  int device() const { return device_; }
  /// Makes this context's device current on the calling thread.
  void make_current() const;
  /// The stream all geoloc work on this device is ordered on.
  CUstream_st* stream() const;
  cudnnContext* cudnn();
  cublasLtContext* cublaslt();
  Allocator& allocator();

  /// A device scratch buffer of at least `bytes`, valid until the next workspace() call on this
  /// context (one op at a time; all work is ordered on the one stream, so reuse is safe).
  void* workspace(size_t bytes);
  /// Upper bound on the cuDNN workspace an algorithm may use (env GEOLOC_CUDNN_WORKSPACE_MB, default 512).
  size_t cudnn_workspace_limit() const { return cudnn_ws_limit_; }

  /// Blocks the host until this device's stream is idle.
  void synchronize() const;

  /// Name and figures of the device, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)".
  std::string description() const;
  int sm_count() const { return sm_count_; }

  /// Opaque per-context caches (cuDNN convolution algorithms, cuBLASLt heuristics), see src/cuda/.
  struct Caches;
  Caches& caches();

  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

 private:
  explicit Context(int device);
  int device_;
  int sm_count_ = 0;
  size_t cudnn_ws_limit_ = 0;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Times device work on a context's stream with CUDA events (for benchmarks).
class EventTimer {
 public:
  explicit EventTimer(int device = 0);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  /// Records the stop event, waits for it and returns the elapsed milliseconds since start().
  float stop_ms();

 private:
  int device_;
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

}  // namespace geoloc::cuda
