#include "geoloc/image/loader.hpp"

#include <cstdio>
#include <numeric>

#include "geoloc/image/shards.hpp"
#include "geoloc/log.hpp"

namespace geoloc::image {

ManifestSource::ManifestSource(Manifest manifest, DecodeOptions decode)
    : manifest_(std::move(manifest)), decode_(decode) {}

Sample ManifestSource::get(size_t index) const {
  GEOLOC_CHECK(index < manifest_.entries.size(), ValueError, "ManifestSource: index ", index, " >= size ",
               manifest_.entries.size());
  const ManifestEntry& e = manifest_.entries[index];
  Sample s;
  s.image = decode_file(e.path, decode_);
  s.latitude = e.latitude;
  s.longitude = e.longitude;
  s.scene = e.scene;
  s.country = e.country;
  return s;
}

std::string ManifestSource::describe(size_t index) const {
  if (index >= manifest_.entries.size()) return "sample " + std::to_string(index);
  const ManifestEntry& e = manifest_.entries[index];
  return "'" + e.path + "' (" + manifest_.source + " line " + std::to_string(e.line) + ")";
}

CallbackSource::CallbackSource(size_t size, std::function<Sample(size_t)> get, std::string name)
    : size_(size), get_(std::move(get)), name_(std::move(name)) {
  GEOLOC_CHECK(static_cast<bool>(get_), ValueError, "CallbackSource: empty callback");
}

namespace {

// Keeps the exception's geoloc type (so a ShapeError stays catchable as one) while adding which
// sample it came from; anything that is not a geoloc::Error becomes one, as promised to callers.
std::exception_ptr with_context(std::exception_ptr e, const std::string& ctx) {
  try {
    std::rethrow_exception(e);
  } catch (const ShapeError& x) {
    return std::make_exception_ptr(ShapeError(ctx + x.what()));
  } catch (const ValueError& x) {
    return std::make_exception_ptr(ValueError(ctx + x.what()));
  } catch (const IoError& x) {
    return std::make_exception_ptr(IoError(ctx + x.what()));
  } catch (const CudaError& x) {
    return std::make_exception_ptr(CudaError(ctx + x.what()));
  } catch (const std::exception& x) {
    return std::make_exception_ptr(Error(ctx + x.what()));
  } catch (...) {
    return std::make_exception_ptr(Error(ctx + "unknown exception"));
  }
}

}  // namespace

Loader::Loader(std::shared_ptr<const SampleSource> source, Pipeline transform, LoaderOptions options)
    : source_(std::move(source)), transform_(std::move(transform)), opt_(options) {
  GEOLOC_CHECK(source_ != nullptr, ValueError, "Loader: null sample source");
  start();
}

Loader::Loader(std::shared_ptr<const ShardSet> shards, Pipeline transform, LoaderOptions options, DecodeOptions decode)
    : shards_(std::move(shards)), decode_(decode), transform_(std::move(transform)), opt_(options) {
  GEOLOC_CHECK(shards_ != nullptr, ValueError, "Loader: null shard set");
  start();
}

size_t Loader::size() const { return source_ ? source_->size() : shards_->size(); }

void Loader::start() {
  GEOLOC_CHECK(opt_.batch_size >= 1, ValueError, "Loader: batch_size must be >= 1");
  GEOLOC_CHECK(opt_.threads >= 1 && opt_.threads <= 256, ValueError, "Loader: threads ", opt_.threads,
               " must be in [1, 256]");
  GEOLOC_CHECK(opt_.prefetch >= 1, ValueError, "Loader: prefetch must be >= 1");
  GEOLOC_CHECK(opt_.shard_count >= 1 && opt_.shard_index < opt_.shard_count, ValueError, "Loader: shard ",
               opt_.shard_index, " of ", opt_.shard_count, " does not exist");
  GEOLOC_CHECK(opt_.batch_size % opt_.shard_count == 0, ValueError, "Loader: the batch size ", opt_.batch_size,
               " is not divisible into ", opt_.shard_count, " shards");
  // Producer threads of their own, not geoloc's pool (thread_pool.hpp): they decode and augment while the
  // training step runs its ops on the pool, by design, and wait on the queue rather than on tasks.
  threads_.reserve(opt_.threads);
  try {
    for (int i = 0; i < opt_.threads; ++i) threads_.emplace_back([this] { worker(); });
  } catch (...) {  // thread creation failed: do not leave joinable threads behind
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
    throw;
  }
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    try {
      report_skips();  // of the last epoch
    } catch (...) {  // a log handler that throws must not escape a destructor
    }
    stop_ = true;
    ++generation_;  // running builds notice this between samples and return early
  }
  {
    std::lock_guard<std::mutex> lk(stream_mu_);
    stream_stop_ = true;
  }
  stream_cv_.notify_all();
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

size_t Loader::batches_per_epoch() const {
  const size_t n = size(), b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<size_t> Loader::epoch_order(uint64_t epoch) const {
  std::vector<size_t> order(size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (source_ && opt_.shuffle && order.size() > 1) {
    // Hand-written Fisher-Yates on the portable rand_below: std::shuffle's draws are not specified.
    random::Rng rng(random::mix_seed(opt_.seed, epoch));
    for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[random::below(rng, i + 1)]);
  }
  return order;
}

void Loader::report_skips() {
  const uint64_t total = skipped_.load();
  const uint64_t n = total - skipped_reported_;
  skipped_reported_ = total;
  // Nothing more to say when the epoch's only unreadable sample is the one reported in full.
  if (!opt_.log_skipped || !started_ || n == 0 || (n == 1 && first_skip_gen_.load() == generation_)) return;
  log_message(LogLevel::warning, std::to_string(n) + " unreadable sample" + (n == 1 ? " was" : "s were") +
                                     " left out in epoch " + std::to_string(epoch_));
}

void Loader::begin_epoch(uint64_t epoch) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    report_skips();  // of the epoch that ends here
  }
  auto order = std::make_shared<const std::vector<size_t>>(epoch_order(epoch));
  // Held across the generation change: a worker of the new epoch must not read the old stream.
  std::unique_lock<std::mutex> slk(stream_mu_, std::defer_lock);
  std::unique_ptr<ShardStream> old;
  if (shards_) {
    slk.lock();
    old = std::move(stream_);
    stream_ = shards_->stream(opt_.shuffle, random::mix_seed(opt_.seed, epoch), opt_.shuffle_buffer);
    stream_turn_ = 0;
    stream_pos_ = 0;
    stream_error_ = nullptr;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++generation_;
    stream_gen_ = generation_;
    epoch_ = epoch;
    order_ = std::move(order);
    n_batches_ = batches_per_epoch();
    next_job_ = 0;
    next_out_ = 0;
    done_.clear();
    failed_ = nullptr;
    started_ = true;
  }
  if (slk.owns_lock()) slk.unlock();
  stream_cv_.notify_all();
  work_cv_.notify_all();
}

