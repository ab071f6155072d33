#pragma once
// Every random number geoloc draws comes from here: seed hashing and stream splitting (splitmix64),
// counter-based draws that are the same on every device and thread count (dropout masks, the Earth
// views' locations), and the seeded engine that weight initialisation, augmentation and data order
// draw from. A seed fixes every result on every platform: the helpers below take their bits from
// the engine directly, because the standard distributions are not specified bit-exactly across
// standard libraries (Rng::uniform / normal keep libstdc++'s for the weight initialisers, which
// match earlier geoloc models bit for bit).
//
// The hashes are host and device functions: CUDA kernels include this header too.
#include <cstdint>

#if !defined(__CUDA_ARCH__)
#include <random>

#include "geoloc/error.hpp"
#endif

#if defined(__CUDACC__)
#define GEOLOC_RANDOM_HD __host__ __device__ __forceinline__
#else
#define GEOLOC_RANDOM_HD inline
#endif

namespace geoloc::random {

/// The splitmix64 finaliser: a bijective 64-bit hash with good avalanche.
GEOLOC_RANDOM_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Independent seeds for (seed, epoch, sample)-style pairs: mix_seed(mix_seed(seed, e), i).
GEOLOC_RANDOM_HD uint64_t mix_seed(uint64_t a, uint64_t b) { return mix64(a + 0x9E3779B97F4A7C15ull * b); }

/// Uniform in [0, 1) from (seed, index), 24 bits of resolution: a counter-based draw.
GEOLOC_RANDOM_HD float uniform01(uint64_t seed, uint64_t index) {
  return static_cast<float>(mix64(seed * 0x2545F4914F6CDD1Dull + index) >> 40) * (1.0f / 16777216.0f);
}

/// Dropout keeps element `index` with probability 1 - p (same mask on every device and thread count).
GEOLOC_RANDOM_HD bool dropout_keep(uint64_t seed, uint64_t index, float p) { return uniform01(seed, index) >= p; }

#if !defined(__CUDA_ARCH__)

/// The seeded engine (mt19937_64) for weight initialisation, augmentation and data order.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : gen_(seed) {}
  /// libstdc++'s uniform_real_distribution<float> / normal_distribution<float> (the weight initialisers).
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  float normal(float mean, float stddev) { return std::normal_distribution<float>(mean, stddev)(gen_); }
  uint64_t next() { return gen_(); }
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

/// Uniform in [lo, hi) from the top 53 bits of one engine draw (portable across standard libraries).
inline double uniform(Rng& rng, double lo, double hi) {
  const double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;  // [0, 1)
  return lo + (hi - lo) * u;
}

/// Uniform integer in [0, n) without modulo bias (rejection of the incomplete last block); ValueError
/// for n == 0.
inline uint64_t below(Rng& rng, uint64_t n) {
  GEOLOC_CHECK(n > 0, ValueError, "random::below(0): empty range");
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = rng.next();
  while (r >= limit);
  return r % n;
}

/// A counter-based stream (the splitmix64 sequence) for (seed, stream, index): cheap to create per
/// item, where an Rng's 2.5 kB state would be costly to seed tens of thousands of times. Different
/// stream ids give independent streams, so adding items to one stream never changes another.
class StreamRng {
 public:
  StreamRng(uint64_t seed, uint64_t stream, uint64_t index)
      : state_(mix64(mix64(seed) ^ mix64(stream * 0x632be59bd9b4e019ULL + index))) {}
  uint64_t next() {
    const uint64_t z = mix64(state_);
    state_ += 0x9E3779B97F4A7C15ull;
    return z;
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n) (Lemire's multiply-shift; bias below n / 2^64).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }

 private:
  uint64_t state_;
};

#endif  // !__CUDA_ARCH__

}  // namespace geoloc::random

#undef GEOLOC_RANDOM_HD
