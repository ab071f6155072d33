// geoloc index: the k-NN index of a model's embeddings over a manifest (or shards).
#include <cstdio>

#include "cli.hpp"
#include "data_args.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/knn.hpp"

namespace geoloc::cli {
namespace {

int run_index(int argc, char** argv) {
  Args args("index", "--model MODEL.safetensors --data TRAIN.csv --out INDEX.safetensors",
            {{"model", "model file (geoloc train)"},
             {"data", "manifest of the images to index (usually the training set)"},
             {"shards", "shards to index instead of --data (as geoloc train --shards)"},
             {"shard-labels", "CSV joined with the shard records (as geoloc train --shard-labels)"},
             {"out", "index file to write"},
             {"device", "cpu or cuda", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  const Device device = usable_device(args.get("device"));
  Outputs outputs;
  for (const char* key : {"model", "data", "shard-labels"})
    if (args.has(key)) outputs.input(args.get(key), std::string("--") + key);
  if (args.has("shards"))
    for (const auto& p : image::expand_shard_pattern(args.get("shards"))) outputs.input(p, "--shards");
  const std::string out = outputs.file(args.get("out"), "--out");
  pipeline::GeoModel model = pipeline::GeoModel::load(args.get("model"));
  model.net->to(device);
  const std::unique_ptr<pipeline::RowSource> data = read_rows(args, model.preprocess.resize);
  const pipeline::KnnIndex index = pipeline::build_knn_index(model, *data);  // IoError when no image is readable
  report_skipped(*data);
  index.save(out);
  std::printf("k-NN index of %zu images (dimension %lld): %s\n", index.coords.size(),
              static_cast<long long>(index.embeddings.dim(1)), args.get("out").c_str());
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("index", "build the k-NN index of a model's embeddings", run_index);

}  // namespace geoloc::cli