bool Loader::read_records(uint64_t gen, size_t k, size_t count, std::vector<ShardRecord>& out) {
  std::unique_lock<std::mutex> lk(stream_mu_);
  stream_cv_.wait(lk, [&] { return stream_stop_ || stream_gen_ != gen || stream_turn_ == k; });
  if (stream_stop_ || stream_gen_ != gen) return false;
  struct Advance {  // the next batch's turn comes even when this read throws
    Loader& l;
    ~Advance() {
      ++l.stream_turn_;
      l.stream_cv_.notify_all();
    }
  } advance{*this};
  if (stream_error_) std::rethrow_exception(stream_error_);
  try {
    for (size_t i = 0; i < count; ++i) {
      auto r = stream_->next();
      GEOLOC_CHECK(r.has_value(), IoError, "the shards ended after ", stream_pos_, " of the ", shards_->size(),
                   " records they held when indexed (changed while in use?)");
      out.push_back(std::move(*r));
      ++stream_pos_;
    }
  } catch (...) {
    stream_error_ = std::current_exception();  // the stream cannot go on; every later batch fails too
    throw;
  }
  return true;
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  GEOLOC_CHECK(started_, Error, "Loader::next: call begin_epoch() first");
  if (failed_) std::rethrow_exception(failed_);
  while (next_out_ < n_batches_) {
    ready_cv_.wait(lk, [&] { return done_.count(next_out_) > 0; });
    Slot s = std::move(done_[next_out_]);
    done_.erase(next_out_);
    ++next_out_;
    work_cv_.notify_all();  // the prefetch window moved
    if (s.error) {
      failed_ = s.error;
      next_job_ = n_batches_;  // stop building this epoch
      std::rethrow_exception(failed_);
    }
    if (s.batch) return std::move(s.batch);
  }
  return std::nullopt;
}

