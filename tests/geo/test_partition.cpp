#include <doctest/doctest.h>
#include <s2/s2cell_id.h>
#include <s2/s2latlng.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "geoloc/error.hpp"
#include "geoloc/geo/csv.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/geo/synthetic.hpp"

using namespace geoloc::geo;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("geoloc_geo_test_" + name)).string();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Checks the contract of an adaptive partitioning of `points` against a brute-force count.
void check_invariants(const CellPartition& part, const std::vector<LatLng>& points, const AdaptiveOptions& opt,
                      std::int64_t tau_max) {
  // Disjoint, by S2's own test, over all pairs that are neighbours in range order.
  std::vector<S2CellId> ids;
  for (const Cell& c : part.cells()) ids.emplace_back(c.id);
  std::sort(ids.begin(), ids.end(), [](S2CellId a, S2CellId b) { return a.range_min() < b.range_min(); });
  for (std::size_t i = 1; i < ids.size(); ++i) REQUIRE_FALSE(ids[i - 1].intersects(ids[i]));

  std::vector<std::int64_t> counted(part.size(), 0);
  for (const LatLng& p : points) {
    const int cls = part.assign(p);
    if (cls < 0) continue;
    ++counted[cls];
    REQUIRE(S2CellId(part.cell(cls).id).contains(S2CellId(S2LatLng::FromDegrees(p.lat, p.lng))));
  }
  std::int64_t kept = 0;
  for (std::size_t c = 0; c < part.size(); ++c) {
    const Cell& cell = part.cell(c);
    CHECK(counted[c] == cell.count);  // every point of a cell is assigned to it, none elsewhere
    CHECK(cell.count >= opt.tau_min);
    CHECK((cell.count <= tau_max || cell.level == opt.max_level));
    CHECK(cell.level >= opt.min_level);
    CHECK(cell.level <= opt.max_level);
    kept += cell.count;
    // s2_center is the cell's own centre.
    const S2LatLng centre(S2CellId(cell.id).ToPoint());
    CHECK(cell.s2_center.lat == doctest::Approx(centre.lat().degrees()));
  }
  CHECK(kept == part.total_count());
  CHECK(kept <= static_cast<std::int64_t>(points.size()));
}

}  // namespace

TEST_CASE("adaptive partition invariants") {
  const std::vector<LatLng> points = synthetic_points(60000, 7);
  AdaptiveOptions opt;
  opt.min_level = 2;
  opt.max_level = 13;
  opt.tau_min = 20;
  opt.tau_max = {2000};
  const CellPartition part = build_adaptive_partitions(points, opt).at(0);
  REQUIRE(part.size() > 20);
  check_invariants(part, points, opt, 2000);
  // Dropped points: exactly those whose region has fewer than tau_min points.
  std::int64_t unassigned = 0;
  for (int c : part.assign_all(points)) unassigned += c < 0;
  CHECK(unassigned == static_cast<std::int64_t>(points.size()) - part.total_count());
  CHECK(unassigned > 0);  // the uniform background leaves sparse cells
}

TEST_CASE("cells at max_level may exceed tau_max") {
  std::vector<LatLng> points(500, LatLng{48.8584, 2.2945});  // one spot: can never be split below tau_max
  AdaptiveOptions opt;
  opt.min_level = 3;
  opt.max_level = 10;
  opt.tau_min = 1;
  opt.tau_max = {100};
  const CellPartition part = build_adaptive_partitions(points, opt).at(0);
  REQUIRE(part.size() == 1);
  CHECK(part.cell(0).level == 10);
  CHECK(part.cell(0).count == 500);
  CHECK(part.cell(0).mean.lat == doctest::Approx(48.8584).epsilon(1e-7));
}

TEST_CASE("several partitionings in one pass equal separate builds") {
  const std::vector<LatLng> points = synthetic_points(40000, 3);
  AdaptiveOptions all;
  all.tau_min = 10;
  all.max_level = 20;
  all.tau_max = {500, 5000, 1500};  // deliberately unsorted
  const auto parts = build_adaptive_partitions(points, all);
  REQUIRE(parts.size() == 3);
  for (std::size_t k = 0; k < 3; ++k) {
    AdaptiveOptions one = all;
    one.tau_max = {all.tau_max[k]};
    const CellPartition single = build_adaptive_partitions(points, one).at(0);
    REQUIRE(single.size() == parts[k].size());
    for (std::size_t c = 0; c < single.size(); ++c) {
      CHECK(single.cell(c).id == parts[k].cell(c).id);
      CHECK(single.cell(c).count == parts[k].cell(c).count);
    }
  }
  CHECK(parts[1].size() < parts[2].size());
  CHECK(parts[2].size() < parts[0].size());
}

