#pragma once
// Where geoloc's data lives (share/geoloc: natural-earth/ polygons, earth/ imagery), found at run time.
#include <string>

namespace geoloc::geo {

/// The data folder: $GEOLOC_DATA_DIR when set, else share/geoloc of the installation that the running
/// library (or, linked statically, the executable) belongs to: <dir>/../share/geoloc or
/// <dir>/../../share/geoloc. IoError naming the places looked in when none has the data.
std::string data_dir();

}  // namespace geoloc::geo
