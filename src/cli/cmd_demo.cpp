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
  GEOLOC_CHECK(!args.flag("quick") || !args.has("size"), ValueError, "give --quick or --size, not both");
  c.preset = args.get("preset");
  c.maps = static_cast<int>(args.get_int("maps", 0, 1000));
  c.seed = static_cast<uint64_t>(args.get_int("seed", 0, INT64_MAX));
  c.device = args.get("device");
  usable_device(c.device);
  c.steps = args.get_int("steps", 0, INT64_MAX);
  c.optimizer = args.get("optimizer", "");
  c.unit = geo::parse_distance_unit(args.get("unit"));
  // The run writes into a temporary folder beside --out, moved into place at the end: a run that fails
  // leaves no half-filled folder (no model without its metrics).
  Outputs outputs;
  const std::string out = args.get("out");
  c.out_dir = outputs.folder_contents(out, "--out");
  std::printf("geoloc demo: learning where on Earth a picture was taken, from NASA imagery (preset %s, size %s)\n",
              c.preset.c_str(), c.size.c_str());
  check_stdout();  // a lost standard output fails now, not after minutes of work
  const pipeline::DemoResult r = pipeline::run_demo(c);
  std::string report = r.report;  // names the folder it wrote: --out, not the temporary one
  for (size_t at = 0; (at = report.find(c.out_dir, at)) != std::string::npos; at += out.size())
    report.replace(at, c.out_dir.size(), out);
  std::printf("%s", report.c_str());
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("demo", "the embedded Earth geolocation benchmark: build data, train, evaluate, report", run_demo);

}  // namespace geoloc::cli
