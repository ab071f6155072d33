#pragma once
// Sharded data sets, read as streams without extracting anything (docs/data.md, "Shards"):
//
// * tar shards in the WebDataset layout, read with libarchive: the members of one sample are
//   consecutive and share a key (the member path up to the first dot of its file name); the image is
//   key.jpg / key.jpeg / key.png, its labels key.json ({"latitude", "longitude"[, "scene"][, "country"]})
//   or a row of a labels CSV joined on the key;
// * MessagePack shards of the ECCV 2018 code, read with msgpack-cxx: a sequence of maps holding the
//   encoded image under "image" and its id under "id", joined with a labels CSV on the id.
//
// A ShardSet reads every shard once when it is built (tar: member headers and .json members only, image
// data skipped; MessagePack: everything), which validates the archives before any training starts,
// counts the usable records and collects their labels (the cells of a model are built from them).
// Then ShardStream passes over the records, in listed order or in a seeded order: shards shuffled,
// records drawn from a bounded shuffle buffer.
//
// A record without an image, without coordinates (no JSON, not in the CSV, out of range) or with
// unreadable JSON or MessagePack fields is left out and counted; an archive that cannot be read on
// (truncated, damaged header, malformed MessagePack) is an IoError naming the shard and the record.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::image {

/// One usable record of a shard, its image still encoded.
struct ShardRecord {
  std::string name;            // "<shard>:<key>" for messages
  std::vector<uint8_t> bytes;  // the encoded image (JPEG or PNG)
  double latitude = 0, longitude = 0;
  int32_t scene = -1, country = -1;
};

/// Labels of a record (what the model's cells and the trainer need before any image is decoded).
struct ShardLabel {
  double latitude = 0, longitude = 0;
  int32_t scene = -1, country = -1;
};

/// Expands a shard specification into existing files, in order: comma-separated items, each with
/// optional brace ranges "{000..009}" (the width of the first bound is kept) and globs (* ? [..],
/// sorted). ValueError when an item names no file.
std::vector<std::string> expand_shard_pattern(const std::string& spec);

class ShardStream;

class ShardSet {
 public:
  /// Indexes `paths` (".tar", ".tar.gz", ".tgz": WebDataset tar; ".msg", ".msgpack": ECCV 2018
  /// MessagePack). `labels_csv` (may be empty for tar shards with .json members) has a header with
  /// key (or id, img_id, image_id), latitude (or lat), longitude (or lon, lng) and optional scene and
  /// country columns; when given it is the only source of labels. Throws IoError for unreadable or
  /// corrupt shards and ValueError for a bad CSV or a set without any usable record.
  /// require_labels = false (prediction): every record with an image is usable, labels are neither
  /// needed nor read (their coordinates are NaN), and MessagePack shards need no CSV.
  explicit ShardSet(std::vector<std::string> paths, const std::string& labels_csv = "", bool require_labels = true);
  ~ShardSet();
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;

  /// Usable records, over all shards.
  size_t size() const { return labels_.size(); }
  /// Their labels in listed order (shard by shard, records in file order).
  const std::vector<ShardLabel>& labels() const { return labels_; }
  const std::vector<std::string>& paths() const { return paths_; }
  /// Records left out when indexing, by reason.
  size_t without_image() const { return without_image_; }
  size_t without_label() const { return without_label_; }
  size_t corrupt() const { return corrupt_; }
  size_t left_out() const { return without_image_ + without_label_ + corrupt_; }
  /// Leaves out the usable records at these positions of labels() too (e.g. outside every cell).
  void drop(const std::vector<size_t>& rows);

  /// A pass over the usable records. shuffle = false: listed order (what a manifest listing the same
  /// images in that order gives). shuffle = true: shards in a Fisher-Yates order drawn from `seed`,
  /// and each record output is drawn uniformly from a buffer kept filled to `buffer` records (0 or
  /// 1: shard order shuffling only).
  std::unique_ptr<ShardStream> stream(bool shuffle, uint64_t seed, size_t buffer) const;

 private:
  friend class ShardStream;
  std::vector<std::string> paths_;
  std::string labels_csv_;
  std::vector<ShardLabel> labels_;
  // For shard s, raw record r (in file order): its position in labels_, or -1 when left out.
  std::vector<std::vector<int64_t>> usable_;
  size_t without_image_ = 0, without_label_ = 0, corrupt_ = 0;
  struct Csv;
  std::unique_ptr<Csv> csv_;
};

/// See ShardSet::stream. Not thread-safe; one reader at a time.
class ShardStream {
 public:
  ~ShardStream();
  /// The next record, or nullopt at the end of the pass. IoError naming the shard and record when
  /// an archive cannot be read on or no longer matches the index.
  std::optional<ShardRecord> next();

 private:
  friend class ShardSet;
  struct Impl;
  explicit ShardStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace geoloc::image
