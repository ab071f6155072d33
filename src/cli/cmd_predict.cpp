// geoloc predict: images -> JSON lines (one per image, or one for all with --place), optional maps.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/viz/probability_map.hpp"

namespace geoloc::cli {
namespace {

int run_predict(int argc, char** argv) {
  Args args("predict", "--model MODEL.safetensors [options] IMAGE...",
            {{"model", "model file (geoloc train)"},
             {"knn", "k-NN index (geoloc index), for --strategy knn, refine or rank"},
             {"strategy", "hierarchy, cell, centroid, knn, regression, refine, hybrid or rank", false, "hierarchy"},
             {"top", "cells listed per image", false, "5"},
             {"knn-k", "neighbours for --strategy knn", false, "16"},
             {"knn-mode", "mean (weighted spherical mean) or mean-shift (densest group of neighbours)", false, "mean"},
             {"refine-k", "neighbours searched within the top cells, for --strategy refine or rank", false, "16"},
             {"refine-cells", "top finest cells searched, for --strategy refine or rank", false, "5"},
             {"refine-radius", "cluster radius in km, for --strategy refine or rank", false, "300"},
             {"snap-to-land", "move predictions at sea to the nearest coast", true},
             {"five-crop", "average five crops per image", true},
             {"max-crops", "with --five-crop: max instead of mean over crops", true},
             {"place", "all images show one place: one answer from their mean probabilities", true},
             {"map-dir", "write a probability map PNG per answer into this folder"},
             {"device", "cpu or cuda", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  const auto& files = args.positional();
  GEOLOC_CHECK(!files.empty(), ValueError, "no image given (see geoloc predict --help)");
  pipeline::GeoModel model = pipeline::GeoModel::load(args.get("model"));
  if (args.has("knn")) model.knn = pipeline::KnnIndex::load(args.get("knn"));
  const Device device = Device::parse(args.get("device"));
  model.net->to(device);
  if (!model.knn.empty()) model.knn = model.knn.to(device);  // searches run where the network runs
  const auto countries = geo::CountryIndex::load_default();
  const pipeline::Predictor predictor(model, &countries);
  pipeline::PredictOptions po;
  po.strategy = pipeline::parse_strategy(args.get("strategy"));
  po.top_cells = static_cast<int>(args.get_int("top"));
  po.snap_to_land = args.flag("snap-to-land");
  po.knn_k = static_cast<int>(args.get_int("knn-k"));
  po.knn_mode = pipeline::parse_knn_mode(args.get("knn-mode"));
  po.refine_k = static_cast<int>(args.get_int("refine-k"));
  po.refine_cells = static_cast<int>(args.get_int("refine-cells"));
  po.refine_radius_km = args.get_double("refine-radius");
  GEOLOC_CHECK(predictor.supports(po.strategy) || po.strategy == pipeline::Strategy::Hierarchy, ValueError,
               "strategy '", args.get("strategy"), "' is not available for this model");
  const bool five = args.flag("five-crop");

  // Decode everything first: a bad image is an error before any output is written.
  std::vector<image::Image> images;
  for (const auto& f : files) images.push_back(image::decode_file(f));

  std::unique_ptr<viz::MapRenderer> maps;
  const std::string map_dir = args.get("map-dir", "");
  if (!map_dir.empty() && !model.partitions.empty()) {
    std::filesystem::create_directories(map_dir);
    check_output_path((std::filesystem::path(map_dir) / "x.png").string());
    maps = std::make_unique<viz::MapRenderer>(*model.finest().partition, viz::default_background_path());
  }
  pipeline::HeadProbabilities hp =
      predictor.probabilities(pipeline::network_input(model.preprocess, images, five, model.net->device()));
  if (five) hp = pipeline::Predictor::aggregate(hp, 5, args.flag("max-crops"));
  if (args.flag("place")) hp = pipeline::Predictor::aggregate(hp, hp.n);
  predictor.prepare(hp, po);  // the neighbour searches of knn and refine, batched
  std::map<std::string, int> stem_count;
  for (const auto& f : files) ++stem_count[std::filesystem::path(f).stem().string()];
  for (int64_t i = 0; i < hp.n; ++i) {
    const pipeline::Prediction p = predictor.decide(hp, i, po);
    nlohmann::json j;
    if (args.flag("place")) {
      j["images"] = files;
    } else {
      j["image"] = files[i];
    }
    j["latitude"] = p.coordinate.lat;
    j["longitude"] = p.coordinate.lng;
    j["strategy"] = pipeline::strategy_name(p.strategy);
    j["confidence"] = p.confidence;
    j["top_cells"] = nlohmann::json::array();
    for (const auto& c : p.top_cells)
      j["top_cells"].push_back(
          {{"cell", c.cell}, {"probability", c.probability}, {"latitude", c.center.lat}, {"longitude", c.center.lng}});
    if (p.scene >= 0) {
      j["scene"] = p.scene < static_cast<int>(model.scene_names.size()) ? model.scene_names[p.scene]
                                                                       : std::to_string(p.scene);
      j["scene_probability"] = p.scene_probability;
    }
    j["country"] = p.country;
    if (const std::string name = countries.name_of(p.country); !name.empty()) j["country_name"] = name;
    if (maps) {
      // Numbered when two inputs share a file name (a/x.jpg and b/x.jpg must not share a map).
      std::string stem = args.flag("place") ? "place" : std::filesystem::path(files[i]).stem().string();
      if (!args.flag("place") && stem_count[stem] > 1) stem = std::to_string(i) + "-" + stem;
      const std::string png = (std::filesystem::path(map_dir) / (stem + ".png")).string();
      viz::ProbabilityMapSpec spec;
      spec.title = stem;
      spec.prediction = p.coordinate;
      spec.log_scale = true;
      spec.top_k = 3;
      maps->write(png, hp.row(model.finest().name, i), spec);
      j["map"] = png;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

GEOLOC_COMMAND("predict", "where were these photos taken? JSON lines, optional probability maps", run_predict);

}  // namespace geoloc::cli
