// Self-tests of the CUDA emulator (tests/cuda_emu), built with ASan and UBSan. The kernels here are the
// tests' own: correct ones must give exact results under every schedule seed, broken ones (a missing
// or divergent barrier, warp intrinsic misuse) must be caught.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "launch.cuh"
#include "test_kernels.hpp"

namespace {

// ---- device buffers
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count, const T& fill = T{}) : n(count) {
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    std::vector<T> h(n, fill);
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> get() const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
};

struct SeedGuard {  // restores the schedule seed after a test that varies it
  uint64_t s = cuda_emu::seed();
  ~SeedGuard() { cuda_emu::set_seed(s); }
};

std::vector<int> iota_data(size_t n, int mod = 97) {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int((i * 37 + 11) % mod) - mod / 2;
  return v;
}

// Runs `launch` and returns the KernelError's message ("" when nothing was thrown).
template <class F>
std::string kernel_error(F&& launch) {
  try {
    launch();
  } catch (const cuda_emu::KernelError& e) {
    return e.what();
  }
  return "";
}

// ---- kernels
constexpr int kBlock = 256;

// Tree reduction in shared memory; one partial sum per block.
__global__ void block_reduce(const int* x, int n, int* out) {
  __shared__ int s[kBlock];
  const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  s[t] = i < n ? x[i] : 0;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (t < h) s[t] += s[t + h];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}
// The same with the first barrier missing (the test's bug, not the emulator's); dynamic shared memory,
// which the emulator fills with 0xff at each block start, so a too-early read sees -1.
__global__ void block_reduce_missing_barrier(const int* x, int n, int* out) {
  GEOLOC_DYNAMIC_SHARED(int, s);
  const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  s[t] = i < n ? x[i] : 0;
  // __syncthreads();   <- missing
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (t < h) s[t] += s[t + h];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void warp_ops(const int* x, int* sum, int* scan, int* down, int* bcast, int* xor8, int* idx8) {
  const int lane = threadIdx.x & 31, i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = x[i];
  int s = v;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  sum[i] = s;
  int c = v;  // inclusive prefix sum
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, c, o);
    if (lane >= o) c += u;
  }
  scan[i] = c;
  down[i] = __shfl_down_sync(0xffffffffu, v, 3);
  bcast[i] = __shfl_sync(0xffffffffu, v, 5);
  xor8[i] = __shfl_xor_sync(0xffffffffu, v, 8, 8);  // width 8: the partner is outside the group
  idx8[i] = __shfl_sync(0xffffffffu, v, 10, 8);     // srcLane 10 in groups of 8 -> lane 2 of the group
}

__global__ void vote_ops(const int* x, unsigned* ballot, int* any, int* all, unsigned* half_ballot) {
  const int lane = threadIdx.x & 31, i = blockIdx.x * blockDim.x + threadIdx.x;
  const int p = x[i] > 0;
  ballot[i] = __ballot_sync(0xffffffffu, p);
  any[i] = __any_sync(0xffffffffu, p) | (__all_sync(0xffffffffu, p) << 1);
  all[i] = __all_sync(0xffffffffu, 1);
  if (lane < 16) half_ballot[i] = __ballot_sync(0x0000ffffu, p);  // only the lower half takes part
  else half_ballot[i] = __ballot_sync(0xffff0000u, 1);
}

__global__ void histogram(const int* x, int n, int* global_bins, float* weights) {
  __shared__ int bins[16];
  if (threadIdx.x < 16) bins[threadIdx.x] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    atomicAdd(&bins[x[i] & 15], 1);
    atomicAdd(&weights[x[i] & 15], 0.5f);
  }
  __syncthreads();
  if (threadIdx.x < 16) atomicAdd(&global_bins[threadIdx.x], bins[threadIdx.x]);
}

// Every (3-D) thread of the grid marks the elements of a grid-stride loop it owns.
__global__ void grid_stride_mark(int* hits, int* owner, int n) {
  const unsigned bx = blockDim.x * blockDim.y * blockDim.z;
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned total = bx * gridDim.x * gridDim.y * gridDim.z;
  for (unsigned i = bid * bx + tid; i < unsigned(n); i += total) {
    atomicAdd(&hits[i], 1);
    owner[i] = int(bid * bx + tid);
  }
}

