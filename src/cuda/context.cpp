// The CUDA device for Tensor: the per-device context registry, the caching device allocator, copies,
// error reporting. See docs/cuda.md for the design.
#include "geoloc/cuda/context.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "caches.cuh"
#include "geoloc/detail/block_cache.hpp"
#include "cuda_libs.cuh"

namespace geoloc::cuda {

// ---------------------------------------------------------------- errors
namespace detail {

void throw_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  throw CudaError(geoloc::detail::cat(file, ":", line, ": ", expr, " failed: ", cudnnGetErrorString(s), " (",
                                      static_cast<int>(s), ")"));
}
void throw_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  throw CudaError(geoloc::detail::cat(file, ":", line, ": ", expr, " failed: ", cublasGetStatusName(s), " (",
                                      cublasGetStatusString(s), ")"));
}

}  // namespace detail

// ---------------------------------------------------------------- device discovery
namespace {
struct Discovery {
  int count = 0;
  std::string reason;  // why count is 0
};
const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      r.reason = geoloc::detail::cat("cudaGetDeviceCount failed: ", cudaGetErrorName(e), " (",
                                     cudaGetErrorString(e), ")");
      (void)cudaGetLastError();
      n = 0;
    } else if (n == 0) {
      r.reason = "the CUDA driver reports no device";
    }
    r.count = n;
    return r;
  }();
  return d;
}
}  // namespace

int device_count() { return discovery().count; }

bool available() {
  try {
    return discovery().count > 0;
  } catch (...) {
    return false;
  }
}

bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("GEOLOC_CUDA_SYNC");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// ---------------------------------------------------------------- caching allocator
namespace {
// Sizes are rounded to 512 B below 1 MiB and to 2 MiB above, and cached blocks are reused only at
// exactly their rounded size: a training step that repeats its shapes finds every block in the cache
// after its first run, and rounding bounds the waste to 2 MiB per block. All geoloc work on a device
// is ordered on the context's one stream, so a block freed by the host can be handed out at once: any
// kernel that will use it is queued after every kernel that used it before.
class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}
  ~CudaCachingAllocator() override = default;  // never destroyed (the context registry leaks on purpose)

  void* allocate(size_t bytes) override {
    const size_t sz = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    if (void* p = cache_.take(sz)) {
      stats_.bytes_in_use += sz;
      return p;
    }
    int prev = -1;
    GEOLOC_CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device_) GEOLOC_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_all_locked();  // give the cache back and try once more
      e = cudaMalloc(&p, sz);
    }
    if (prev != device_) (void)cudaSetDevice(prev);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw CudaError(geoloc::detail::cat("cudaMalloc of ", sz, " bytes on cuda:", device_,
                                          " failed: ", cudaGetErrorString(e), " (", stats_.bytes_in_use,
                                          " bytes in use)"));
    }
    ++stats_.system_allocs;
    stats_.bytes_in_use += sz;
    return p;
  }

  void deallocate(void* p, size_t bytes) override {  // must not throw: called from ~Storage
    if (!p) return;
    const size_t sz = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_in_use -= sz;
    geoloc::detail::BlockCache::Blocks out;
    cache_.put(p, sz, out);
    if (!out.empty()) release_locked(out);
  }

  Device device() const override { return Device::cuda(device_); }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
  }

  void set_cache_limit(size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    geoloc::detail::BlockCache::Blocks out;
    cache_.set_limit(bytes, out);
    if (!out.empty()) release_locked(out);
  }

  Stats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = stats_;
    s.bytes_cached = cache_.bytes();
    s.cache_limit = cache_.limit();
    return s;
  }

 private:
  static size_t round(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kBoundary = size_t(1) << 20;
    if (bytes <= kBoundary) return std::max(kSmall, (bytes + kSmall - 1) / kSmall * kSmall);
    return (bytes + kLarge - 1) / kLarge * kLarge;
  }
  void release_all_locked() { release_locked(cache_.take_all()); }
  void release_locked(const geoloc::detail::BlockCache::Blocks& blocks) {
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    (void)cudaSetDevice(device_);
    (void)cudaDeviceSynchronize();  // a cached block may still be read by queued work of another stream
    for (const auto& b : blocks) (void)cudaFree(b.first);
    if (prev >= 0 && prev != device_) (void)cudaSetDevice(prev);
  }

  int device_;
  mutable std::mutex mu_;
  geoloc::detail::BlockCache cache_;  // no limit by default: a GPU is the process's own; given back on cudaMalloc failure
  Stats stats_;
};
}  // namespace

// ---------------------------------------------------------------- context
struct Context::Impl {
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasLtHandle_t lt = nullptr;
  CudaCachingAllocator alloc;
  Caches caches;
  std::shared_ptr<Storage> ws;  // workspace, grown on demand
  std::mutex mu;
  std::string name;
  size_t total_mem = 0;
  int major = 0, minor = 0;
  explicit Impl(int d) : alloc(d) {}
};

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
// Leaked on purpose: contexts are never destroyed, so tensors destroyed during static destruction
// still find their allocator, and no CUDA call happens after the driver has shut down.
std::vector<Context*>& registry() {
  static auto* r = new std::vector<Context*>();
  return *r;
}
}  // namespace

