#pragma once
// The 50m country index, loaded once for the whole geo test program (loading is the slow part): an
// inline function's static is one object across the test files that use it.
#include "geoloc/geo/countries.hpp"

namespace geoloc::test {

inline const geo::CountryIndex& country_index_50m() {
  static const geo::CountryIndex index = geo::CountryIndex::load_default("50m");
  return index;
}

}  // namespace geoloc::test
