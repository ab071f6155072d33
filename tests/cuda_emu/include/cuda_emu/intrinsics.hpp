#pragma once
// cuda_emu: integer, float and memory intrinsics and atomics (CUDA Math API / Programming Guide).
#include <atomic>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>

#include "core.hpp"

// The C99 classification functions are callable unqualified in CUDA device code.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// ---- bit manipulation
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }  // 32 for 0
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x ? std::countr_zero(static_cast<unsigned>(x)) + 1 : 0; }  // 1-based, 0 for 0
inline int __ffsll(long long x) { return x ? std::countr_zero(static_cast<unsigned long long>(x)) + 1 : 0; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i, x >>= 1) r = (r << 1) | (x & 1u);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  unsigned long long r = 0;
  for (int i = 0; i < 64; ++i, x >>= 1) r = (r << 1) | (x & 1ull);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// ---- reinterpretation and conversions (float -> int saturates, NaN gives 0, as cvt.rni.s32.f32)
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
namespace cuda_emu::detail {
template <class I>
I sat_cast(double v) {  // v already rounded to an integer value
  if (std::isnan(v)) return 0;
  if (v <= double(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (v >= double(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}
}  // namespace cuda_emu::detail
inline int __float2int_rn(float x) { return cuda_emu::detail::sat_cast<int>(std::nearbyint(double(x))); }
inline int __float2int_rz(float x) { return cuda_emu::detail::sat_cast<int>(std::trunc(double(x))); }
inline int __float2int_rd(float x) { return cuda_emu::detail::sat_cast<int>(std::floor(double(x))); }
inline int __float2int_ru(float x) { return cuda_emu::detail::sat_cast<int>(std::ceil(double(x))); }
inline unsigned __float2uint_rn(float x) { return cuda_emu::detail::sat_cast<unsigned>(std::nearbyint(double(x))); }
inline unsigned __float2uint_rz(float x) { return cuda_emu::detail::sat_cast<unsigned>(std::trunc(double(x))); }
inline long long __float2ll_rn(float x) { return cuda_emu::detail::sat_cast<long long>(std::nearbyint(double(x))); }
inline long long __float2ll_rz(float x) { return cuda_emu::detail::sat_cast<long long>(std::trunc(double(x))); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned x) { return float(x); }
inline float __ll2float_rn(long long x) { return float(x); }
inline double __int2double_rn(int x) { return double(x); }

// ---- float intrinsics. The fast-math ones (__expf, __logf, ...) are less accurate on the device;
// here they are the accurate functions, so a test cannot rely on their device error.
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) {
  *s = sinf(x);
  *c = cosf(x);
}
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return float(1.0 / std::sqrt(double(x))); }
inline float rsqrtf(float x) { return float(1.0 / std::sqrt(double(x))); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
// CUDA's integer/float min and max overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- cache-hinted loads and stores: plain accesses here
template <class T>
T __ldg(const T* p) { return *p; }
template <class T>
T __ldcg(const T* p) { return *p; }
template <class T>
T __ldcs(const T* p) { return *p; }
template <class T>
T __ldlu(const T* p) { return *p; }
template <class T>
T __ldcv(const T* p) { return *p; }
template <class T>
void __stcg(T* p, T v) { *p = v; }
template <class T>
void __stcs(T* p, T v) { *p = v; }
template <class T>
void __stwt(T* p, T v) { *p = v; }

// ---- atomics. Relaxed, as the device's; std::atomic_ref keeps them atomic should blocks ever run on
// several OS threads (the fibres of one block never interleave inside a call).
namespace cuda_emu::detail {
template <class T>
std::atomic_ref<T> aref(T* p) {
  return std::atomic_ref<T>(*p);
}
template <class T, class F>
T atomic_update(T* p, F f) {  // f(old) -> new; returns old
  auto a = aref(p);
  T old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, f(old), std::memory_order_relaxed)) {
  }
  return old;
}
}  // namespace cuda_emu::detail
#define CUDA_EMU_ATOMIC_ADD(T)                                                      \
  inline T atomicAdd(T* p, T v) {                                                   \
    return cuda_emu::detail::aref(p).fetch_add(v, std::memory_order_relaxed);       \
  }                                                                                 \
  inline T atomicAdd_block(T* p, T v) { return atomicAdd(p, v); }                   \
  inline T atomicAdd_system(T* p, T v) { return atomicAdd(p, v); }
CUDA_EMU_ATOMIC_ADD(int)
CUDA_EMU_ATOMIC_ADD(unsigned)
CUDA_EMU_ATOMIC_ADD(unsigned long long)
CUDA_EMU_ATOMIC_ADD(float)
CUDA_EMU_ATOMIC_ADD(double)
#undef CUDA_EMU_ATOMIC_ADD
inline int atomicSub(int* p, int v) { return cuda_emu::detail::aref(p).fetch_sub(v, std::memory_order_relaxed); }
inline unsigned atomicSub(unsigned* p, unsigned v) {
  return cuda_emu::detail::aref(p).fetch_sub(v, std::memory_order_relaxed);
}
#define CUDA_EMU_ATOMIC_BASIC(T)                                                                       \
  inline T atomicExch(T* p, T v) { return cuda_emu::detail::aref(p).exchange(v, std::memory_order_relaxed); } \
  inline T atomicCAS(T* p, T compare, T v) {                                                           \
    T old = compare;                                                                                   \
    if (!cuda_emu::detail::aref(p).compare_exchange_strong(old, v, std::memory_order_relaxed))         \
      cuda_emu::detail::yield(); /* someone else holds it: let them run (spin locks) */               \
    return old;                                                                                        \
  }
CUDA_EMU_ATOMIC_BASIC(int)
CUDA_EMU_ATOMIC_BASIC(unsigned)
CUDA_EMU_ATOMIC_BASIC(unsigned long long)
#undef CUDA_EMU_ATOMIC_BASIC
inline unsigned short atomicCAS(unsigned short* p, unsigned short compare, unsigned short v) {
  unsigned short old = compare;
  if (!cuda_emu::detail::aref(p).compare_exchange_strong(old, v, std::memory_order_relaxed)) cuda_emu::detail::yield();
  return old;
}
inline float atomicExch(float* p, float v) { return cuda_emu::detail::aref(p).exchange(v, std::memory_order_relaxed); }
#define CUDA_EMU_ATOMIC_MINMAX(T)                                                                      \
  inline T atomicMin(T* p, T v) { return cuda_emu::detail::atomic_update(p, [v](T o) { return v < o ? v : o; }); } \
  inline T atomicMax(T* p, T v) { return cuda_emu::detail::atomic_update(p, [v](T o) { return v > o ? v : o; }); }
CUDA_EMU_ATOMIC_MINMAX(int)
CUDA_EMU_ATOMIC_MINMAX(unsigned)
CUDA_EMU_ATOMIC_MINMAX(long long)
CUDA_EMU_ATOMIC_MINMAX(unsigned long long)
#undef CUDA_EMU_ATOMIC_MINMAX
#define CUDA_EMU_ATOMIC_BITS(T)                                                                         \
  inline T atomicAnd(T* p, T v) { return cuda_emu::detail::aref(p).fetch_and(v, std::memory_order_relaxed); } \
  inline T atomicOr(T* p, T v) { return cuda_emu::detail::aref(p).fetch_or(v, std::memory_order_relaxed); }   \
  inline T atomicXor(T* p, T v) { return cuda_emu::detail::aref(p).fetch_xor(v, std::memory_order_relaxed); }
CUDA_EMU_ATOMIC_BITS(int)
CUDA_EMU_ATOMIC_BITS(unsigned)
CUDA_EMU_ATOMIC_BITS(unsigned long long)
#undef CUDA_EMU_ATOMIC_BITS
/// ((old >= v) ? 0 : old + 1), as the Programming Guide defines atomicInc.
inline unsigned atomicInc(unsigned* p, unsigned v) {
  return cuda_emu::detail::atomic_update(p, [v](unsigned o) { return o >= v ? 0u : o + 1u; });
}
/// (((old == 0) || (old > v)) ? v : old - 1), as the Programming Guide defines atomicDec.
inline unsigned atomicDec(unsigned* p, unsigned v) {
  return cuda_emu::detail::atomic_update(p, [v](unsigned o) { return (o == 0u || o > v) ? v : o - 1u; });
}

inline long long clock64() {
  static std::atomic<long long> ticks{0};
  return ticks.fetch_add(1, std::memory_order_relaxed);
}
