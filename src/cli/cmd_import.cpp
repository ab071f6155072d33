// geoloc import: weights converted from PyTorch + the partition CSVs they were trained with -> one model file.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli.hpp"
#include "geoloc/detail/input_file.hpp"
#include "geoloc/pipeline/import.hpp"

namespace geoloc::cli {
namespace {

std::vector<float> three_floats(const Args& args, const std::string& key, const std::string& fallback) {
  std::vector<float> v;
  for (const auto& s : Args::split(args.get(key, fallback)))
    v.push_back(static_cast<float>(parse_double(s, -1e6, 1e6, "option --" + key)));
  GEOLOC_CHECK(v.size() == 3, ValueError, "--", key, " needs three comma-separated values (R,G,B), got ", v.size());
  return v;
}

std::vector<std::string> scene_names(const Args& args) {
  if (args.has("scenes")) return Args::split(args.get("scenes"));
  if (!args.has("scenes-file")) return {};
  const std::string path = args.get("scenes-file");
  std::istringstream f(detail::read_input_file(path, "scenes file", 64 << 20));
  std::vector<std::string> names;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

int run_import(int argc, char** argv) {
  Args args("import", "--weights W.safetensors --partitions coarse.csv,middle.csv,fine.csv --out MODEL.safetensors",
            {{"weights", "network weights in safetensors (tools/convert_checkpoint.py turns .ckpt/.pth into this)"},
             {"partitions", "partition CSVs (ECCV 2018 format), coarse to fine, one per classifier head"},
             {"out", "the model file to write"},
             {"arch", "architecture, overriding the weights file's (resnet50, resnet:..., see docs/network.md)"},
             {"scenes", "comma-separated names of the scene head's classes"},
             {"scenes-file", "file with one scene name per line (instead of --scenes)"},
             {"resize", "shorter side before cropping", false, "256"},
             {"crop", "crop size", false, "224"},
             {"mean", "normalisation mean R,G,B", false, "0.485,0.456,0.406"},
             {"std", "normalisation std R,G,B", false, "0.229,0.224,0.225"}});
  if (!args.parse(argc, argv)) return 0;
  GEOLOC_CHECK(!(args.has("scenes") && args.has("scenes-file")), ValueError, "give --scenes or --scenes-file, not both");
  pipeline::ImportSpec spec;
  spec.weights = args.get("weights");
  spec.partitions = Args::split(args.get("partitions"));
  const std::string out = args.get("out");
  if (args.has("arch")) spec.arch = args.get("arch");
  spec.preprocess.resize = static_cast<int>(args.get_int("resize", 1, 8192));
  spec.preprocess.crop = static_cast<int>(args.get_int("crop", 1, 8192));
  const auto mean = three_floats(args, "mean", "0.485,0.456,0.406"), std = three_floats(args, "std", "0.229,0.224,0.225");
  for (int c = 0; c < 3; ++c) {
    spec.preprocess.mean[c] = mean[c];
    spec.preprocess.std[c] = std[c];
    GEOLOC_CHECK(std[c] > 0, ValueError, "option --std expects positive values, got '", args.get("std", ""), "'");
  }
  spec.preprocess.validate();
  Outputs outputs;
  outputs.input(spec.weights, "--weights");
  for (const auto& p : spec.partitions) outputs.input(p, "--partitions");
  if (args.has("scenes-file")) outputs.input(args.get("scenes-file"), "--scenes-file");
  const std::string out_tmp = outputs.file(out, "--out");
  spec.scene_names = scene_names(args);
  for (const auto& n : spec.scene_names) check_utf8(n, "scene name");
  pipeline::ImportReport report;
  const pipeline::GeoModel model = pipeline::import_model(spec, &report);
  model.save(out_tmp);
  outputs.commit();
  std::string heads;
  for (size_t i = 0; i < report.head_names.size(); ++i)
    heads += (i ? ", " : "") + report.head_names[i] + " " + std::to_string(report.classes[i]);
  std::fprintf(stderr, "geoloc import: wrote %s (%s; partitions %s%s)\n", out.c_str(),
               model.net->config().name().c_str(), heads.c_str(),
               model.hierarchy() ? ", hierarchy" : "");
  if (report.missing_ancestors)
    std::fprintf(stderr, "geoloc import: %zu finest cells have no containing cell in some coarser partitioning "
                 "(scored 1/size there)\n", report.missing_ancestors);
  return 0;
}

}  // namespace

GEOLOC_COMMAND("import", "a PyTorch-trained model (converted weights) + its partition CSVs -> a geoloc model", run_import);

}  // namespace geoloc::cli
