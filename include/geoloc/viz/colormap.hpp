#pragma once
// Perceptually uniform colormaps (matplotlib's inferno, magma and viridis, sampled at 11 points
// and interpolated linearly, which stays within a few levels of the full 256-entry tables), and
// the qualitative palette the charts use for series.
#include <cstddef>
#include <string_view>

#include "geoloc/viz/canvas.hpp"

namespace geoloc::viz {

enum class Colormap { inferno, magma, viridis };

/// The colour of `t` in [0, 1] (clamped; NaN maps to 0) on `map`: dark at 0, bright at 1.
Color colormap(Colormap map, double t);
/// The map named "inferno", "magma" or "viridis"; ValueError for any other name.
Colormap colormap_from_name(std::string_view name);

/// The i-th colour of a 10-colour qualitative palette (cycles for i >= 10), chosen to stay
/// distinguishable on white and for the common forms of colour blindness in its first few entries.
Color palette(std::size_t i);

}  // namespace geoloc::viz
