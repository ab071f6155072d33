#pragma once
// A multi-threaded batch loader with prefetching, deterministic regardless of the thread count.
//
// Determinism: epoch e visits a permutation of [0, size) drawn from random::mix_seed(seed, e); batch k is
// the slice [k * batch_size, (k + 1) * batch_size) of it; the transform of sample i in epoch e
// draws from an random::Rng seeded with random::mix_seed(random::mix_seed(seed, e), i). Workers build whole batches
// and the consumer receives them in batch order, so 1 or 16 threads give bit-identical batches.
//
// From shards (shards.hpp) the loader reads records as a stream instead: epoch e's pass is
// ShardSet::stream(shuffle, random::mix_seed(seed, e), shuffle_buffer); batch k takes the records at stream
// positions [k * batch_size, (k + 1) * batch_size) (workers take their turn at the stream in batch
// order), and the record at position p is sample p: its transform draws from
// random::mix_seed(random::mix_seed(seed, e), p). Without shuffling that is exactly what a manifest listing the same
// images in the same order gives, so both produce identical batches.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "geoloc/image/image.hpp"
#include "geoloc/image/manifest.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::image {

/// One example: the image and its labels.
struct Sample {
  Image image;
  double latitude = 0, longitude = 0;
  int32_t scene = -1, country = -1;
};

/// Where samples come from. get() is called from several threads at once and must be thread-safe.
/// It throws IoError for an unreadable item (the loader skips it and counts it); any other
/// exception is a bug or a configuration error and stops the loader.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual size_t size() const = 0;
  virtual Sample get(size_t index) const = 0;
  /// A short label of item `index` for messages (a file path, "sample 17").
  virtual std::string describe(size_t index) const { return "sample " + std::to_string(index); }
};

/// Images listed in a manifest, decoded from disk on each get().
class ManifestSource : public SampleSource {
 public:
  explicit ManifestSource(Manifest manifest, DecodeOptions decode = {});
  size_t size() const override { return manifest_.entries.size(); }
  Sample get(size_t index) const override;
  std::string describe(size_t index) const override;
  const Manifest& manifest() const { return manifest_; }

 private:
  Manifest manifest_;
  DecodeOptions decode_;
};

/// Samples produced by a function (e.g. images rendered in memory).
class CallbackSource : public SampleSource {
 public:
  CallbackSource(size_t size, std::function<Sample(size_t)> get, std::string name = "sample");
  size_t size() const override { return size_; }
  Sample get(size_t index) const override { return get_(index); }
  std::string describe(size_t index) const override { return name_ + " " + std::to_string(index); }

 private:
  size_t size_;
  std::function<Sample(size_t)> get_;
  std::string name_;
};

/// A prepared batch. All vectors have images.dim(0) entries, in the same order.
struct Batch {
  Tensor images;                   // F32 [N, H, W, 3], normalised, CPU
  std::vector<int32_t> scene;      // -1 where unknown
  std::vector<int32_t> country;    // -1 where unknown
  std::vector<double> latitude, longitude;
  std::vector<size_t> indices;     // source indices of the samples
  uint64_t epoch = 0;
  size_t batch_index = 0;          // position within the epoch, counting skipped-empty batches
  size_t size() const { return indices.size(); }
};

class ShardSet;
class ShardStream;
struct ShardRecord;

struct LoaderOptions {
  size_t batch_size = 32;
  // The loader's own producer threads, not geoloc's pool (thread_pool.hpp): they run concurrently with
  // the training step that uses the pool, by design, and block on the queue rather than on tasks.
  int threads = 2;             // worker threads (>= 1)
  size_t prefetch = 4;         // batches being built or waiting, at most (>= 1); bounds memory
  bool shuffle = true;
  size_t shuffle_buffer = 1000;  // shards only: records held for drawing (each an encoded image)
  bool drop_last = false;      // drop a final batch shorter than batch_size
  uint64_t seed = 0;
  Normalization normalization; // ImageNet by default
  bool log_skipped = true;     // warnings (log.hpp): the first unreadable sample in full, then one line per
                               // epoch with the count of the unreadable samples left out in it
  // Data-parallel training: of every batch (batch_size = the global batch), this loader builds only the
  // part [shard_index * s, (shard_index + 1) * s), s = batch_size / shard_count (which must divide it):
  // the loaders of the ranks of a run share the epoch order and each decodes its own samples, exactly the
  // ones (and the same augmentation) that one unsharded loader puts there. Shards are streamed by every
  // rank in full (their order must be shared) but each decodes only its part.
  size_t shard_index = 0;
  size_t shard_count = 1;
};

