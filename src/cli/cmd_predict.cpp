// geoloc predict: images -> JSON lines (one per image, or one for all with --place), optional maps.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/viz/probability_map.hpp"
#include "knn_args.hpp"
#include "predict_stream.hpp"

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
             {"nprobe", "FAISS IVF index: lists visited per query (overrides the index's)"},
             {"ef-search", "FAISS HNSW index: candidate list size (overrides the index's)"},
             {"faiss-params", "other FAISS search parameters, e.g. k_factor_rf=8 (overrides the index's)"},
             {"snap-to-land", "move predictions at sea to the nearest coast", true},
             {"five-crop", "average five crops per image", true},
             {"max-crops", "with --five-crop: max instead of mean over crops", true},
             {"place", "all images show one place: one answer from their mean probabilities", true},
             {"map-dir", "write a probability map PNG per answer into this folder"},
             {"shards", "read the images from tar / MessagePack shards ('dir/{000..099}.tar', globs, lists) "
                        "instead of files: streamed in batches, one JSON line per record (\"image\": shard:key)"},
             {"batch", "with --shards or --manifest: images per forward pass", false, "64"},
             {"manifest", "predict every row of this CSV (an 'image' column; other columns ignored) into --out, "
                          "streamed in batches (docs/scaling.md)"},
             {"out", "with --manifest: JSON lines file, one line per row in manifest order"},
             {"resume", "with --manifest: continue an interrupted --out from its last whole batch (same --batch: "
                        "the same file as an uninterrupted run)", true},
             {"device", "cpu or cuda", false, "cpu"}},
            "IMAGE");
  if (!args.parse(argc, argv)) return 0;
  const auto& files = args.positional();
  const bool from_shards = args.has("shards");
  const bool from_manifest = args.has("manifest");
  GEOLOC_CHECK(from_shards || from_manifest || !files.empty(), ValueError, "no image given (see geoloc predict --help)");
  GEOLOC_CHECK(!from_manifest || (files.empty() && !from_shards && !args.flag("place") && !args.has("map-dir")),
               ValueError, "--manifest takes no image files, --shards, --place or --map-dir");
  GEOLOC_CHECK(from_manifest || (!args.has("out") && !args.flag("resume")), ValueError, "--out and --resume go with --manifest");
  GEOLOC_CHECK(!from_manifest || args.has("out"), ValueError, "--manifest needs --out FILE.jsonl");
  GEOLOC_CHECK(!from_shards || files.empty(), ValueError, "give image files or --shards, not both");
  GEOLOC_CHECK(!from_shards || !args.flag("place"), ValueError, "--place takes image files, not --shards");
  GEOLOC_CHECK(from_shards || from_manifest || !args.has("batch"), ValueError, "option --batch needs --shards or "
               "--manifest (image files are answered in one pass)");
  const int64_t batch = args.get_int("batch", 1, 1 << 20);
  pipeline::PredictOptions po;
  po.strategy = pipeline::parse_strategy(args.get("strategy"));
  po.top_cells = static_cast<int>(args.get_int("top", 0, 1 << 20));
  po.snap_to_land = args.flag("snap-to-land");
  po.knn_k = static_cast<int>(args.get_int("knn-k", 1, 1 << 20));
  po.knn_mode = pipeline::parse_knn_mode(args.get("knn-mode"));
  po.refine_k = static_cast<int>(args.get_int("refine-k", 1, 1 << 20));
  po.refine_cells = static_cast<int>(args.get_int("refine-cells", 1, 1 << 20));
  po.refine_radius_km = args.get_double("refine-radius", 0, 20038);
  GEOLOC_CHECK(po.refine_radius_km > 0, ValueError, "option --refine-radius expects a positive distance in km, got '",
               args.get("refine-radius"), "'");
  const bool five = args.flag("five-crop");
  GEOLOC_CHECK(five || !args.flag("max-crops"), ValueError, "option --max-crops needs --five-crop");
  const Device device = usable_device(args.get("device"));
  const bool place = args.flag("place");

  // The files of the run: no map may overwrite an input, and the maps are renamed into place together
  // at the end (with --shards, JSON lines are streamed; the maps still appear only at the end).
  Outputs outputs;
  for (const char* key : {"model", "knn", "manifest"})
    if (args.has(key)) outputs.input(args.get(key), std::string("--") + key);
  for (const auto& f : files) outputs.input(f, "an image");
  // The shards are indexed (and a corrupt archive refused) before the model is loaded or anything written.
  std::unique_ptr<image::ShardSet> shards;
  if (from_shards) {
    const auto paths = image::expand_shard_pattern(args.get("shards"));
    for (const auto& p : paths) outputs.input(p, "--shards");
    shards = std::make_unique<image::ShardSet>(paths, "", false);
  }
  // --manifest --out is appended batch by batch on purpose (--resume continues it): outside the transaction.
  ManifestRun manifest_run{args.get("manifest", ""), args.get("out", ""), args.flag("resume"), batch, 0};
  if (from_manifest) {
    outputs.side_file(manifest_run.out, "--out");
    check_manifest_run(manifest_run);  // before the model is loaded
  }
  const std::string map_dir = args.get("map-dir", "");
  if (!map_dir.empty()) outputs.folder(map_dir, "--map-dir");
  // One map per answer, named after the image (numbered when two inputs share a file name: a/x.jpg and
  // b/x.jpg must not share a map).
  std::map<std::string, int> stem_count;
  for (const auto& f : files) ++stem_count[std::filesystem::path(f).stem().string()];
  auto file_stem = [&](size_t i) {
    if (place) return std::string("place");
    std::string stem = std::filesystem::path(files[i]).stem().string();
    return stem_count[stem] > 1 ? std::to_string(i) + "-" + stem : stem;
  };
  auto map_path = [&](const std::string& stem) { return (std::filesystem::path(map_dir) / (stem + ".png")).string(); };
  std::vector<std::string> map_temps;  // of the image files, registered (and checked) before any work
  if (!map_dir.empty() && !from_shards)
    for (size_t i = 0; i < (place ? 1 : files.size()); ++i) map_temps.push_back(outputs.file(map_path(file_stem(i)), "--map-dir"));

  pipeline::GeoModel model = pipeline::GeoModel::load(args.get("model"));
  model.net->set_frozen(true);  // inference only: the CPU convolutions may keep their packed weights
  if (args.has("knn")) model.knn = pipeline::KnnIndex::load(args.get("knn"));
  apply_faiss_search_args(args, model.knn);  // query-time FAISS parameters (docs/scaling.md)
  GEOLOC_CHECK(map_dir.empty() || !model.partitions.empty(), ValueError, "--map-dir draws the finest partitioning's "
               "cells, and ", args.get("model"), " has none");
  model.net->to(device);
  if (!model.knn.empty()) model.knn = model.knn.to(device);  // searches run where the network runs
  const auto countries = geo::CountryIndex::load_default();
  const pipeline::Predictor predictor(model, &countries);
  GEOLOC_CHECK(predictor.supports(po.strategy) || po.strategy == pipeline::Strategy::Hierarchy, ValueError,
               "strategy '", args.get("strategy"), "' is not available for this model");

  // Files: decode everything first, so a bad image is an error before any output is written. Shards are
  // streamed instead (millions of records): a record that does not decode is skipped and counted.
  image::DecodeOptions decode;
  decode.min_size = model.preprocess.resize;  // JPEGs decoded at the smallest DCT scale that still suffices
  std::vector<image::Image> images;
  for (const auto& f : files) images.push_back(image::decode_file(f, decode));

  std::unique_ptr<viz::MapRenderer> maps;
  if (!map_dir.empty()) maps = std::make_unique<viz::MapRenderer>(*model.finest().partition, viz::default_background_path());
  // One JSON line (and map, written to `map_temp`) for answer i of hp; `name` is the file or shard:key.
  // File names are not always UTF-8: invalid bytes become U+FFFD, the rest of the name stays readable.
  auto answer_line = [&](const pipeline::HeadProbabilities& hp, int64_t i, const std::string& name,
                         const std::string& stem, const std::string& map_temp) {
    const pipeline::Prediction p = predictor.decide(hp, i, po);
    nlohmann::json j;
    if (place) {
      j["images"] = files;
    } else {
      j["image"] = name;
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
    if (const std::string cname = countries.name_of(p.country); !cname.empty()) j["country_name"] = cname;
    if (maps) {
      viz::ProbabilityMapSpec spec;
      spec.title = stem;
      spec.prediction = p.coordinate;
      spec.log_scale = true;
      spec.top_k = 3;
      maps->write(map_temp, hp.row(model.finest().name, i), spec);
      j["map"] = map_path(stem);
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  auto probabilities = [&](std::vector<image::Image>& imgs) {
    pipeline::HeadProbabilities hp =
        predictor.probabilities(model.preprocess.eval_batch(imgs, five).to(model.net->device()));
    if (five) hp = pipeline::Predictor::aggregate(hp, 5, args.flag("max-crops"));
    if (place) hp = pipeline::Predictor::aggregate(hp, hp.n);
    predictor.prepare(hp, po);  // the neighbour searches of knn and refine, batched
    return hp;
  };
  if (from_manifest) {  // streamed, ordered, resumable (predict_stream.hpp); no maps
    manifest_run.resize = model.preprocess.resize;
    predict_manifest(manifest_run, [&](std::vector<image::Image>& imgs, const std::vector<std::string>& names) {
      const pipeline::HeadProbabilities hp = probabilities(imgs);
      std::vector<std::string> lines;
      for (int64_t i = 0; i < hp.n; ++i)
        lines.push_back(answer_line(hp, i, names[static_cast<size_t>(i)], std::string(), std::string()));
      return lines;
    });
    outputs.commit();
    return 0;
  }
  if (!from_shards) {
    // Every answer (and map) first, then the lines, then the maps into place: all or nothing.
    const pipeline::HeadProbabilities hp = probabilities(images);
    std::vector<std::string> lines;
    for (int64_t i = 0; i < hp.n; ++i)
      lines.push_back(answer_line(hp, i, place ? std::string() : files[i], file_stem(i),
                                  map_temps.empty() ? std::string() : map_temps[i]));
    for (const auto& l : lines) std::printf("%s\n", l.c_str());
    outputs.commit();
    return 0;
  }
  // Shards, in listed order, `batch` records per forward pass: memory stays bounded by the batch.
  auto stream = shards->stream(false, 0, 0);
  size_t done = 0, skipped = 0;
  std::string first_skip;
  for (bool more = true; more;) {
    std::vector<image::Image> imgs;
    std::vector<std::string> names;
    while (static_cast<int64_t>(imgs.size()) < batch) {
      auto r = stream->next();
      if (!r) {
        more = false;
        break;
      }
      try {
        imgs.push_back(image::decode_memory(r->bytes.data(), r->bytes.size(), r->name, decode));
        names.push_back(r->name);
      } catch (const IoError& e) {
        if (skipped++ == 0) first_skip = e.what();
      }
    }
    if (imgs.empty()) break;
    const pipeline::HeadProbabilities hp = probabilities(imgs);
    for (int64_t i = 0; i < hp.n; ++i) {
      std::string stem = names[i];
      std::replace(stem.begin(), stem.end(), '/', '_');
      std::replace(stem.begin(), stem.end(), ':', '_');
      const std::string temp = maps ? outputs.file(map_path(stem), "--map-dir") : std::string();
      std::printf("%s\n", answer_line(hp, i, names[i], stem, temp).c_str());
    }
    done += imgs.size();
  }
  if (skipped)  // one line, however many
    std::fprintf(stderr, "geoloc predict: skipped %zu records that do not decode, the first: %s\n", skipped,
                 detail::escape_controls(first_skip).c_str());
  std::fprintf(stderr, "geoloc predict: %zu images from %zu shards (%zu left out when indexing, %zu not decodable)\n",
               done, shards->paths().size(), shards->left_out(), skipped);
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("predict", "where were these photos taken? JSON lines, optional probability maps", run_predict);

}  // namespace geoloc::cli
