#pragma once
// The data pipeline's loop over samples: the pool's parallel_for (thread_pool.hpp) in chunks of 4.
#include <cstddef>

#include "geoloc/thread_pool.hpp"

namespace geoloc::detail {

/// Calls f(i) for i in [0, n), in chunks of 4 taken dynamically by the pool's threads; rethrows the
/// first exception.
template <class F>
void parallel_for(std::size_t n, F&& f) {
  geoloc::parallel_for(n, 4, f);
}

}  // namespace geoloc::detail