/// Usage: for each epoch, begin_epoch(e) then next() until it returns nullopt.
/// A batch may hold fewer than batch_size samples when some of its samples were unreadable (they
/// are skipped, counted in skipped(), never replaced, to keep batch contents independent of
/// timing); a batch with no readable sample is not delivered.
class Loader {
 public:
  /// The transform must produce images of one size for all samples (ShapeError otherwise) and is
  /// called from several worker threads at once, so it must not mutate shared state.
  Loader(std::shared_ptr<const SampleSource> source, Pipeline transform, LoaderOptions options);
  /// Streams the usable records of `shards` (see above), decoding them with `decode`. An image that
  /// does not decode is skipped and counted like an unreadable file; a shard that cannot be read on is
  /// an IoError from next().
  Loader(std::shared_ptr<const ShardSet> shards, Pipeline transform, LoaderOptions options, DecodeOptions decode = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts (or restarts) epoch `epoch`; batches of an unfinished previous epoch are discarded.
  void begin_epoch(uint64_t epoch);
  /// The next batch of the current epoch in order, waiting for it if needed; nullopt at the end.
  /// Rethrows (as geoloc::Error) an exception raised while building the batch; after that the
  /// epoch is over and next() keeps rethrowing it until begin_epoch().
  std::optional<Batch> next();

  /// Batches per epoch, as the slicing of the permutation gives them (before skipping).
  size_t batches_per_epoch() const;
  const LoaderOptions& options() const { return opt_; }
  /// Samples skipped as unreadable since construction (each epoch counts them again).
  uint64_t skipped() const { return skipped_.load(); }
  /// The visiting order of an epoch (what the workers use); for shards, 0, 1, ... (stream positions).
  std::vector<size_t> epoch_order(uint64_t epoch) const;

 private:
  struct Slot {
    std::optional<Batch> batch;     // nullopt with no error: every sample was skipped
    std::exception_ptr error;
  };
  void start();
  size_t size() const;
  void worker();
  Slot build(uint64_t generation, uint64_t epoch, size_t batch_index, const std::vector<size_t>& order);
  // Waits for batch k's turn at the stream and reads its records; false when the epoch was replaced.
  bool read_records(uint64_t generation, size_t k, size_t count, std::vector<ShardRecord>& out);

  std::shared_ptr<const SampleSource> source_;
  std::shared_ptr<const ShardSet> shards_;
  DecodeOptions decode_;
  Pipeline transform_;
  LoaderOptions opt_;
  std::atomic<uint64_t> skipped_{0};
  std::atomic<uint64_t> first_skip_gen_{0};  // generation of the epoch whose skip was logged in full (0: none yet)
  uint64_t skipped_reported_ = 0;            // skipped_ at the last per-epoch report (under mu_)
  void report_skips();                       // the per-epoch line (mu_ held)

  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  bool stop_ = false;
  bool started_ = false;
  uint64_t generation_ = 0;         // bumped by begin_epoch; stale results are dropped
  uint64_t epoch_ = 0;
  std::shared_ptr<const std::vector<size_t>> order_;
  size_t n_batches_ = 0;
  size_t next_job_ = 0;             // next batch index a worker will take
  size_t next_out_ = 0;             // next batch index next() returns
  std::map<size_t, Slot> done_;
  std::exception_ptr failed_;
  std::vector<std::thread> threads_;

  // The shard stream, read by one worker at a time in batch order. Lock order: stream_mu_ before mu_.
  std::mutex stream_mu_;
  std::condition_variable stream_cv_;
  std::unique_ptr<ShardStream> stream_;
  uint64_t stream_gen_ = 0;      // the generation the stream belongs to
  size_t stream_turn_ = 0;       // the batch whose records are read next
  size_t stream_pos_ = 0;        // records read so far in this epoch
  std::exception_ptr stream_error_;
  bool stream_stop_ = false;
};

}  // namespace geoloc::image
