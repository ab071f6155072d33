// libFuzzer target for the partition and point CSV readers (src/geo/csv.cpp, src/geo/partition.cpp):
// CellPartition::parse_csv (what read_csv runs on a file's contents, the ECCV 2018 cells format) and
// parse_points_csv (read_points_csv) must accept any byte string or refuse it with geoloc::IoError.
// An accepted partition is used: every cell's mean is assigned and the file it would write is read back.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "geoloc/error.hpp"
#include "geoloc/geo/csv.hpp"
#include "geoloc/geo/partition.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_partition: %s\n", what);
  std::abort();
}

bool valid(geoloc::geo::LatLng p) { return p.lat >= -90 && p.lat <= 90 && p.lng >= -180 && p.lng <= 180; }

// The text CellPartition::write_csv writes (it writes only to files, atomically).
std::string as_csv(const geoloc::geo::CellPartition& p) {
  std::ostringstream os;
  os.precision(17);
  os << "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n";
  for (std::size_t c = 0; c < p.size(); ++c) {
    const auto& cell = p.cell(c);
    os << c << ',' << geoloc::geo::cell_token(cell.id) << ',' << cell.count << ',' << cell.mean.lat << ','
       << cell.mean.lng << '\n';
  }
  return os.str();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace geoloc;
  using namespace geoloc::geo;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const CellPartition p = CellPartition::parse_csv(text, "cells.csv");
    for (std::size_t c = 0; c < p.size(); ++c) {
      const Cell& cell = p.cell(c);
      if (cell.count < 0) fail("negative cell count accepted");
      if (cell.level < 0 || cell.level > 30) fail("cell level out of range");
      if (!valid(cell.mean)) fail("invalid cell mean accepted");
      if (p.assign_cell(cell.id) != static_cast<int>(c)) fail("a cell is not its own class");
      const int a = p.assign(cell.mean);
      if (a < -1 || a >= static_cast<int>(p.size())) fail("assign out of range");
    }
    const CellPartition again = CellPartition::parse_csv(as_csv(p), "again.csv");
    if (again.size() != p.size()) fail("written partition reads back with another size");
    for (std::size_t c = 0; c < p.size(); ++c)
      if (again.cell(c).id != p.cell(c).id || again.cell(c).count != p.cell(c).count) fail("round trip differs");
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from CellPartition::parse_csv: %s\n", e.what());
    std::abort();
  }
  try {
    for (const LatLng& p : parse_points_csv(text, "points.csv"))
      if (!valid(p)) fail("invalid point accepted");
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from parse_points_csv: %s\n", e.what());
    std::abort();
  }
  return 0;
}
