// geoloc eval: a model's accuracy on a manifest (or shards), strategy by strategy.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli.hpp"
#include "data_args.hpp"
#include "geoloc/atomic_file.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "knn_args.hpp"

namespace geoloc::cli {
namespace {

// "1,10,25": positive finite distances in km, sorted and without duplicates (the table's row order).
std::vector<double> parse_thresholds(const std::string& s) {
  std::vector<double> out;
  for (const auto& part : Args::split(s)) {
    const double v = parse_double(part, 0, 1e6, "option --thresholds");
    GEOLOC_CHECK(v > 0, ValueError, "--thresholds expects positive distances in km separated by commas, got '", part,
                 "'");
    out.push_back(v);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int run_eval(int argc, char** argv) {
  Args args("eval", "--model MODEL.safetensors --data TEST.csv [options]",
            {{"model", "model file (geoloc train)"},
             {"data", "test manifest"},
             {"shards", "test shards instead of --data (as geoloc train --shards)"},
             {"shard-labels", "CSV joined with the shard records (as geoloc train --shard-labels)"},
             {"knn", "k-NN index (geoloc index) for the knn, refine and rank strategies"},
             {"strategies", "strategies to compare", false, "cell,hierarchy,centroid,knn,regression,refine,hybrid,rank"},
             {"json", "write the metrics here as JSON"},
             {"calibration", "write the calibration (ECE) and accuracy-vs-coverage curves to STEM.json and STEM.png"},
             {"thresholds", "accuracy thresholds in km (Sy & Day: 10,100,1000,10000)", false, "1,25,200,750,2500"},
             {"unit", "distances in the table: km or miles (the JSON stays in km)", false, "km"},
             {"five-crop", "average five crops per image", true},
             {"max-crops", "with --five-crop: max instead of mean over the crops", true},
             {"knn-k", "neighbours for the knn strategy", false, "16"},
             {"knn-mode", "mean or mean-shift", false, "mean"},
             {"refine-k", "neighbours searched within the top cells (refine, rank)", false, "16"},
             {"refine-cells", "top finest cells searched (refine, rank)", false, "5"},
             {"refine-radius", "cluster radius in km (refine, rank)", false, "300"},
             {"nprobe", "FAISS IVF index: lists visited per query (overrides the index's)"},
             {"ef-search", "FAISS HNSW index: candidate list size (overrides the index's)"},
             {"faiss-params", "other FAISS search parameters, e.g. k_factor_rf=8 (overrides the index's)"},
             {"device", "cpu or cuda", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  // Options are checked before the model and the data are read.
  const std::vector<double> thresholds = parse_thresholds(args.get("thresholds"));
  const geo::TableOptions table{.unit = geo::parse_distance_unit(args.get("unit"))};
  pipeline::EvalOptions eo;
  eo.strategies.clear();  // exactly the ones asked for
  for (const auto& s : Args::split(args.get("strategies"))) eo.strategies.push_back(pipeline::parse_strategy(s));
  eo.thresholds_km = thresholds;
  eo.five_crop = args.flag("five-crop");
  eo.max_crops = args.flag("max-crops");
  GEOLOC_CHECK(!eo.max_crops || eo.five_crop, ValueError, "option --max-crops needs --five-crop");
  eo.predict.knn_k = static_cast<int>(args.get_int("knn-k", 1, 1 << 20));
  eo.predict.knn_mode = pipeline::parse_knn_mode(args.get("knn-mode"));
  eo.predict.refine_k = static_cast<int>(args.get_int("refine-k", 1, 1 << 20));
  eo.predict.refine_cells = static_cast<int>(args.get_int("refine-cells", 1, 1 << 20));
  eo.predict.refine_radius_km = args.get_double("refine-radius", 0, 20038);
  GEOLOC_CHECK(eo.predict.refine_radius_km > 0, ValueError, "option --refine-radius expects a positive distance in km, got '",
               args.get("refine-radius"), "'");
  const Device device = usable_device(args.get("device"));
  Outputs outputs;
  for (const char* key : {"model", "data", "knn", "shard-labels"})
    if (args.has(key)) outputs.input(args.get(key), std::string("--") + key);
  if (args.has("shards"))
    for (const auto& p : image::expand_shard_pattern(args.get("shards"))) outputs.input(p, "--shards");
  const std::string json_tmp = args.has("json") ? outputs.file(args.get("json"), "--json") : "";
  const std::string calibration_tmp =
      args.has("calibration") ? outputs.stem(args.get("calibration"), {".json", ".png"}, "--calibration") : "";

  pipeline::GeoModel model = pipeline::GeoModel::load(args.get("model"));
  model.net->set_frozen(true);  // inference only: the CPU convolutions may keep their packed weights
  if (args.has("knn")) model.knn = pipeline::KnnIndex::load(args.get("knn"));
  apply_faiss_search_args(args, model.knn);  // query-time FAISS parameters (docs/scaling.md)
  model.net->to(device);
  if (!model.knn.empty()) model.knn = model.knn.to(device);  // searches run where the network runs
  const std::unique_ptr<pipeline::RowSource> data = read_rows(args, model.preprocess.resize);
  const auto countries = geo::CountryIndex::load_default();
  const pipeline::EvalReport report = pipeline::evaluate_strategies(model, *data, &countries, eo);
  report_skipped(*data);
  if (!calibration_tmp.empty()) report.write_calibration(calibration_tmp);
  if (!json_tmp.empty()) {
    const std::string j = report.to_json();
    write_file_atomic(json_tmp, [&](std::ostream& os) { os << j << "\n"; }, false);
  }
  std::printf("%s", report.table(table).c_str());
  std::printf("%s", report.calibration_table().c_str());
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("eval",
               "evaluate a model on a manifest: accuracy at 1/25/200/750/2500 km (or --thresholds), median, mean, "
               "GeoGuessr, country and continent accuracy, cell-centroid error",
               run_eval);

}  // namespace geoloc::cli
