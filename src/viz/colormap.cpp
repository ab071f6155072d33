#include "geoloc/viz/colormap.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "geoloc/error.hpp"

namespace geoloc::viz {
namespace {

using Table = std::array<uint32_t, 11>;  // colours at t = 0, 0.1, ..., 1

// The matplotlib maps (CC0, van der Walt & Smith) at eleven evenly spaced points.
constexpr Table kInferno = {0x000004, 0x160b39, 0x420a68, 0x6a176e, 0x932667, 0xbc3754,
                            0xdd513a, 0xf37819, 0xfca50a, 0xf6d746, 0xfcffa4};
constexpr Table kMagma = {0x000004, 0x140e36, 0x3b0f70, 0x641a80, 0x8c2981, 0xb73779,
                          0xde4968, 0xf7705c, 0xfe9f6d, 0xfecf92, 0xfcfdbf};
constexpr Table kViridis = {0x440154, 0x482475, 0x414487, 0x355f8d, 0x2a788e, 0x21918c,
                            0x22a884, 0x44bf70, 0x7ad151, 0xbddf26, 0xfde725};

constexpr std::array<uint32_t, 10> kPalette = {0x1f6fb4, 0xe8710a, 0x2a9d3a, 0xd0302f, 0x8a5cc2,
                                               0x8c564b, 0xd864b8, 0x6f6f6f, 0xaaa820, 0x17b2c8};

}  // namespace

Color colormap(Colormap map, double t) {
  const Table& table = map == Colormap::magma ? kMagma : map == Colormap::viridis ? kViridis : kInferno;
  if (!(t > 0)) t = 0;  // also NaN
  if (t > 1) t = 1;
  const double f = t * 10.0;
  const int i = std::min(9, static_cast<int>(f));
  return mix(rgb(table[i]), rgb(table[i + 1]), f - i);
}

Colormap colormap_from_name(std::string_view name) {
  if (name == "inferno") return Colormap::inferno;
  if (name == "magma") return Colormap::magma;
  if (name == "viridis") return Colormap::viridis;
  throw ValueError(detail::cat("unknown colormap '", name, "' (expected inferno, magma or viridis)"));
}

Color palette(std::size_t i) { return rgb(kPalette[i % kPalette.size()]); }

}  // namespace geoloc::viz