void Loader::worker() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    work_cv_.wait(lk, [&] {
      return stop_ || (started_ && next_job_ < n_batches_ && next_job_ < next_out_ + opt_.prefetch);
    });
    if (stop_) return;
    const size_t k = next_job_++;
    const uint64_t gen = generation_, epoch = epoch_;
    const std::shared_ptr<const std::vector<size_t>> order = order_;
    lk.unlock();
    Slot s = build(gen, epoch, k, *order);
    lk.lock();
    if (gen != generation_) continue;  // begin_epoch() or shutdown happened meanwhile
    done_[k] = std::move(s);
    ready_cv_.notify_all();
  }
}

Loader::Slot Loader::build(uint64_t gen, uint64_t epoch, size_t k, const std::vector<size_t>& order) {
  Slot slot;
  const size_t begin = k * opt_.batch_size;
  const size_t end = std::min(order.size(), begin + opt_.batch_size);
  // this loader's shard of the batch (all of it unsharded)
  const size_t per_shard = opt_.batch_size / opt_.shard_count;
  const size_t mine_begin = std::min(end, begin + opt_.shard_index * per_shard);
  const size_t mine_end = std::min(end, mine_begin + per_shard);
  const uint64_t epoch_seed = random::mix_seed(opt_.seed, epoch);
  Batch b;
  b.epoch = epoch;
  b.batch_index = k;
  std::vector<Image> images;
  images.reserve(end - begin);
  size_t current = 0;
  std::vector<ShardRecord> records;
  try {
    if (shards_ && !read_records(gen, k, end - begin, records)) return slot;
    for (size_t p = mine_begin; p < mine_end; ++p) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (gen != generation_) return slot;  // stale: the result would be dropped anyway
      }
      current = order[p];
      Sample s;
      try {
        if (shards_) {
          const ShardRecord& r = records[p - begin];
          s.image = decode_memory(r.bytes.data(), r.bytes.size(), r.name, decode_);
          s.latitude = r.latitude;
          s.longitude = r.longitude;
          s.scene = r.scene;
          s.country = r.country;
        } else {
          s = source_->get(current);
        }
      } catch (const IoError& e) {
        // An unreadable file must not stop a training run: report it and leave it out.
        // The first one is reported in full; the rest are counted, one line per epoch (report_skips).
        skipped_.fetch_add(1);
        uint64_t none = 0;
        if (opt_.log_skipped && first_skip_gen_.compare_exchange_strong(none, gen))
          log_message(LogLevel::warning, "skipping " + (shards_ ? records[p - begin].name : source_->describe(current)) +
                                             ": " + e.what() + " (further unreadable samples: one line per epoch)");
        continue;
      }
      random::Rng rng(random::mix_seed(epoch_seed, current));
      images.push_back(transform_(s.image, rng));
      b.indices.push_back(current);
      b.latitude.push_back(s.latitude);
      b.longitude.push_back(s.longitude);
      b.scene.push_back(s.scene);
      b.country.push_back(s.country);
    }
    if (images.empty()) return slot;
    try {
      b.images = pack_batch(images, opt_.normalization);
    } catch (...) {
      slot.error = with_context(std::current_exception(),
                                "loader: epoch " + std::to_string(epoch) + " batch " + std::to_string(k) + ": ");
      return slot;
    }
    slot.batch = std::move(b);
  } catch (...) {
    const std::string what = !shards_ ? source_->describe(current)
                             : current - begin < records.size() ? records[current - begin].name
                                                                : "the records of batch " + std::to_string(k);
    slot.error = with_context(std::current_exception(),
                              "loader: while preparing " + what + " (epoch " + std::to_string(epoch) + "): ");
  }
  return slot;
}

}  // namespace geoloc::image