Context& Context::get(int device) {
  const Discovery& d = discovery();
  if (d.count == 0)
    throw CudaError(
        geoloc::detail::cat("cuda:", device, " requested but no CUDA device is usable: ", d.reason,
                            ". Use Device::cpu(), or run on a machine with an NVIDIA GPU and driver"));
  GEOLOC_CHECK(device >= 0 && device < d.count, CudaError, "cuda:", device,
               " requested but this machine has ", d.count, " CUDA device(s)");
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& r = registry();
  if (r.empty()) r.assign(d.count, nullptr);
  if (!r[device]) r[device] = new Context(device);
  return *r[device];
}

Context::Context(int device) : device_(device), impl_(std::make_unique<Impl>(device)) {
  GEOLOC_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp p{};
  GEOLOC_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  sm_count_ = p.multiProcessorCount;
  impl_->name = p.name;
  impl_->total_mem = p.totalGlobalMem;
  impl_->major = p.major;
  impl_->minor = p.minor;
  GEOLOC_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  size_t mb = 512;
  if (const char* v = std::getenv("GEOLOC_CUDNN_WORKSPACE_MB"))
    mb = static_cast<size_t>(std::max(0L, std::atol(v)));
  cudnn_ws_limit_ = mb << 20;
}

Context::~Context() = default;  // unreachable in practice (see registry())

void Context::make_current() const {
  int cur = -1;
  GEOLOC_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device_) GEOLOC_CUDA_CHECK(cudaSetDevice(device_));
}

CUstream_st* Context::stream() const { return impl_->stream; }

cudnnContext* Context::cudnn() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->cudnn) {
    make_current();
    GEOLOC_CUDNN_CHECK(cudnnCreate(&impl_->cudnn));
    GEOLOC_CUDNN_CHECK(cudnnSetStream(impl_->cudnn, impl_->stream));
  }
  return impl_->cudnn;
}

cublasLtContext* Context::cublaslt() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->lt) {
    make_current();
    GEOLOC_CUBLAS_CHECK(cublasLtCreate(&impl_->lt));
  }
  return impl_->lt;
}

Allocator& Context::allocator() { return impl_->alloc; }

void* Context::workspace(size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (bytes == 0) bytes = 1;
  if (!impl_->ws || impl_->ws->bytes < bytes) {
    impl_->ws.reset();  // back to the cache first, so that growing can reuse it
    impl_->ws = std::make_shared<Storage>(bytes, impl_->alloc);
  }
  return impl_->ws->data;
}

void Context::synchronize() const {
  make_current();
  GEOLOC_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

std::string Context::description() const {
  return geoloc::detail::cat(impl_->name, " (sm_", impl_->major, impl_->minor, ", ", sm_count_, " SMs, ",
                             static_cast<double>(impl_->total_mem) / (1 << 30), " GiB)");
}

Context::Caches& Context::caches() { return impl_->caches; }

// ---------------------------------------------------------------- backend entry points
Allocator& allocator(int device) { return Context::get(device).allocator(); }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memmove(dst, src, bytes);
    return;
  }
  Context& c = Context::get(dst_dev.is_cuda() ? dst_dev.index : src_dev.index);
  if (src_dev.is_cuda() && dst_dev.is_cuda() && src_dev.index != dst_dev.index)
    Context::get(src_dev.index).synchronize();  // the source's producers run on the other device's stream
  c.make_current();
  cudaStream_t s = detail::stream_of(c);
  GEOLOC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  GEOLOC_CUDA_CHECK(cudaStreamSynchronize(s));
}

void synchronize() {
  if (!available()) return;
  std::vector<Context*> live;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    for (Context* c : registry())
      if (c) live.push_back(c);
  }
  for (Context* c : live) c->synchronize();
}

// ---------------------------------------------------------------- timer
EventTimer::EventTimer(int device) : device_(device) {
  Context& c = Context::get(device);
  c.make_current();
  cudaEvent_t a = nullptr, b = nullptr;
  GEOLOC_CUDA_CHECK(cudaEventCreate(&a));
  GEOLOC_CUDA_CHECK(cudaEventCreate(&b));
  start_ = a;
  stop_ = b;
}
EventTimer::~EventTimer() {
  if (start_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  if (stop_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}
void EventTimer::start() {
  Context& c = Context::get(device_);
  c.make_current();
  GEOLOC_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), detail::stream_of(c)));
}
float EventTimer::stop_ms() {
  Context& c = Context::get(device_);
  c.make_current();
  GEOLOC_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), detail::stream_of(c)));
  GEOLOC_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0.0f;
  GEOLOC_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace geoloc::cuda