TEST_CASE("assignment walks up from leaves and from coarser cells") {
  const std::vector<LatLng> points = synthetic_points(20000, 5);
  AdaptiveOptions opt;
  opt.tau_min = 5;
  opt.tau_max = {300};
  const CellPartition part = build_adaptive_partitions(points, opt).at(0);
  for (std::size_t c = 0; c < part.size(); c += 7) {
    const S2CellId id(part.cell(c).id);
    CHECK(part.assign_cell(id.id()) == static_cast<int>(c));
    CHECK(part.assign_cell(id.range_min().id()) == static_cast<int>(c));  // a level-30 leaf
    CHECK(part.assign_cell(id.child_begin(std::min(30, id.level() + 3)).id()) == static_cast<int>(c));
    if (id.level() > 0) CHECK(part.assign_cell(id.parent().id()) == -1);  // a parent is in no single class
  }
  CHECK(part.assign_cell(0) == -1);  // not a valid cell id
}

TEST_CASE("CellPartition rejects overlapping cells") {
  const S2CellId a = S2CellId::FromToken("47a1");
  std::vector<Cell> cells(2);
  cells[0].id = a.id();
  cells[1].id = a.child(2).id();
  CHECK_THROWS_AS(CellPartition{cells}, geoloc::ValueError);
  cells[1].id = a.id();
  CHECK_THROWS_AS(CellPartition{cells}, geoloc::ValueError);
}

TEST_CASE("CSV round trip and the ECCV 2018 header lines") {
  const std::vector<LatLng> points = synthetic_points(30000, 11);
  AdaptiveOptions opt;
  opt.tau_min = 10;
  opt.tau_max = {800};
  const CellPartition part = build_adaptive_partitions(points, opt).at(0);
  const std::string path = temp_path("cells.csv");
  part.write_csv(path);
  const CellPartition back = CellPartition::read_csv(path);
  REQUIRE(back.size() == part.size());
  for (std::size_t c = 0; c < part.size(); ++c) {
    CHECK(back.cell(c).id == part.cell(c).id);
    CHECK(back.cell(c).level == part.cell(c).level);
    CHECK(back.cell(c).count == part.cell(c).count);
    CHECK(back.cell(c).mean == part.cell(c).mean);  // shortest round-trip formatting: exact
  }

  // The published files: two metadata lines, labels in any order.
  const std::string eccv = temp_path("eccv.csv");
  write_text(eccv,
             "num_images: 4723695\nmin_concept_probability: 0.0\n"
             "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n"
             "1,47a1,120,48.5,8.25\n0,89c25,300,40.7,-74.0\n");
  const CellPartition e = CellPartition::read_csv(eccv);
  REQUIRE(e.size() == 2);
  CHECK(cell_token(e.cell(0).id) == "89c25");
  CHECK(e.cell(1).count == 120);
  CHECK(e.center(0).lng == doctest::Approx(-74.0));
  CHECK(e.assign({40.75, -73.99}) == 0);  // Manhattan lies in 89c25
  CHECK(e.assign({0, 0}) == -1);

  write_text(eccv, "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n0,47a1,12,48.5,8.25\n0,89c25,3,1,2\n");
  CHECK_THROWS_AS(CellPartition::read_csv(eccv), geoloc::IoError);
  write_text(eccv, "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n0,zz,12,48.5,8.25\n");
  CHECK_THROWS_WITH_AS(CellPartition::read_csv(eccv), doctest::Contains("line 2"), geoloc::IoError);
  std::filesystem::remove(path);
  std::filesystem::remove(eccv);
}

TEST_CASE("points CSV: header, quoting and errors naming the line") {
  const std::string path = temp_path("points.csv");
  write_text(path, "id,\"latitude\",longitude,caption\r\n1,48.85,2.35,\"Paris, France\"\n\n2, -33.9 ,151.2,\"say \"\"hi\"\"\"\n");
  const auto pts = read_points_csv(path);
  REQUIRE(pts.size() == 2);
  CHECK(pts[1].lat == doctest::Approx(-33.9));
  CHECK(pts[1].lng == doctest::Approx(151.2));

  write_text(path, "latitude,longitude\n1,2\n3,4\n5,6\n7,8\n9,10\n11,12\n13,14\n15,16\n17,18\n19,20\n21,22\n"
                   "23,24\n25,26\n27,28\n29,30\nabc,1\n");
  CHECK_THROWS_WITH_AS(read_points_csv(path), doctest::Contains("line 17: latitude 'abc' is not a number"),
                       geoloc::IoError);
  write_text(path, "latitude,longitude\n91,0\n");
  CHECK_THROWS_WITH_AS(read_points_csv(path), doctest::Contains("line 2: latitude 91 is outside"), geoloc::IoError);
  write_text(path, "lat,lon\n1,2\n");
  CHECK_THROWS_AS(read_points_csv(path), geoloc::IoError);
  CHECK_THROWS_AS(read_points_csv(temp_path("does-not-exist.csv")), geoloc::IoError);
  // CR-only line ends (classic Mac OS) are line ends, not one long line with a missing column
  write_text(path, "latitude,longitude\r1,2\r\r3,4\rabc,5\r");
  CHECK_THROWS_WITH_AS(read_points_csv(path), doctest::Contains("line 5: latitude 'abc' is not a number"),
                       geoloc::IoError);
  write_text(path, "latitude,longitude\r1,2\r\n3,4\r");
  CHECK(read_points_csv(path).size() == 2);
  // A NUL byte in a field is escaped in the message, not the end of it
  write_text(path, std::string("latitude,longitude\n4\0" "5,2\n", 24));
  CHECK_THROWS_WITH_AS(read_points_csv(path), doctest::Contains("line 2: latitude '4\\05' is not a number"),
                       geoloc::IoError);
  // Not a regular file: said so, before reading (a FIFO would block)
  const std::string dir = temp_path("points-dir");
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH_AS(read_points_csv(dir), doctest::Contains("is a directory, not a regular file"), geoloc::IoError);
  std::filesystem::remove(dir);
  std::filesystem::remove(path);
}