// Reverses each block's slice through dynamic shared memory; first records what it found there.
__global__ void reverse_dynamic(const float* x, float* y, int* first_seen) {
  GEOLOC_DYNAMIC_SHARED(float, s);
  GEOLOC_DYNAMIC_SHARED(int, si);  // the same bytes seen as int
  const int t = threadIdx.x, b = blockIdx.x * blockDim.x;
  first_seen[b + t] = si[t];
  __syncthreads();
  s[t] = x[b + t];
  __syncthreads();
  y[b + t] = s[blockDim.x - 1 - t];
}

__global__ void sync_reductions(const int* x, int* cnt, int* all, int* any) {
  const int p = x[threadIdx.x] > 0;
  const int c = __syncthreads_count(p), a = __syncthreads_and(p), o = __syncthreads_or(p);
  cnt[threadIdx.x] = c;
  all[threadIdx.x] = a;
  any[threadIdx.x] = o;
}

template <class T, bool Twice>
__global__ void templated(T* y, T v) {
  y[threadIdx.x] = Twice ? v + v : v;
}

__global__ void divergent_exit(int* out) {
  if (threadIdx.x >= 40) return;  // a block-dependent early exit before a barrier: a bug
  __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void divergent_sites(int* out) {
  if (threadIdx.x % 2)
    __syncthreads();
  else
    __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void shfl_vs_barrier(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x == 7)
    __syncthreads();  // lane 7 never reaches the shuffle its warp waits at
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}
__global__ void mask_without_self(int* out) { out[threadIdx.x] = __shfl_sync(0x1u, 1, 0); }
__global__ void shfl_from_exited(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 16);
}
__global__ void mismatched_intrinsics(int* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
  else
    out[threadIdx.x] = int(__ballot_sync(0xffffffffu, 1));
}
__global__ void traps(int*) {
  if (threadIdx.x == 3) __trap();
}

// Threads of a block take a spin lock in turn (needs a failing atomicCAS to let the holder run).
__global__ void spin_lock_counter(int* lock, int* counter) {
  bool done = false;
  while (!done) {
    if (atomicCAS(lock, 0, 1) == 0) {
      const int c = *counter;
      __nanosleep(100);  // hold the lock across a switch: the others' atomicCAS fails meanwhile
      *counter = c + 1;
      atomicExch(lock, 0);
      done = true;
    }
  }
}

__global__ void active_mask(unsigned* out) {
  if (threadIdx.x % 3 == 0)
    out[threadIdx.x] = __activemask();
  else
    out[threadIdx.x] = __activemask() | 0x80000000u;
}

// The order in which threads pass the point between two barriers.
__global__ void arrival_order(int* ticket, int* order) {
  order[threadIdx.x] = atomicAdd(ticket, 1);
  __syncthreads();
  order[blockDim.x + threadIdx.x] = atomicAdd(ticket, 1);
}

__global__ void never_runs(int* out) { out[0] = 42; }

}  // namespace

TEST_CASE("cuda_emu: block reduction with shared memory and barriers equals the serial sum") {
  SeedGuard g;
  const int n = 1000;  // not a multiple of the block
  const std::vector<int> h = iota_data(n);
  const int want = std::accumulate(h.begin(), h.end(), 0);
  Dev<int> x(h);
  const int blocks = (n + kBlock - 1) / kBlock;
  for (uint64_t seed : {1, 2, 3, 77, 12345}) {
    cuda_emu::set_seed(seed);
    Dev<int> out(blocks, -999);
    GEOLOC_LAUNCH(blocks, kBlock, 0, nullptr, block_reduce)(x.p, n, out.p);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<int> part = out.get();
    CHECK(std::accumulate(part.begin(), part.end(), 0) == want);
    for (int b = 0; b < blocks; ++b) {
      int s = 0;
      for (int i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) s += h[i];
      CHECK(part[b] == s);
    }
  }
}

TEST_CASE("cuda_emu: a missing __syncthreads changes the result under the randomised schedule") {
  SeedGuard g;
  const int n = 4 * kBlock;
  const std::vector<int> h = iota_data(n);
  Dev<int> x(h);
  int caught = 0;
  const int seeds = 10;
  for (int seed = 1; seed <= seeds; ++seed) {
    cuda_emu::set_seed(seed);
    Dev<int> out(4, 0), ok(4, 0);
    GEOLOC_LAUNCH(4, kBlock, kBlock * sizeof(int), nullptr, block_reduce_missing_barrier)(x.p, n, out.p);
    GEOLOC_LAUNCH(4, kBlock, 0, nullptr, block_reduce)(x.p, n, ok.p);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    caught += out.get() != ok.get();
  }
  CHECK(caught == seeds);
}

