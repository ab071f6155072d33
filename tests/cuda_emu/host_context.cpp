// The emulated CUDA device for Tensor (tests only): the host side of include/geoloc/cuda/context.hpp and
// the cuda:: runtime entry points of backend.hpp (available, copy_bytes, allocator, synchronize), written
// for the emulator in place of src/cuda/context.cpp, whose device parts need the CUDA driver, cuDNN and
// cuBLASLt. Built only into geoloc_core_emu (tests/cuda_emu/CMakeLists.txt), never installed.
//
// What differs from the real context, on purpose, so that the sanitizers see more:
// - No caching allocator: every tensor is its own cudaMalloc of the exact size (the emulator's device
//   memory is host heap memory), so AddressSanitizer reports an index one past any tensor, and a block
//   freed is really freed (use after free). New memory is filled with 0xff bytes (NaN in f32 and bf16,
//   -1 in integers), so an element a kernel forgot to write shows.
// - workspace(bytes) hands out a fresh exact-size, junk-filled buffer on every call and frees the previous
//   one: an op that overruns its scratch, or keeps using a workspace pointer after the next workspace()
//   call (the contract says it is valid until then), fails under ASan.
// - sm_count() is small (2, or GEOLOC_EMU_SM_COUNT): the launchers size their grids from it, so small test
//   tensors already take the grid-stride loops and the multi-split reductions.
// - Every launch and copy is synchronous (the emulator's streams are tokens).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "cuda_common.cuh"

namespace geoloc::cuda {

int device_count() { return 1; }

bool sync_debug() { return false; }  // launches run to completion before they return anyway

namespace {
constexpr int kJunkByte = 0xff;

void* emu_malloc(size_t bytes) {
  void* p = nullptr;
  GEOLOC_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
  GEOLOC_CUDA_CHECK(cudaMemset(p, kJunkByte, bytes ? bytes : 1));
  return p;
}

class EmuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = emu_malloc(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    ++stats_.system_allocs;
    stats_.bytes_in_use += bytes;
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    if (!p) return;
    (void)cudaFree(p);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_in_use -= bytes;
  }
  Device device() const override { return Device::cuda(0); }
  Stats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  mutable std::mutex mu_;
  Stats stats_;
};
}  // namespace

// Nothing of the real caches (cuDNN / cuBLASLt algorithm choices) exists here.
struct Context::Caches {};

struct Context::Impl {
  cudaStream_t stream = nullptr;
  EmuAllocator alloc;
  Caches caches;
  std::shared_ptr<Storage> ws;
  std::mutex mu;
};

Context& Context::get(int device) {
  GEOLOC_CHECK(device == 0, CudaError, "cuda:", device, " requested but the emulator has 1 CUDA device");
  static Context* c = new Context(0);  // leaked, as the real registry is (see context.hpp)
  return *c;
}

Context::Context(int device) : device_(device), impl_(std::make_unique<Impl>()) {
  int sms = 2;
  if (const char* v = std::getenv("GEOLOC_EMU_SM_COUNT")) sms = std::max(1, std::atoi(v));
  sm_count_ = sms;
  GEOLOC_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
}

Context::~Context() = default;

void Context::make_current() const { GEOLOC_CUDA_CHECK(cudaSetDevice(device_)); }

CUstream_st* Context::stream() const { return impl_->stream; }

cudnnContext* Context::cudnn() {
  throw CudaError("cuDNN is not available under the CUDA emulator (tests/cuda_emu: convolutions are host stand-ins)");
}

cublasLtContext* Context::cublaslt() {
  throw CudaError("cuBLASLt is not available under the CUDA emulator (tests/cuda_emu: GEMMs are host stand-ins)");
}

Allocator& Context::allocator() { return impl_->alloc; }

void* Context::workspace(size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->ws.reset();  // the previous workspace dies here: a late use of it is a use after free
  impl_->ws = std::make_shared<Storage>(bytes ? bytes : 1, impl_->alloc);
  return impl_->ws->data;
}

void Context::synchronize() const { GEOLOC_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

std::string Context::description() const {
  return geoloc::detail::cat("cuda_emu (the host CUDA emulator of tests/cuda_emu, ", sm_count_, " SMs)");
}

Context::Caches& Context::caches() { return impl_->caches; }

Allocator& allocator(int device) { return Context::get(device).allocator(); }

bool available() { return true; }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memmove(dst, src, bytes);
    return;
  }
  const cudaMemcpyKind kind = dst_dev.is_cuda() ? (src_dev.is_cuda() ? cudaMemcpyDeviceToDevice
                                                                       : cudaMemcpyHostToDevice)
                                                : cudaMemcpyDeviceToHost;
  Context& c = Context::get(dst_dev.is_cuda() ? dst_dev.index : src_dev.index);
  GEOLOC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, detail::stream_of(c)));
  GEOLOC_CUDA_CHECK(cudaStreamSynchronize(detail::stream_of(c)));
}

void synchronize() { GEOLOC_CUDA_CHECK(cudaDeviceSynchronize()); }

// EventTimer: host wall time (the emulator has no device time worth measuring).
namespace {
using Clock = std::chrono::steady_clock;
}
EventTimer::EventTimer(int device) : device_(device) {
  start_ = new Clock::time_point();
  stop_ = new Clock::time_point();
}
EventTimer::~EventTimer() {
  delete static_cast<Clock::time_point*>(start_);
  delete static_cast<Clock::time_point*>(stop_);
}
void EventTimer::start() { *static_cast<Clock::time_point*>(start_) = Clock::now(); }
float EventTimer::stop_ms() {
  *static_cast<Clock::time_point*>(stop_) = Clock::now();
  return std::chrono::duration<float, std::milli>(*static_cast<Clock::time_point*>(stop_) -
                                                  *static_cast<Clock::time_point*>(start_))
      .count();
}

}  // namespace geoloc::cuda
