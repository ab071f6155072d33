#pragma once
// Imagery and polygons are loaded once for the whole test binary (about 0.3 s together).
#include "geoloc/earth/imagery.hpp"
#include "geoloc/geo/countries.hpp"

namespace earth_test {
inline const geoloc::earth::EarthImagery& imagery() {
  static const geoloc::earth::EarthImagery im = geoloc::earth::EarthImagery::load(GEOLOC_DATA_DIR "/earth");
  return im;
}
inline const geoloc::geo::CountryIndex& countries() {
  static const geoloc::geo::CountryIndex ci = geoloc::geo::CountryIndex::load(
      GEOLOC_DATA_DIR "/natural-earth/countries-50m.geojson", GEOLOC_DATA_DIR "/natural-earth/land-50m.geojson");
  return ci;
}
}  // namespace earth_test
