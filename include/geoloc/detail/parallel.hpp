#pragma once
// A parallel loop on the CPU backend's thread pool that carries exceptions out (the first one is
// rethrown after the loop). Not OpenMP: libgomp's idle workers spin after each parallel region and,
// with a loop like this once per training step, took up to a fifth of both cores from the pool's
// convolution threads.
#include <cstddef>
#include <cstdint>

#include "geoloc/backend.hpp"

namespace geoloc::detail {

/// Calls f(i) for i in [0, n), in chunks of 4 taken dynamically by the pool's threads; rethrows the
/// first exception.
template <class F>
void parallel_for(std::size_t n, F&& f) {
  constexpr std::size_t kChunk = 4;
  cpu::run_tasks(static_cast<int64_t>((n + kChunk - 1) / kChunk), [&](int64_t c) {
    const std::size_t i0 = static_cast<std::size_t>(c) * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
    for (std::size_t i = i0; i < i1; ++i) f(i);
  });
}

}  // namespace geoloc::detail
