// The data options the train, eval and index commands share (see data_args.hpp).
#include "data_args.hpp"

#include <cstdio>

namespace geoloc::cli {

std::shared_ptr<image::ShardSet> open_shards(const Args& args) {
  auto shards = std::make_shared<image::ShardSet>(image::expand_shard_pattern(args.get("shards")),
                                                  args.get("shard-labels", ""));
  std::fprintf(stderr, "shards: %zu records in %zu shards", shards->size(), shards->paths().size());
  if (shards->left_out())
    std::fprintf(stderr, " (%zu left out: %zu without coordinates, %zu without an image, %zu unreadable)",
                 shards->left_out(), shards->without_label(), shards->without_image(), shards->corrupt());
  std::fprintf(stderr, "\n");
  return shards;
}

std::unique_ptr<pipeline::RowSource> read_rows(const Args& args, int size) {
  if (args.has("shards")) {
    GEOLOC_CHECK(!args.has("data"), ValueError, "give --data or --shards, not both");
    return std::make_unique<pipeline::ShardRows>(open_shards(args), size);  // streamed: memory bounded by the batch
  }
  return std::make_unique<pipeline::ManifestRows>(args.get("data"), size);
}

void report_skipped(const pipeline::RowSource& rows) {
  if (rows.skipped() == 0) return;
  std::fprintf(stderr, "%zu of %zu images could not be read and were left out (first: %s)\n", rows.skipped(),
               rows.size(), rows.first_skip().c_str());
}

}  // namespace geoloc::cli
