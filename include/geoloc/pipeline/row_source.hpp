#pragma once
// Labelled images read a batch at a time: what `geoloc eval` and `geoloc index` stream through, so that
// their memory is bounded by the batch, not by the number of rows (a manifest of 10^5 photos is never
// decoded into memory at once).
#include <memory>
#include <string>

#include "geoloc/image/manifest.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/pipeline/dataset.hpp"

namespace geoloc::pipeline {

class RowSource {
 public:
  virtual ~RowSource() = default;
  /// Rows listed (some may turn out unreadable when read).
  virtual size_t size() const = 0;
  /// Rows [start, start + count) as a Dataset (images shorter side resized and centre-cropped to the
  /// source's size, labels); unreadable images are left out and counted in skipped().
  virtual Dataset rows(size_t start, size_t count) const = 0;
  /// Unreadable images left out so far, and the first one's reason ("" if none).
  virtual size_t skipped() const { return 0; }
  virtual std::string first_skip() const { return {}; }
};

/// An in-memory Dataset seen as rows (a batch is a copy of its rows).
class DatasetRows final : public RowSource {
 public:
  explicit DatasetRows(const Dataset& data) : data_(data) {}
  size_t size() const override { return data_.size(); }
  Dataset rows(size_t start, size_t count) const override;

 private:
  const Dataset& data_;
};

/// A manifest's rows decoded on demand (in parallel within a batch) at `size` (JPEGs DCT-scaled to cover
/// it): only the manifest's text and the current batch are in memory.
class ManifestRows final : public RowSource {
 public:
  ManifestRows(const std::string& manifest_path, int size);
  ~ManifestRows() override;
  size_t size() const override;
  Dataset rows(size_t start, size_t count) const override;
  size_t skipped() const override;
  std::string first_skip() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The usable records of tar / MessagePack shards, read as a stream in listed order and decoded a batch at a
/// time (in parallel within the batch) at `size`: only the shard index and the current batch are in memory.
/// Read the rows in order (each rows() call starting where the last ended); another start reopens the
/// stream and skips to it.
class ShardRows final : public RowSource {
 public:
  ShardRows(std::shared_ptr<const image::ShardSet> shards, int size);
  ~ShardRows() override;
  size_t size() const override;
  Dataset rows(size_t start, size_t count) const override;
  size_t skipped() const override;
  std::string first_skip() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace geoloc::pipeline
