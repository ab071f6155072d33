// `geoloc partition`: adaptive S2 partitionings of photo coordinates, written as ECCV 2018 CSV files.
#include <cstdio>

#include "cli.hpp"
#include "geoloc/geo/csv.hpp"
#include "geoloc/geo/partition.hpp"

namespace geoloc::cli {
namespace {

int run_partition(int argc, char** argv) {
  Args args("partition", "--input points.csv --output cells.csv[,...] --min N --max N[,...]",
            {{"input", "CSV with latitude and longitude columns", false, ""},
             {"output", "output CSV file(s), one per --max value, comma-separated", false, ""},
             {"min", "drop cells with fewer points (tau_min)", false, "50"},
             {"max", "split cells with more points (tau_max), comma-separated", false, "1000"},
             {"min-level", "S2 level of the starting cells", false, "2"},
             {"max-level", "deepest S2 level", false, "30"}});
  if (!args.parse(argc, argv)) return 0;

  geo::AdaptiveOptions opt;
  opt.tau_min = args.get_int("min", 0, INT64_MAX);
  opt.min_level = static_cast<int>(args.get_int("min-level", 0, 30));
  opt.max_level = static_cast<int>(args.get_int("max-level", 0, 30));
  GEOLOC_CHECK(opt.min_level <= opt.max_level, ValueError, "option --min-level (", opt.min_level,
               ") is above --max-level (", opt.max_level, ")");
  opt.tau_max.clear();
  for (const std::string& s : Args::split(args.get("max"))) {
    opt.tau_max.push_back(parse_int(s, 1, INT64_MAX, "option --max"));
    // A cell is split above tau_max and dropped below tau_min: with tau_min > tau_max nothing is kept.
    GEOLOC_CHECK(opt.tau_min <= opt.tau_max.back(), ValueError, "option --min (", opt.tau_min,
                 ") is above --max (", s, "): every cell would be dropped");
  }
  const std::vector<std::string> outputs = Args::split(args.get("output"));
  GEOLOC_CHECK(outputs.size() == opt.tau_max.size(), ValueError, "--output names ", outputs.size(),
               " file(s) but --max gives ", opt.tau_max.size(), " value(s)");
  const std::string input = args.get("input");
  // All outputs checked (writable, none is the input, no two the same) before any work; all written to
  // temporaries and renamed together at the end.
  Outputs files;
  files.input(input, "--input");
  std::vector<std::string> temps;
  for (const auto& out : outputs) temps.push_back(files.file(out, "--output"));

  const std::vector<geo::LatLng> points = geo::read_points_csv(input);
  std::printf("%s: %zu points\n", input.c_str(), points.size());
  const std::vector<geo::CellPartition> parts = geo::build_adaptive_partitions(points, opt);
  for (std::size_t k = 0; k < parts.size(); ++k)
    GEOLOC_CHECK(parts[k].size() > 0, ValueError, "no cell of ", outputs[k], " keeps --min ", opt.tau_min, " of the ",
                 points.size(), " points (lower --min, or give more points)");
  for (std::size_t k = 0; k < parts.size(); ++k) {
    parts[k].write_csv(temps[k]);
    std::printf("%s: %zu cells (tau_max %lld, tau_min %lld), %lld points kept\n", outputs[k].c_str(),
                parts[k].size(), static_cast<long long>(opt.tau_max[k]), static_cast<long long>(opt.tau_min),
                static_cast<long long>(parts[k].total_count()));
    const auto per_level = parts[k].cells_per_level();
    for (std::size_t level = 0; level < per_level.size(); ++level)
      if (per_level[level]) std::printf("  level %2zu: %zu\n", level, per_level[level]);
  }
  files.commit();
  return 0;
}

}  // namespace
GEOLOC_COMMAND("partition", "build adaptive S2 partitionings of photo coordinates", run_partition);
}  // namespace geoloc::cli
