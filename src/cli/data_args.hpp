#pragma once
// The data options the train, eval and index commands share: --data (a manifest) or --shards with
// --shard-labels.
#include <memory>

#include "cli.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/pipeline/row_source.hpp"

namespace geoloc::cli {

/// --shards and --shard-labels: the shard set, indexed (every shard read once: corrupt ones fail here).
std::shared_ptr<image::ShardSet> open_shards(const Args& args);

/// The evaluation / index data: --data (a manifest, decoded a batch at a time as the rows are read) or
/// --shards (decoded into memory), at `size`.
std::unique_ptr<pipeline::RowSource> read_rows(const Args& args, int size);
/// One stderr line when some images could not be read: how many, and the first with its reason.
void report_skipped(const pipeline::RowSource& rows);

}  // namespace geoloc::cli
