#pragma once
// The library's one set of threads. Every parallel loop of geoloc (the CPU backend's ops, the data
// pipeline, geography and the Earth views) runs its tasks on this pool, so a program that embeds geoloc
// sees one pool whose size it sets here. Idle threads spin for at most 50 us, then sleep, and a task may itself
// call run_tasks: nested calls run inline on the calling thread.
#include <cstddef>
#include <cstdint>
#include <functional>

namespace geoloc {

/// Threads of the pool, the calling thread included; n <= 0 = all cores (the default), at most 65535.
void set_num_threads(int n);
int num_threads();

/// Runs fn(task) for every task in [0, n) on the pool (the calling thread included), and rethrows the
/// first exception once all tasks are done. Which thread runs which task is not fixed: results must not
/// depend on it.
void run_tasks(int64_t n, const std::function<void(int64_t)>& fn);

/// Calls f(i) for i in [0, n), in chunks of `chunk` indices taken dynamically by the pool's threads;
/// rethrows the first exception.
template <class F>
void parallel_for(std::size_t n, std::size_t chunk, F&& f) {
  if (chunk == 0) chunk = 1;
  run_tasks(static_cast<int64_t>((n + chunk - 1) / chunk), [&](int64_t c) {
    const std::size_t i0 = static_cast<std::size_t>(c) * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
    for (std::size_t i = i0; i < i1; ++i) f(i);
  });
}

}  // namespace geoloc
