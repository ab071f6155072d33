#pragma once
// The FAISS options of index, predict and eval (issue #20, docs/scaling.md): --nprobe, --ef-search and
// --faiss-params, composed into FAISS's parameter string.
#include <string>

#include "cli.hpp"
#include "geoloc/pipeline/knn.hpp"

namespace geoloc::cli {

/// "nprobe=N,efSearch=N,<--faiss-params>" from the options given ("" for none); ValueError for a
/// non-positive --nprobe or --ef-search.
std::string faiss_params_from_args(const Args& args);

/// Query-time override: the options given set over the index's stored search parameters. ValueError
/// when given for an index without FAISS, or for a parameter its FAISS index does not have.
void apply_faiss_search_args(const Args& args, pipeline::KnnIndex& index);

}  // namespace geoloc::cli
