// geoloc index: the k-NN index of a model's embeddings over a manifest (or shards), exact or with FAISS.
#include <cstdint>
#include <cstdio>
#include <limits>

#include "cli.hpp"
#include "data_args.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "knn_args.hpp"

namespace geoloc::cli {
namespace {

int run_index(int argc, char** argv) {
  Args args("index", "--model MODEL.safetensors --data TRAIN.csv --out INDEX.safetensors [--faiss SPEC]",
            {{"model", "model file (geoloc train)"},
             {"data", "manifest of the images to index (usually the training set)"},
             {"shards", "shards to index instead of --data (as geoloc train --shards)"},
             {"shard-labels", "CSV joined with the shard records (as geoloc train --shard-labels)"},
             {"out", "index file to write"},
             {"faiss", "build a FAISS index (faiss::index_factory spec: Flat, HNSW32, IVF4096,SQ8, IVF4096,PQ32, ...) "
                       "instead of keeping the embeddings for exact search (docs/scaling.md)"},
             {"nprobe", "with --faiss IVF: lists visited per query, stored with the index (default 16)"},
             {"ef-search", "with --faiss HNSW: candidate list size, stored with the index (default 64)"},
             {"faiss-params", "with --faiss: other FAISS search parameters, e.g. k_factor_rf=8"},
             {"train-rows", "with --faiss: rows to train on, evenly spaced (0 = all)", false, "0"},
             {"device", "cpu or cuda", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  // Options are checked before the model and the images are read.
  pipeline::FaissOptions fo;
  fo.spec = args.get("faiss", "");
  fo.params = faiss_params_from_args(args);
  fo.train_rows = args.get_int("train-rows", 0, std::numeric_limits<int32_t>::max());
  GEOLOC_CHECK(args.has("faiss") || (fo.params.empty() && fo.train_rows == 0), ValueError,
               "--nprobe, --ef-search, --faiss-params and --train-rows need --faiss SPEC");
  GEOLOC_CHECK(!args.has("faiss") || !fo.spec.empty(), ValueError, "--faiss needs an index spec (e.g. HNSW32, IVF4096,SQ8)");
  GEOLOC_CHECK(fo.spec.empty() || pipeline::faiss_available(), ValueError, "--faiss ", fo.spec,
               ": this geoloc was built without FAISS (install libfaiss-dev and configure again; docs/scaling.md)");
  const Device device = usable_device(args.get("device"));
  Outputs outputs;
  for (const char* key : {"model", "data", "shard-labels"})
    if (args.has(key)) outputs.input(args.get(key), std::string("--") + key);
  if (args.has("shards"))
    for (const auto& p : image::expand_shard_pattern(args.get("shards"))) outputs.input(p, "--shards");
  const std::string out = outputs.file(args.get("out"), "--out");
  pipeline::GeoModel model = pipeline::GeoModel::load(args.get("model"));
  model.net->set_frozen(true);  // inference only: the CPU convolutions may keep their packed weights
  model.net->to(device);
  const std::unique_ptr<pipeline::RowSource> data = read_rows(args, model.preprocess.resize);
  pipeline::KnnIndex index = pipeline::build_knn_index(model, *data);  // IoError when no image is readable
  report_skipped(*data);
  if (!fo.spec.empty()) index.build_faiss(fo);
  index.save(out);
  std::printf("k-NN index of %zu images (dimension %lld", index.coords.size(), static_cast<long long>(index.dim()));
  if (index.has_faiss())
    std::printf(", FAISS %s, %s", index.faiss_spec().c_str(),
                index.search_params().empty() ? "no search parameters" : index.search_params().c_str());
  std::printf("): %s\n", args.get("out").c_str());
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("index", "build the k-NN index of a model's embeddings (exact, or FAISS with --faiss)", run_index);

}  // namespace geoloc::cli
