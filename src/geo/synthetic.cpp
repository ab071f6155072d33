#include "geoloc/geo/synthetic.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "geoloc/random.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::geo {
namespace {

constexpr std::array<LatLng, 40> kCities = {{
    {35.68, 139.69}, {40.71, -74.01}, {51.51, -0.13},  {48.86, 2.35},    {34.05, -118.24}, {41.90, 12.50},
    {55.76, 37.62},  {-33.87, 151.21}, {-23.55, -46.63}, {19.43, -99.13}, {28.61, 77.21},  {31.23, 121.47},
    {1.35, 103.82},  {37.57, 126.98}, {52.52, 13.40},  {40.42, -3.70},   {41.39, 2.17},    {-34.60, -58.38},
    {30.04, 31.24},  {-1.29, 36.82},  {6.52, 3.38},    {-33.92, 18.42},  {25.20, 55.27},   {41.01, 28.98},
    {13.76, 100.50}, {-6.21, 106.85}, {14.60, 120.98}, {43.65, -79.38},  {49.28, -123.12}, {37.77, -122.42},
    {21.31, -157.86}, {64.15, -21.94}, {59.33, 18.07}, {-41.29, 174.78}, {-22.91, -43.17}, {4.71, -74.07},
    {39.90, 116.41}, {22.32, 114.17}, {45.50, -73.57}, {61.22, -149.90},
}};

}  // namespace

std::vector<LatLng> synthetic_points(std::size_t n, std::uint64_t seed) {
  std::vector<LatLng> out(n);
  const auto count = static_cast<std::ptrdiff_t>(n);
  constexpr std::ptrdiff_t kBlock = 1 << 14;
  // Each block has its own generator seeded from (seed, block), so the output does not depend on
  // the number of threads.
  run_tasks((count + kBlock - 1) / kBlock, [&](std::int64_t b) {
    random::Rng gen(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(b));
    std::mt19937_64& rng = gen.engine();
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    for (std::ptrdiff_t i = b * kBlock; i < std::min(count, (b + 1) * kBlock); ++i) {
      if (u01(rng) < 0.1) {  // uniform on the sphere: z uniform in [-1, 1]
        out[i] = {std::asin(2 * u01(rng) - 1) * 180 / M_PI, 360 * u01(rng) - 180};
        continue;
      }
      const std::size_t c = static_cast<std::size_t>(u01(rng) * kCities.size()) % kCities.size();
      const double sigma_km = 5.0 * std::pow(30.0, u01(rng));  // 5 .. 150 km
      const double r_km = sigma_km * std::sqrt(-2 * std::log(1 - u01(rng)));  // Rayleigh radius
      out[i] = destination(kCities[c], 360 * u01(rng), r_km);
    }
  });
  return out;
}

}  // namespace geoloc::geo
