#pragma once
// The data options the train, eval and index commands share: --data (a manifest) or --shards with
// --shard-labels.
#include <memory>

#include "cli.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/pipeline/dataset.hpp"

namespace geoloc::cli {

/// --shards and --shard-labels: the shard set, indexed (every shard read once: corrupt ones fail here).
std::shared_ptr<image::ShardSet> open_shards(const Args& args);

/// The evaluation / index data: --data (a manifest) or --shards, decoded at `size`.
pipeline::Dataset read_data(const Args& args, int size);

}  // namespace geoloc::cli
