#pragma once
// cuda_emu: runs CUDA kernels as host C++ for tests (never part of the installed library).
//
// A .cu file compiled with -DGEOLOC_CUDA_EMU=1 and this folder's parent first on the include path sees
// these definitions instead of the toolkit's. Each launch runs the grid on the calling thread: blocks
// one after another, the threads of a block as fibres, switched only at __syncthreads(), warp intrinsics
// and a few yield points, in a seeded pseudo-random order per round. The semantics follow the CUDA C++
// Programming Guide; tests/cuda_emu/README.md lists what is checked and what is not.
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#ifndef GEOLOC_CUDA_EMU
#define GEOLOC_CUDA_EMU 1
#endif

// ---- execution space and storage specifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// __noinline__ is left undefined: libstdc++ spells __attribute__((__noinline__)) in its own headers.
#define __launch_bounds__(...)
#define __grid_constant__
#define __constant__
#define __managed__
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one object per OS thread, shared by the fibres (threads) of the block running
// on it. A block runs on one OS thread from start to end, so a block pool on several OS threads would
// keep one copy per worker. Note: the contents persist between blocks and launches (zero at first use).
#define __shared__ static thread_local
// __restrict__ is a GCC and clang keyword already.

// ---- vector types (alignment as in the CUDA headers: float4/int4/double2 16 bytes, float2 8)
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};
struct __attribute__((aligned(8))) float2 {
  float x, y;
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct float3 {
  float x, y, z;
};
struct __attribute__((aligned(8))) int2 {
  int x, y;
};
struct __attribute__((aligned(16))) int4 {
  int x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
  unsigned x, y;
};
struct __attribute__((aligned(16))) uint4 {
  unsigned x, y, z, w;
};
struct __attribute__((aligned(16))) double2 {
  double x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

constexpr int warpSize = 32;

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

namespace cuda_emu {

/// Thrown out of a launch when the emulator finds a kernel error (divergent barrier, deadlock, warp
/// intrinsic misuse, an exception inside the kernel); what() names the kernel, block and threads.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Seed of the per-round thread order (default: $CUDA_EMU_SEED, else a fixed value).
void set_seed(uint64_t seed);
uint64_t seed();

namespace detail {

/// What a running fibre exposes to the inline accessors.
struct ThreadView {
  uint3 thread_idx;
  unsigned linear, lane, warp;
};
struct BlockView {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  unsigned char* dynamic_shared;
  size_t dynamic_shared_bytes;
};
extern thread_local ThreadView* tl_thread;
extern thread_local BlockView* tl_block;
[[noreturn]] void outside_kernel(const char* what);

inline const ThreadView& self(const char* what) {
  if (!tl_thread) outside_kernel(what);
  return *tl_thread;
}
inline const BlockView& block(const char* what) {
  if (!tl_block) outside_kernel(what);
  return *tl_block;
}
inline void* dynamic_shared() { return block("dynamic shared memory").dynamic_shared; }

enum class Op : uint8_t {
  None,
  SyncThreads,  // the block barriers: __syncthreads and its _count/_and/_or forms
  SyncCount,
  SyncAnd,
  SyncOr,
  SyncWarp,  // the warp collectives
  ShflIdx,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  Any,
  All,
  ActiveMask,
};
/// Suspends the calling thread until the collective `op` completes for the threads it involves and
/// returns this thread's result (the shuffled bits, the vote, the barrier's count/and/or).
uint64_t collective(Op op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line);
/// Lets the other threads of the block run (failed atomicCAS, __nanosleep): spin-waits make progress.
void yield();

template <class T>
struct is_shfl_type : std::bool_constant<std::is_arithmetic_v<T>> {};

template <class T>
uint64_t to_bits(const T& v) {
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// ---- launch
struct LaunchConfig {
  dim3 grid, block;
  size_t shmem;
  cudaStream_t stream;
  const char* kernel;  // the kernel expression as written at the launch
  const char* file;
  int line;
};
/// Called (when set) for every launch whose configuration is valid, before it runs: lets a test count
/// the kernels and grid shapes it exercised. nullptr removes it.
using LaunchObserver = void (*)(const LaunchConfig&);
void set_launch_observer(LaunchObserver observer);
/// Validates the configuration (an invalid one sets the last error, like the hardware, and runs
/// nothing), then runs body(ctx) once per thread of the grid. Throws KernelError.
void run_grid(const LaunchConfig& cfg, void (*body)(void*), void* ctx);

template <class F>
struct Launch {
  LaunchConfig cfg;
  F call;  // [&](auto&... a) { kernel(a...); }
  template <class... A>
  void operator()(A&&... a) {
    // Kernel arguments are copied once at the launch, as the driver does; every thread then calls the
    // kernel with these copies (by-value parameters: each thread gets its own).
    std::tuple<std::decay_t<A>...> params(std::forward<A>(a)...);
    auto body = [&] { std::apply(call, params); };
    run_grid(cfg, [](void* p) { (*static_cast<decltype(body)*>(p))(); }, &body);
  }
};
template <class F>
Launch<F> make_launch(const LaunchConfig& cfg, F f) {
  return Launch<F>{cfg, std::move(f)};
}

}  // namespace detail
}  // namespace cuda_emu

/// CUDA_EMU_LAUNCH(grid, block, shmem, stream, kernel)(args...): kernel<<<grid, block, shmem, stream>>>(args...).
/// The kernel comes last so that template arguments with commas need no parentheses; grid and block
/// are anything dim3 is constructible from (write dim3(a, b), not {a, b}).
#define CUDA_EMU_LAUNCH(grid, block, shmem, stream, ...)                                                     \
  ::cuda_emu::detail::make_launch(::cuda_emu::detail::LaunchConfig{dim3(grid), dim3(block), size_t(shmem),  \
                                                                   (stream), #__VA_ARGS__, __FILE__, __LINE__}, \
                                  [&](auto&... cuda_emu_args_) { __VA_ARGS__(cuda_emu_args_...); })
/// The launch's dynamic shared memory as a T* named `name` (extern __shared__ T name[] under nvcc).
/// Aligned to 16 bytes; filled with 0xff bytes at the start of every block, so a read before any write
/// gives NaN / -1.
#define CUDA_EMU_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::cuda_emu::detail::dynamic_shared())

// ---- built-in variables (per thread / per block; usable as threadIdx.x expressions)
#define threadIdx (::cuda_emu::detail::self("threadIdx").thread_idx)
#define blockIdx (::cuda_emu::detail::block("blockIdx").block_idx)
#define blockDim (::cuda_emu::detail::block("blockDim").block_dim)
#define gridDim (::cuda_emu::detail::block("gridDim").grid_dim)

// ---- synchronisation. The call site identifies a barrier: threads of a block waiting at different
// __syncthreads() calls is reported as a divergent barrier.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuda_emu::detail::collective(cuda_emu::detail::Op::SyncThreads, 0, 0, 0, 0, file, line);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(cuda_emu::detail::collective(cuda_emu::detail::Op::SyncCount, 0, pred != 0, 0, 0, file, line));
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(cuda_emu::detail::collective(cuda_emu::detail::Op::SyncAnd, 0, pred != 0, 0, 0, file, line));
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(cuda_emu::detail::collective(cuda_emu::detail::Op::SyncOr, 0, pred != 0, 0, 0, file, line));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  cuda_emu::detail::collective(cuda_emu::detail::Op::SyncWarp, mask, 0, 0, 0, file, line);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { cuda_emu::detail::yield(); }
[[noreturn]] void __trap();

// ---- warp shuffles (any arithmetic type, and the bf16/half types; width a power of two <= 32)
template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  static_assert(cuda_emu::detail::is_shfl_type<T>::value && sizeof(T) <= 8, "no __shfl_sync for this type");
  using namespace cuda_emu::detail;
  return from_bits<T>(collective(Op::ShflIdx, mask, to_bits(var), srcLane, width, file, line));
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  static_assert(cuda_emu::detail::is_shfl_type<T>::value && sizeof(T) <= 8, "no __shfl_up_sync for this type");
  using namespace cuda_emu::detail;
  return from_bits<T>(collective(Op::ShflUp, mask, to_bits(var), int(delta), width, file, line));
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(cuda_emu::detail::is_shfl_type<T>::value && sizeof(T) <= 8, "no __shfl_down_sync for this type");
  using namespace cuda_emu::detail;
  return from_bits<T>(collective(Op::ShflDown, mask, to_bits(var), int(delta), width, file, line));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  static_assert(cuda_emu::detail::is_shfl_type<T>::value && sizeof(T) <= 8, "no __shfl_xor_sync for this type");
  using namespace cuda_emu::detail;
  return from_bits<T>(collective(Op::ShflXor, mask, to_bits(var), laneMask, width, file, line));
}

// ---- warp votes
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  using namespace cuda_emu::detail;
  return unsigned(collective(Op::Ballot, mask, pred != 0, 0, 0, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace cuda_emu::detail;
  return int(collective(Op::Any, mask, pred != 0, 0, 0, file, line));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace cuda_emu::detail;
  return int(collective(Op::All, mask, pred != 0, 0, 0, file, line));
}
/// The lanes of the warp that are at this same __activemask() call once the warp's other lanes are all
/// suspended or exited (the emulator's notion of "converged").
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace cuda_emu::detail;
  return unsigned(collective(Op::ActiveMask, 0, 0, 0, 0, file, line));
}
