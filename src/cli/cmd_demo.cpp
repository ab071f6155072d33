// geoloc demo: the embedded Earth geolocation benchmark, end to end, no arguments needed.
#include <cstdio>

#include "cli.hpp"
#include "geoloc/pipeline/demo.hpp"

namespace geoloc::cli {
namespace {

int run_demo(int argc, char** argv) {
  Args args("demo", "[--quick] [--size quick|default|large] [--preset NAME] [--out DIR]",
            {{"quick", "the small setting (under 30 s on 2 cores): same as --size quick", true},
             {"size", "quick, default (under 3 min on 2 cores) or large (for a GPU)", false, "default"},
             {"preset", "multitask (S2 cells + scene), regression (haversine), country (+ multi-view), worldnet (k-means, snapped to land), grid (fishnet over Europe)",
              false, "multitask"},
             {"out", "output folder", false, "demo-out"},
             {"maps", "probability maps of the first views of each test split (0 = none; else also its best and median-error views)", false, "3"},
             {"seed", "random seed", false, "1"},
             {"steps", "training steps of the network (0 = the size's setting)", false, "0"},
             {"optimizer", "sgd or adamw (default: the size's setting)"},
             {"unit", "distances in the tables: km or miles (metrics.json stays in km)", false, "km"},
             {"device", "cpu or cuda", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  pipeline::DemoConfig c;
  c.size = args.flag("quick") ? "quick" : args.get("size");
  c.preset = args.get("preset");
  c.out_dir = args.get("out");
  c.maps = static_cast<int>(args.get_int("maps"));
  c.seed = static_cast<uint64_t>(args.get_int("seed"));
  c.device = args.get("device");
  c.steps = args.get_int("steps");
  c.optimizer = args.get("optimizer", "");
  c.unit = geo::parse_distance_unit(args.get("unit"));
  std::printf("geoloc demo: learning where on Earth a picture was taken, from NASA imagery (preset %s, size %s)\n",
              c.preset.c_str(), c.size.c_str());
  std::fflush(stdout);
  const pipeline::DemoResult r = pipeline::run_demo(c);
  std::printf("%s", r.report.c_str());
  return 0;
}

}  // namespace

GEOLOC_COMMAND("demo", "the embedded Earth geolocation benchmark: build data, train, evaluate, report", run_demo);

}  // namespace geoloc::cli