TEST_CASE("invalid points and options are ValueErrors naming the row") {
  std::vector<LatLng> points = synthetic_points(100, 1);
  points[42].lat = NAN;
  AdaptiveOptions opt;
  CHECK_THROWS_WITH_AS(build_adaptive_partitions(points, opt), doctest::Contains("row 42"), geoloc::ValueError);
  points[42].lat = 0;
  opt.max_level = 31;
  CHECK_THROWS_AS(build_adaptive_partitions(points, opt), geoloc::ValueError);
  opt.max_level = 30;
  opt.tau_max = {};
  CHECK_THROWS_AS(build_adaptive_partitions(points, opt), geoloc::ValueError);
}

TEST_CASE("assign_nearest: the containing cell, else the cell with the nearest centre") {
  // Two level-8 cells (about 40 km), their centres the points' means: one at Paris, one at Sydney.
  const LatLng paris{48.8566, 2.3522}, sydney{-33.8688, 151.2093};
  std::vector<Cell> cells(2);
  cells[0].id = S2CellId(S2LatLng::FromDegrees(paris.lat, paris.lng)).parent(8).id();
  cells[0].mean = paris;
  cells[1].id = S2CellId(S2LatLng::FromDegrees(sydney.lat, sydney.lng)).parent(8).id();
  cells[1].mean = sydney;
  const CellPartition part(cells);
  CHECK(part.assign_nearest(paris) == 0);
  CHECK(part.assign_nearest(sydney) == 1);
  // Berlin and Auckland lie in no cell: the nearest centres are Paris (878 km) and Sydney (2156 km).
  const LatLng berlin{52.52, 13.405}, auckland{-36.8485, 174.7633};
  CHECK(part.assign(berlin) == -1);
  CHECK(part.assign_nearest(berlin) == 0);
  CHECK(part.assign_nearest(auckland) == 1);
  const std::vector<LatLng> points = {berlin, sydney, auckland};
  CHECK(part.cell_centers_of(points) == std::vector<LatLng>{paris, sydney, sydney});
  CHECK(CellPartition().assign_nearest(paris) == -1);
  CHECK_THROWS_AS(CellPartition().cell_centers_of(points), geoloc::ValueError);
}

TEST_CASE("partition and point CSV text in memory reads as the same file does") {
  const std::string text = "num_images: 4\nclass_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\r\n"
                           "1,47a1,120,48.5,8.25\r\n0,89c25,300,40.7,-74.0\r\n";
  const std::string path = temp_path("memory.csv");
  write_text(path, text);
  const CellPartition from_file = CellPartition::read_csv(path), from_text = CellPartition::parse_csv(text, path);
  REQUIRE(from_text.size() == 2);
  for (std::size_t c = 0; c < 2; ++c) {
    CHECK(from_text.cell(c).id == from_file.cell(c).id);
    CHECK(from_text.cell(c).mean == from_file.cell(c).mean);
  }
  CHECK_THROWS_WITH_AS(CellPartition::parse_csv("class_label,hex_id\n", "text.csv"),
                       doctest::Contains("text.csv line 1"), geoloc::IoError);
  CHECK(parse_points_csv("latitude,longitude\n1,2\n", "p.csv").at(0).lng == 2);
  CHECK_THROWS_WITH_AS(parse_points_csv("", "empty.csv"), doctest::Contains("empty.csv"), geoloc::IoError);
  std::filesystem::remove(path);
}

// Issue #16 (found while writing fuzz_model_metadata, in the code it drives): cells given to
// CellPartition by a model file's metadata were not checked, so a mean at latitude 95 or a negative
// count became part of a model. Every source of cells (CSV, model metadata, the adaptive builder) now
// goes through the same checks.
TEST_CASE("CellPartition rejects means that are not coordinates and negative counts") {
  std::vector<Cell> cells(1);
  cells[0].id = S2CellId::FromToken("47a1").id();
  cells[0].mean = {95, 8};
  CHECK_THROWS_WITH_AS(CellPartition{cells}, doctest::Contains("cell 47a1 mean: latitude 95"), geoloc::ValueError);
  cells[0].mean = {48, NAN};
  CHECK_THROWS_AS(CellPartition{cells}, geoloc::ValueError);
  cells[0].mean = {48, 8};
  cells[0].count = -1;
  CHECK_THROWS_WITH_AS(CellPartition{cells}, doctest::Contains("negative count"), geoloc::ValueError);
  cells[0].count = 0;
  CHECK(CellPartition{cells}.size() == 1);
}