TEST_CASE("cuda_emu: the thread order varies between barrier phases and seeds, reproducibly") {
  SeedGuard g;
  auto run = [](uint64_t seed) {
    cuda_emu::set_seed(seed);
    Dev<int> ticket(1, 0), order(128, -1);
    GEOLOC_LAUNCH(1, 64, 0, nullptr, arrival_order)(ticket.p, order.p);
    return order.get();
  };
  const std::vector<int> a = run(5), b = run(5), c = run(6);
  CHECK(a == b);
  CHECK(a != c);
  std::vector<int> p1(a.begin(), a.begin() + 64), p2(a.begin() + 64, a.end());
  for (int& v : p2) v -= 64;
  CHECK(p1 != p2);  // a new permutation after the barrier
  std::vector<int> sorted = p1;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 64; ++i) CHECK(sorted[i] == i);  // each thread passed exactly once
}

TEST_CASE("cuda_emu: warp shuffles follow the Programming Guide, width included") {
  const int n = 64;
  std::vector<int> h(n);
  for (int i = 0; i < n; ++i) h[i] = 3 * i + 1;
  Dev<int> x(h), sum(n), scan(n), down(n), bcast(n), xor8(n), idx8(n);
  GEOLOC_LAUNCH(1, n, 0, nullptr, warp_ops)(x.p, sum.p, scan.p, down.p, bcast.p, xor8.p, idx8.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto s = sum.get(), sc = scan.get(), d = down.get(), b = bcast.get(), x8 = xor8.get(), i8 = idx8.get();
  for (int i = 0; i < n; ++i) {
    const int w = i / 32 * 32, lane = i % 32;
    int ws = 0, pre = 0;
    for (int k = 0; k < 32; ++k) ws += h[w + k];
    for (int k = 0; k <= lane; ++k) pre += h[w + k];
    CHECK(s[i] == ws);
    CHECK(sc[i] == pre);
    CHECK(d[i] == (lane + 3 < 32 ? h[i + 3] : h[i]));  // the top 3 lanes keep their own value
    CHECK(b[i] == h[w + 5]);
    // width 8: lane ^ 8 lies in a later group (own value) or an earlier one (readable), as the guide says
    CHECK(x8[i] == (lane & 8 ? h[i - 8] : h[i]));
    CHECK(i8[i] == h[w + lane / 8 * 8 + 2]);
  }
}

TEST_CASE("cuda_emu: __ballot_sync, __any_sync and __all_sync") {
  const int n = 64;
  std::vector<int> h(n, -1);
  for (int i = 0; i < 32; i += 3) h[i] = 1;  // warp 0: lanes 0, 3, 6, ...; warp 1: none
  Dev<int> x(h), any(n), all(n);
  Dev<unsigned> ballot(n), half(n);
  GEOLOC_LAUNCH(1, n, 0, nullptr, vote_ops)(x.p, ballot.p, any.p, all.p, half.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  unsigned want0 = 0;
  for (int l = 0; l < 32; l += 3) want0 |= 1u << l;
  const auto b = ballot.get(), hb = half.get();
  const auto an = any.get(), al = all.get();
  for (int i = 0; i < n; ++i) {
    CHECK(b[i] == (i < 32 ? want0 : 0u));
    CHECK(an[i] == (i < 32 ? 1 : 0));  // any = bit 0, all = bit 1 (never all positive)
    CHECK(al[i] == 1);
    CHECK(hb[i] == ((i % 32) < 16 ? (i < 32 ? (want0 & 0xffffu) : 0u) : 0xffff0000u));
  }
}

TEST_CASE("cuda_emu: atomicAdd histogram in shared and global memory") {
  const int n = 5000;
  std::vector<int> h(n);
  for (int i = 0; i < n; ++i) h[i] = (i * 7919) % 1000;
  std::vector<int> want(16, 0);
  for (int v : h) ++want[v & 15];
  Dev<int> x(h), bins(16, 0);
  Dev<float> weights(16, 0.0f);
  GEOLOC_LAUNCH(5, 128, 0, nullptr, histogram)(x.p, n, bins.p, weights.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto got = bins.get();
  const auto w = weights.get();
  for (int k = 0; k < 16; ++k) {
    CHECK(got[k] == want[k]);
    CHECK(w[k] == doctest::Approx(0.5 * want[k]));
  }
}

TEST_CASE("cuda_emu: grid-stride loops cover every element once (1-D, 2-D, 3-D, one or many blocks)") {
  struct Case {
    dim3 grid, block;
    int n;
  };
  for (const Case& c : {Case{dim3(1), dim3(256), 1000}, Case{dim3(3), dim3(100), 1000},
                        Case{dim3(2, 3), dim3(16, 4), 1001}, Case{dim3(2, 2, 2), dim3(4, 3, 5), 997},
                        Case{dim3(50), dim3(32), 700}}) {
    CAPTURE(c.n);
    Dev<int> hits(c.n, 0), owner(c.n, -7);
    GEOLOC_LAUNCH(c.grid, c.block, 0, nullptr, grid_stride_mark)(hits.p, owner.p, c.n);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const int total = int(c.grid.x * c.grid.y * c.grid.z * c.block.x * c.block.y * c.block.z);
    const auto hv = hits.get(), ov = owner.get();
    for (int i = 0; i < c.n; ++i) {
      CHECK(hv[i] == 1);
      CHECK(ov[i] == i % total);
    }
  }
}

TEST_CASE("cuda_emu: dynamic shared memory is per block, sized by the launch, poisoned at block start") {
  const int threads = 64, blocks = 3;
  std::vector<float> h(threads * blocks);
  for (size_t i = 0; i < h.size(); ++i) h[i] = float(i);
  Dev<float> x(h), y(h.size(), 0.0f);
  Dev<int> seen(h.size(), 0);
  GEOLOC_LAUNCH(blocks, threads, threads * sizeof(float), nullptr, reverse_dynamic)(x.p, y.p, seen.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto yv = y.get();
  const auto sv = seen.get();
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) {
      CHECK(yv[b * threads + t] == h[b * threads + threads - 1 - t]);
      CHECK(sv[b * threads + t] == -1);  // 0xffffffff: no value carried over from the previous block
    }
}

TEST_CASE("cuda_emu: __syncthreads_count, _and, _or") {
  std::vector<int> h(96, 0);
  for (int i = 0; i < 96; i += 4) h[i] = 1;
  Dev<int> x(h), cnt(96), all(96), any(96);
  GEOLOC_LAUNCH(1, 96, 0, nullptr, sync_reductions)(x.p, cnt.p, all.p, any.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  for (int v : cnt.get()) CHECK(v == 24);
  for (int v : all.get()) CHECK(v == 0);
  for (int v : any.get()) CHECK(v == 1);
}

TEST_CASE("cuda_emu: template kernels launch with their arguments, commas included") {
  Dev<float> y(8, 0.0f);
  GEOLOC_LAUNCH(1, 8, 0, nullptr, templated<float, true>)(y.p, 1.5f);
  for (float v : y.get()) CHECK(v == 3.0f);
  GEOLOC_LAUNCH(1, 8, 0, nullptr, templated<float, false>)(y.p, 2);  // int converts to the parameter type
  for (float v : y.get()) CHECK(v == 2.0f);
}

TEST_CASE("cuda_emu: a divergent barrier is an error naming the kernel, block and threads") {
  Dev<int> out(64, 0);
  std::string m = kernel_error([&] { GEOLOC_LAUNCH(2, 64, 0, nullptr, divergent_exit)(out.p); });
  CHECK(m.find("divergent barrier") != std::string::npos);
  CHECK(m.find("divergent_exit") != std::string::npos);
  CHECK(m.find("reached by 40 of 64 threads") != std::string::npos);
  CHECK(m.find("(40,0,0)") != std::string::npos);
  m = kernel_error([&] { GEOLOC_LAUNCH(1, 64, 0, nullptr, divergent_sites)(out.p); });
  CHECK(m.find("different barriers") != std::string::npos);
  CHECK(m.find("test_emulator.cpp") != std::string::npos);
}

TEST_CASE("cuda_emu: a deadlock between a shuffle and a barrier is reported, not hung") {
  Dev<int> out(64, 0);
  const std::string m = kernel_error([&] { GEOLOC_LAUNCH(1, 64, 0, nullptr, shfl_vs_barrier)(out.p); });
  CHECK(m.find("deadlock") != std::string::npos);
  CHECK(m.find("__shfl_xor_sync(mask 0xffffffff)") != std::string::npos);
  CHECK(m.find("__syncthreads") != std::string::npos);
}

TEST_CASE("cuda_emu: warp intrinsic misuse is reported") {
  Dev<int> out(32, 0);
  std::string m = kernel_error([&] { GEOLOC_LAUNCH(1, 32, 0, nullptr, mask_without_self)(out.p); });
  CHECK(m.find("does not name its own lane") != std::string::npos);
  m = kernel_error([&] { GEOLOC_LAUNCH(1, 32, 0, nullptr, shfl_from_exited)(out.p); });
  CHECK(m.find("which has exited") != std::string::npos);
  m = kernel_error([&] { GEOLOC_LAUNCH(1, 16, 0, nullptr, shfl_from_exited)(out.p); });  // partial warp
  CHECK(m.find("does not exist") != std::string::npos);
  m = kernel_error([&] { GEOLOC_LAUNCH(1, 32, 0, nullptr, mismatched_intrinsics)(out.p); });
  CHECK(m.find("same intrinsic with the same mask") != std::string::npos);
  m = kernel_error([&] { GEOLOC_LAUNCH(1, 32, 0, nullptr, traps)(out.p); });
  CHECK(m.find("__trap() in thread (3,0,0)") != std::string::npos);
  // the emulator is usable again after an error
  GEOLOC_LAUNCH(1, 32, 0, nullptr, templated<int, false>)(out.p, 4);
  for (int v : out.get()) CHECK(v == 4);
}

TEST_CASE("cuda_emu: a spin lock between threads of a block makes progress") {
  Dev<int> lock(1, 0), counter(1, 0);
  GEOLOC_LAUNCH(2, 64, 0, nullptr, spin_lock_counter)(lock.p, counter.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  CHECK(counter.get()[0] == 128);
}

TEST_CASE("cuda_emu: __activemask gives the lanes at the same call") {
  Dev<unsigned> out(40, 0);
  GEOLOC_LAUNCH(1, 40, 0, nullptr, active_mask)(out.p);
  unsigned m0 = 0, m1 = 0, m2 = 0, m3 = 0;  // warp 0 and the 8-lane warp 1, by branch
  for (unsigned l = 0; l < 32; ++l) (l % 3 == 0 ? m0 : m1) |= 1u << l;
  for (unsigned l = 0; l < 8; ++l) (((32 + l) % 3) == 0 ? m2 : m3) |= 1u << l;
  const auto v = out.get();
  for (unsigned t = 0; t < 40; ++t) {
    const bool a = t % 3 == 0;
    const unsigned want = t < 32 ? (a ? m0 : m1) : (a ? m2 : m3);
    CHECK(v[t] == (a ? want : (want | 0x80000000u)));
  }
}

TEST_CASE("cuda_emu: an invalid launch configuration sets the last error and runs nothing") {
  Dev<int> out(1, 0);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  GEOLOC_LAUNCH(1, 1025, 0, nullptr, never_runs)(out.p);
  CHECK(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
  GEOLOC_LAUNCH(dim3(1, 65536), 32, 0, nullptr, never_runs)(out.p);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  GEOLOC_LAUNCH(1, dim3(32, 32, 2), 0, nullptr, never_runs)(out.p);  // 2048 threads
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  GEOLOC_LAUNCH(0, 32, 0, nullptr, never_runs)(out.p);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  GEOLOC_LAUNCH(1, 32, 228 * 1024, nullptr, never_runs)(out.p);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(out.get()[0] == 0);
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidConfiguration)) == "invalid configuration argument");
  CHECK(std::string(cudaGetErrorName(cudaErrorInvalidValue)) == "cudaErrorInvalidValue");
  GEOLOC_LAUNCH(1, dim3(32, 32), 227 * 1024, nullptr, never_runs)(out.p);  // the limits themselves are fine
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(out.get()[0] == 42);
}

TEST_CASE("cuda_emu: runtime calls: copies check their direction and bounds, device attributes") {
  float* d = nullptr;
  REQUIRE(cudaMalloc(&d, 16 * sizeof(float)) == cudaSuccess);
  std::vector<float> h(16, 1.0f), back(16, 0.0f);
  CHECK(cudaMemcpy(d, h.data(), 64, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(h.data(), d, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // wrong direction
  CHECK(cudaMemcpy(d, h.data(), 68, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // past the end
  CHECK(cudaMemset(d + 8, 0, 32) == cudaSuccess);
  CHECK(cudaMemset(d + 8, 0, 36) == cudaErrorInvalidValue);
  CHECK(cudaMemset(h.data(), 0, 4) == cudaErrorInvalidValue);  // not device memory
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  CHECK(cudaMemcpyAsync(back.data(), d, 64, cudaMemcpyDeviceToHost, s) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  for (int i = 0; i < 16; ++i) CHECK(back[i] == (i < 8 ? 1.0f : 0.0f));
  CHECK(cudaFree(h.data()) == cudaErrorInvalidValue);
  CHECK(cudaFree(d) == cudaSuccess);
  (void)cudaGetLastError();
  int v = 0;
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess);
  CHECK(v == 132);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess);
  CHECK(v == 227 * 1024);
  cudaDeviceProp p{};
  CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess);
  CHECK(p.multiProcessorCount == 132);
  CHECK(p.major == 9);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
}

TEST_CASE("cuda_emu: bf16 conversions round to nearest even, against hand-computed bits") {
  auto bits = [](float f) { return __bfloat16_as_ushort(__float2bfloat16(f)); };
  auto f32 = [](uint32_t u) { return std::bit_cast<float>(u); };
  CHECK(bits(1.0f) == 0x3f80);
  CHECK(bits(-2.0f) == 0xc000);
  CHECK(bits(f32(0x3f808000u)) == 0x3f80);  // tie, even below: stays
  CHECK(bits(f32(0x3f818000u)) == 0x3f82);  // tie, odd below: rounds up to even
  CHECK(bits(f32(0x3f808001u)) == 0x3f81);  // just above the tie
  CHECK(bits(f32(0x3f807fffu)) == 0x3f80);  // just below the tie
  CHECK(bits(f32(0x7f7fffffu)) == 0x7f80);  // FLT_MAX rounds to +inf
  CHECK(bits(f32(0x7f800000u)) == 0x7f80);  // +inf
  CHECK(bits(f32(0xff800000u)) == 0xff80);  // -inf
  CHECK(bits(f32(0x7fc00000u)) == 0x7fff);  // quiet NaN: canonical NaN
  CHECK(bits(f32(0x7f800001u)) == 0x7fff);  // signalling NaN with a low payload: still a (quiet) NaN
  CHECK(bits(f32(0xffc00001u)) == 0x7fff);
  CHECK(bits(f32(0x00000001u)) == 0x0000);  // smallest subnormal: rounds to +0
  CHECK(bits(f32(0x00008000u)) == 0x0000);  // subnormal tie, even below
  CHECK(bits(f32(0x00018000u)) == 0x0002);  // subnormal tie, odd below
  CHECK(bits(f32(0x00010000u)) == 0x0001);  // exactly representable subnormal
  CHECK(bits(f32(0x807f8000u)) == 0x8080);  // negative subnormal tie rounds to the smallest normal
  CHECK(bits(-0.0f) == 0x8000);
  CHECK(__bfloat16_as_ushort(__float2bfloat16_rz(f32(0x3f81ffffu))) == 0x3f81);
  CHECK(__bfloat162float(__ushort_as_bfloat16(0x4049)) == 3.140625f);
  CHECK(std::isnan(__bfloat162float(__ushort_as_bfloat16(0x7fff))));
  const __nv_bfloat162 p = __floats2bfloat162_rn(1.0f, f32(0x3f818000u));
  CHECK(__low2float(p) == 1.0f);
  CHECK(__high2float(p) == f32(0x3f820000u));
  // arithmetic rounds once: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1
  CHECK(__bfloat16_as_ushort(__hadd(__float2bfloat16(1.0f), __float2bfloat16(1.0f / 256))) == 0x3f80);
  CHECK(__bfloat16_as_ushort(__double2bfloat16(1.0 + 1.0 / 256 + 1e-12)) == 0x3f81);  // no double rounding
  CHECK(__bfloat16_as_ushort(__hfma(__float2bfloat16(1.0f), __float2bfloat16(1.0f),
                                    __float2bfloat16(f32(0x3b800000u)))) == 0x3f80);  // 1 + 2^-8: tie -> 1
}

TEST_CASE("cuda_emu: bit and conversion intrinsics") {
  CHECK(__popc(0xf0f0u) == 8);
  CHECK(__clz(0) == 32);
  CHECK(__clz(1) == 31);
  CHECK(__ffs(0) == 0);
  CHECK(__ffs(0x50) == 5);
  CHECK(__brev(1u) == 0x80000000u);
  CHECK(__brev(0x12345678u) == 0x1e6a2c48u);
  CHECK(__float2int_rn(2.5f) == 2);
  CHECK(__float2int_rn(3.5f) == 4);
  CHECK(__float2int_rz(-2.7f) == -2);
  CHECK(__float2int_rn(3e10f) == INT32_MAX);
  CHECK(__float2int_rn(NAN) == 0);
  CHECK(__saturatef(1.5f) == 1.0f);
  CHECK(__saturatef(NAN) == 0.0f);
  unsigned u = 5;
  CHECK(atomicInc(&u, 5) == 5);
  CHECK(u == 0);
  CHECK(atomicDec(&u, 7) == 0);
  CHECK(u == 7);
}

TEST_CASE("cuda_emu: kernels shaped like the project's (built from a .cu file)") {
  SUBCASE("grid-stride functor kernel") {
    const int n = 1003;
    std::vector<float> h(n);
    for (int i = 0; i < n; ++i) h[i] = float(i % 17) - 8.0f;
    Dev<float> x(h), y(n, NAN);
    cuda_emu_test::affine(x.p, y.p, n, 2.0f, 1.0f, 3, 128);
    const auto v = y.get();
    for (int i = 0; i < n; ++i) CHECK(v[i] == 2.0f * h[i] + 1.0f);
  }
  SUBCASE("float4 and scalar template paths agree") {
    const uint32_t C = 12, n = C * 301;
    std::vector<float> h(n), sc(C), sh(C);
    for (uint32_t i = 0; i < n; ++i) h[i] = float(int(i % 23) - 11);
    for (uint32_t c = 0; c < C; ++c) sc[c] = float(c) - 3.0f, sh[c] = 0.5f * float(c);
    Dev<float> x(h), s(sc), t(sh), y4(n, NAN), y1(n, -NAN);
    cuda_emu_test::scale_shift(x.p, s.p, t.p, y4.p, n, C, true, true);
    cuda_emu_test::scale_shift(x.p, s.p, t.p, y1.p, n, C, true, false);
    const auto a = y4.get(), b = y1.get();
    for (uint32_t i = 0; i < n; ++i) {
      const float want = std::max(0.0f, h[i] * sc[i % C] + sh[i % C]);
      CHECK(a[i] == want);
      CHECK(b[i] == want);
    }
  }
  SUBCASE("2-D block column sums") {
    const int64_t rows = 157, C = 70;
    const int splits = 5;
    std::vector<float> h(rows * C);
    for (size_t i = 0; i < h.size(); ++i) h[i] = float(int(i % 13) - 6);
    Dev<float> x(h);
    Dev<double> partial(splits * C, NAN), out(C, NAN);
    cuda_emu_test::column_sum(x.p, rows, C, partial.p, splits, out.p);
    const auto v = out.get();
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += h[r * C + c];
      CHECK(v[c] == s);
    }
  }
  SUBCASE("block_sum of device.cuh, 1024 threads") {
    const int rows = 3, cols = 5000;
    std::vector<float> h(rows * cols);
    for (size_t i = 0; i < h.size(); ++i) h[i] = float(int(i % 7) - 3);
    Dev<float> x(h), out(rows, NAN);
    cuda_emu_test::row_sum(x.p, rows, cols, 1024, out.p);
    const auto v = out.get();
    for (int r = 0; r < rows; ++r) {
      float s = 0;
      for (int j = 0; j < cols; ++j) s += h[r * cols + j];
      CHECK(v[r] == s);
    }
  }
}
