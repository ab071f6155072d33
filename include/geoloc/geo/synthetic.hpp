#pragma once
// Synthetic photo locations for tests and benchmarks: dense around big cities, sparse elsewhere.
#include <cstdint>
#include <vector>

#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

/// `n` points: 90 % from Gaussian clusters (sigma 5 to 150 km) around 40 large cities, 10 %
/// uniform on the sphere. Deterministic for a given seed; generated in parallel.
std::vector<LatLng> synthetic_points(std::size_t n, std::uint64_t seed = 1);

}  // namespace geoloc::geo
