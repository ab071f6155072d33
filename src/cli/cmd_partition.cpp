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
  opt.tau_min = args.get_int("min");
  opt.min_level = static_cast<int>(args.get_int("min-level"));
  opt.max_level = static_cast<int>(args.get_int("max-level"));
  opt.tau_max.clear();
  for (const std::string& s : Args::split(args.get("max"))) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    GEOLOC_CHECK(!s.empty() && *end == 0, ValueError, "option --max expects integers, got '", s, "'");
    opt.tau_max.push_back(v);
  }
  const std::vector<std::string> outputs = Args::split(args.get("output"));
  GEOLOC_CHECK(outputs.size() == opt.tau_max.size(), ValueError, "--output names ", outputs.size(),
               " file(s) but --max gives ", opt.tau_max.size(), " value(s)");
  for (const auto& out : outputs) check_output_path(out);  // all writable before any is written

  const std::string input = args.get("input");
  const std::vector<geo::LatLng> points = geo::read_points_csv(input);
  std::printf("%s: %zu points\n", input.c_str(), points.size());
  const std::vector<geo::CellPartition> parts = geo::build_adaptive_partitions(points, opt);
  for (std::size_t k = 0; k < parts.size(); ++k) {
    parts[k].write_csv(outputs[k]);
    std::printf("%s: %zu cells (tau_max %lld, tau_min %lld), %lld points kept\n", outputs[k].c_str(),
                parts[k].size(), static_cast<long long>(opt.tau_max[k]), static_cast<long long>(opt.tau_min),
                static_cast<long long>(parts[k].total_count()));
    const auto per_level = parts[k].cells_per_level();
    for (std::size_t level = 0; level < per_level.size(); ++level)
      if (per_level[level]) std::printf("  level %2zu: %zu\n", level, per_level[level]);
  }
  return 0;
}

}  // namespace
GEOLOC_COMMAND("partition", "build adaptive S2 partitionings of photo coordinates", run_partition);
}  // namespace geoloc::cli
