// The FAISS options of index, predict and eval (see knn_args.hpp).
#include "knn_args.hpp"

#include <cstdint>
#include <limits>

namespace geoloc::cli {

std::string faiss_params_from_args(const Args& args) {
  std::string p;
  const auto add = [&](const std::string& s) { p += (p.empty() ? "" : ",") + s; };
  if (args.has("nprobe")) {
    const long long n = args.get_int("nprobe", 1, std::numeric_limits<int32_t>::max());
    add("nprobe=" + std::to_string(n));
  }
  if (args.has("ef-search")) {
    const long long n = args.get_int("ef-search", 1, std::numeric_limits<int32_t>::max());
    add("efSearch=" + std::to_string(n));
  }
  if (args.has("faiss-params")) add(args.get("faiss-params"));
  return p;
}

void apply_faiss_search_args(const Args& args, pipeline::KnnIndex& index) {
  const std::string p = faiss_params_from_args(args);
  if (p.empty()) return;
  GEOLOC_CHECK(!index.empty(), ValueError, "--nprobe, --ef-search and --faiss-params need a k-NN index (--knn)");
  index.set_search_params(p);
}

}  // namespace geoloc::cli
