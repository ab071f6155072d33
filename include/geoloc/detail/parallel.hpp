#pragma once
// An OpenMP parallel loop that carries exceptions out: an exception may not leave an OpenMP region
// (it would terminate the program), so the first one is caught inside and rethrown after the loop.
#include <cstddef>
#include <exception>

namespace geoloc::detail {

/// Calls f(i) for i in [0, n) on the OpenMP threads (dynamic schedule); rethrows the first exception.
template <class F>
void parallel_for(std::size_t n, F&& f) {
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 4)
  for (std::size_t i = 0; i < n; ++i) {
    try {
      f(i);
    } catch (...) {
#pragma omp critical(geoloc_parallel_for_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace geoloc::detail
