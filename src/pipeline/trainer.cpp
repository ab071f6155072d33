#include "geoloc/pipeline/trainer.hpp"


#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "geoloc/atomic_file.hpp"
#include "geoloc/comm.hpp"
#include "geoloc/dispatch.hpp"
#include "geoloc/detail/parallel.hpp"
#include "geoloc/geo/predict.hpp"
#include "geoloc/log.hpp"
#include "geoloc/nn/weights.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/lr_schedule.hpp"
#include "geoloc/optim.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/predict.hpp"
#include "geoloc/progress.hpp"
#include "geoloc/safetensors.hpp"
#include "geoloc/viz/training_chart.hpp"

#include "geo/metrics_json.hpp"

namespace geoloc::pipeline {

namespace {
constexpr double kPi = 3.14159265358979323846;

}  // namespace

void TrainConfig::validate() const {
  GEOLOC_CHECK(steps > 0, ValueError, "steps must be positive, got ", steps);
  GEOLOC_CHECK(batch_size > 0, ValueError, "batch size must be positive, got ", batch_size);
  GEOLOC_CHECK(lr > 0.0f && std::isfinite(lr), ValueError, "learning rate must be positive, got ", lr);
  GEOLOC_CHECK(weight_decay >= 0.0f, ValueError, "weight decay must be >= 0, got ", weight_decay);
  GEOLOC_CHECK(optimizer == "sgd" || optimizer == "adamw", ValueError, "unknown optimiser '", optimizer,
               "' (expected sgd or adamw)");
  GEOLOC_CHECK(warmup_steps >= 0 && warmup_steps < steps, ValueError, "warm-up (", warmup_steps,
               " steps) must be shorter than training (", steps, " steps)");
  GEOLOC_CHECK(clip_grad_norm >= 0.0f, ValueError, "gradient clipping must be >= 0, got ", clip_grad_norm);
  GEOLOC_CHECK(soft_targets_tau_km >= 0.0, ValueError, "soft-target tau must be >= 0 km, got ", soft_targets_tau_km);
  augmentation().validate();
  GEOLOC_CHECK(eval_every >= 0 && checkpoint_every >= 0, ValueError, "eval/checkpoint intervals must be >= 0");
  GEOLOC_CHECK(checkpoint_every == 0 || !checkpoint_path.empty(), ValueError,
               "checkpoints every ", checkpoint_every, " steps need a checkpoint path");
  GEOLOC_CHECK(precision == "f32" || precision == "bf16", ValueError, "unknown precision '", precision,
               "' (expected f32 or bf16)");
  GEOLOC_CHECK(accumulate >= 1, ValueError, "gradient accumulation must be >= 1 micro-batch, got ", accumulate);
  GEOLOC_CHECK(batch_size % accumulate == 0, ValueError, "batch size ", batch_size, " is not divisible into ",
               accumulate, " micro-batches");
  GEOLOC_CHECK(bucket_mb > 0 && std::isfinite(bucket_mb), ValueError, "all-reduce bucket size must be positive, got ",
               bucket_mb, " MiB");
  Device::parse(device);
}

optim::ScheduleOptions TrainConfig::schedule_options() const {
  return {.schedule = schedule,
          .lr = lr,
          .steps = steps,
          .warmup_steps = warmup_steps,
          .step_size = step_size,
          .milestones = milestones,
          .gamma = gamma,
          .restart_mult = restart_mult};
}

float learning_rate(const TrainConfig& c, int64_t step) { return optim::learning_rate(c.schedule_options(), step); }

// ---------------------------------------------------------------- history
std::string TrainHistory::to_json() const {
  nlohmann::json j;
  j["seconds"] = seconds;
  j["curve"] = nlohmann::json::array();
  for (const auto& p : curve)
    j["curve"].push_back(
        {{"step", p.step}, {"loss", p.loss}, {"lr", p.lr}, {"images_per_s", p.images_per_s}, {"heads", p.per_head}});
  j["evals"] = nlohmann::json::array();
  for (const auto& e : evals) {
    auto m = geo::to_json_object(e.metrics);
    m["step"] = e.step;
    j["evals"].push_back(m);
  }
  return j.dump(1);
}

void TrainHistory::write(const std::string& stem) const {
  const std::string json = to_json();
  write_file_atomic(stem + ".json", [&](std::ostream& os) { os << json << "\n"; }, false);
  std::vector<viz::LossPoint> points;
  points.reserve(curve.size());
  for (const auto& p : curve) {
    viz::LossPoint lp{p.step, p.loss, {}};
    for (const auto& [h, v] : p.per_head) lp.per_head[h] = v;
    points.push_back(std::move(lp));
  }
  viz::write_training_chart(stem + ".png", points);
}

// ---------------------------------------------------------------- trainer
// The batch-norm running statistics of a step with several micro-batches (accumulation, processes): each
// micro-batch starts from the step's statistics, and the step ends with their mean over all micro-batches
// of all processes (summed here, all-reduced, scaled), so that every process holds the same statistics.
struct StatsAverager {
  std::vector<Tensor> buffers, start, sum;  // start/sum: views into two flat tensors
  Tensor flat_start, flat_sum;

  explicit StatsAverager(const nn::NamedTensors& named) {
    int64_t n = 0;
    for (const auto& [name, t] : named)
      if (t.dtype() == DType::F32) {
        buffers.push_back(t);
        n += t.numel();
      }
    if (buffers.empty()) return;
    const Device dev = buffers.front().device();
    flat_start = Tensor::zeros({n}, DType::F32, dev);
    flat_sum = Tensor::zeros({n}, DType::F32, dev);
    int64_t off = 0;
    for (const Tensor& b : buffers) {
      start.push_back(Tensor::borrow(static_cast<float*>(flat_start.raw()) + off, b.shape(), DType::F32, dev,
                                     flat_start.impl_ptr()));
      sum.push_back(Tensor::borrow(static_cast<float*>(flat_sum.raw()) + off, b.shape(), DType::F32, dev,
                                   flat_sum.impl_ptr()));
      off += b.numel();
    }
  }
  bool empty() const { return buffers.empty(); }
  void begin_step() {  // only needed when a process runs several micro-batches
    for (size_t i = 0; i < buffers.size(); ++i) GEOLOC_DISPATCH(buffers[i].device(), convert, buffers[i], start[i]);
  }
  // After micro-batch `micro`'s forward (which updated the statistics): add them up, and put the step's
  // starting statistics back for the next micro-batch.
  void after_forward(int micro, bool last) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const Tensor& b = buffers[i];
      if (micro == 0) {
        GEOLOC_DISPATCH(b.device(), convert, b, sum[i]);
      } else {
        GEOLOC_DISPATCH(b.device(), axpy, 1.0f, b, sum[i]);
      }
      if (!last) GEOLOC_DISPATCH(b.device(), convert, start[i], b);
    }
  }
  void finish(float scale) {
    for (size_t i = 0; i < buffers.size(); ++i) GEOLOC_DISPATCH(buffers[i].device(), scale, sum[i], scale, buffers[i]);
  }
};

struct Trainer::State {
  std::unique_ptr<optim::Optimizer> opt;
  optim::ScheduleOptions schedule;
  Device device;
  std::map<int, int> country_class;  // ISO code -> class of the country head
  std::unique_ptr<comm::Communicator> own_comm;  // a local one when none was given
  comm::Communicator* comm = nullptr;
  std::unique_ptr<comm::GradReducer> reducer;
  std::unique_ptr<StatsAverager> stats;
};

namespace {
// FNV-1a over the model's description and the names and shapes of its tensors: the same on every rank
// that built the same model.
uint64_t model_fingerprint(const GeoModel& model) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (const auto& [k, v] : model.metadata()) {
    mix(k);
    mix(v);
  }
  for (const auto& [name, t] : model.net->state()) {
    mix(name);
    mix(t.shape().str());
  }
  return h;
}
}  // namespace

Trainer::Trainer(GeoModel& model, TrainConfig config) : Trainer(model, std::move(config), nullptr) {}

int Trainer::rank() const { return s_->comm->rank(); }
int Trainer::world() const { return s_->comm->size(); }

Trainer::Trainer(GeoModel& model, TrainConfig config, comm::Communicator* comm)
    : model_(model), cfg_(std::move(config)), s_(new State) {
  GEOLOC_CHECK(model.net, ValueError, "trainer: the model has no network");
  cfg_.validate();
  if (!comm) {
    s_->own_comm = comm::make_local();
    comm = s_->own_comm.get();
  }
  s_->comm = comm;
  const int world = comm->size();
  GEOLOC_CHECK(cfg_.batch_size % (world * cfg_.accumulate) == 0, ValueError, "the batch size (", cfg_.batch_size,
               ", the global batch) is not divisible by ", world, " process", world > 1 ? "es" : "", " x ",
               cfg_.accumulate, " micro-batch", cfg_.accumulate > 1 ? "es" : "");
  s_->device = Device::parse(cfg_.device);
  s_->schedule = cfg_.schedule_options();
  model_.net->to(s_->device);
  const auto params = model_.net->named_parameters();
  if (cfg_.optimizer == "sgd") {
    s_->opt = std::make_unique<optim::Sgd>(params, optim::SgdOptions{.lr = cfg_.lr,
                                                                      .momentum = cfg_.momentum,
                                                                      .weight_decay = cfg_.weight_decay,
                                                                      .nesterov = cfg_.nesterov,
                                                                      .decay_1d = cfg_.decay_bn_and_bias});
  } else {
    s_->opt = std::make_unique<optim::AdamW>(
        params, optim::AdamWOptions{.lr = cfg_.lr, .weight_decay = cfg_.weight_decay, .decay_1d = cfg_.decay_bn_and_bias});
  }
  for (size_t i = 0; i < model_.country_codes.size(); ++i) s_->country_class[model_.country_codes[i]] = static_cast<int>(i);
  if (world > 1) {
    // The ranks get here after decoding their data, which takes as long as it takes: no deadline for this
    // meeting (a rank that failed before it has ended the job through the caller's abort).
    comm->barrier(0);
    // Every rank must have built the same model (same data, partitions, options); rank 0's initial
    // weights are then given to all, so the replicas start equal whatever their build did.
    uint64_t mine = model_fingerprint(model_), zero = mine;
    comm->broadcast(Tensor::borrow(&zero, {8}, DType::U8, Device::cpu(), nullptr), 0);
    GEOLOC_CHECK(mine == zero, CommError, "data-parallel training: ", comm->where(),
                 " built another model than rank 0 (another data set, partitioning, architecture or option?): every "
                 "process must run the same command on the same data");
    for (const auto& [name, t] : model_.net->state()) comm->broadcast(t, 0);
  }
  std::vector<Tensor> trainable;
  for (const auto& [name, t] : params)
    if (t.requires_grad()) trainable.push_back(t);
  s_->reducer = std::make_unique<comm::GradReducer>(
      *comm, trainable, static_cast<size_t>(std::max(1.0, cfg_.bucket_mb * 1024.0 * 1024.0)));
  // (a frozen backbone keeps its batch norm in eval mode: its statistics never change, nothing to average)
  if (world > 1 && comm->rank() == 0) {
    size_t bytes = 0;
    for (const Tensor& t : trainable) bytes += t.nbytes();
    char line[160];
    std::snprintf(line, sizeof line, "gradient all-reduce: %zu parameters (%.2f MiB) in %zu buckets (bucket size %g MiB)",
                  trainable.size(), static_cast<double>(bytes) / (1 << 20), s_->reducer->buckets(), cfg_.bucket_mb);
    log_message(LogLevel::info, line);
  }
  // (with synchronised batch norm every process already holds the same statistics after each forward: only
  // micro-batches are left to average)
  if ((cfg_.sync_bn && world > 1 ? cfg_.accumulate : world * cfg_.accumulate) > 1 &&
      !model_.net->geo_config().freeze_backbone)
    s_->stats = std::make_unique<StatsAverager>(model_.net->named_buffers());
}

Trainer::~Trainer() = default;

Tensor Trainer::make_batch(const Dataset& data, const std::vector<size_t>& rows, int64_t step, bool augment,
                           size_t first) const {
  const Preprocess& pp = model_.preprocess;
  if (!augment) {
    std::vector<image::Image> imgs(rows.size());
    for (size_t j = 0; j < rows.size(); ++j) imgs[j] = data.images[rows[j]];
    return pp.eval_batch(imgs);
  }
  // Each sample's randomness is a function of (seed, step, position): thread-count independent.
  std::vector<const image::Image*> imgs(rows.size());
  std::vector<uint64_t> seeds(rows.size());
  for (size_t j = 0; j < rows.size(); ++j) {
    imgs[j] = &data.images[rows[j]];
    seeds[j] = random::mix_seed(cfg_.seed, static_cast<uint64_t>(step) * 65536u + first + j);
  }
  return pp.train_batch(imgs, seeds, cfg_.augmentation());
}

// Targets stay on the CPU: the loss counts the labelled samples there and uploads each tensor once.
nn::MultitaskTargets Trainer::targets(const BatchLabels& y) const {
  const size_t b = y.coords.size();
  nn::MultitaskTargets t;
  auto labels = [&](auto&& label_of) {
    std::vector<int32_t> l(b);
    for (size_t j = 0; j < b; ++j) l[j] = label_of(j);
    return Tensor::from_labels(l);
  };
  for (const auto& h : model_.net->geo_config().heads) {
    if (h.kind == nn::HeadKind::Partition) {
      const geo::Partition& part = *std::find_if(model_.partitions.begin(), model_.partitions.end(),
                                                 [&](const auto& p) { return p.name == h.name; })->partition;
      if (cfg_.soft_targets_tau_km > 0) {
        std::vector<float> soft(b * part.size());
        for (size_t j = 0; j < b; ++j) {
          const auto v = geo::soft_targets(part, y.coords[j], cfg_.soft_targets_tau_km);
          std::copy(v.begin(), v.end(), soft.begin() + j * part.size());
        }
        t.soft[h.name] =
            Tensor::from_vector({static_cast<int64_t>(b), static_cast<int64_t>(part.size())}, soft);
      } else {
        t.labels[h.name] = labels([&](size_t j) {
          return cfg_.outside_nearest ? part.assign_nearest(y.coords[j]) : part.assign(y.coords[j]);
        });
      }
    } else if (h.kind == nn::HeadKind::Scene) {
      t.labels[h.name] = labels([&](size_t j) { return y.scene[j]; });
    } else if (h.kind == nn::HeadKind::Country) {
      t.labels[h.name] = labels([&](size_t j) {
        auto it = s_->country_class.find(y.country[j]);
        return it == s_->country_class.end() ? -1 : it->second;
      });
    }
  }
  if (model_.offset_head()) {
    // The hybrid head: the offset from the centre of the true cell (the nearest where it lies in none).
    const geo::Partition& fine = *model_.finest().partition;
    const auto& scale = model_.offset_scales_km();
    std::vector<int32_t> cell(b);
    std::vector<float> off(2 * b);
    for (size_t j = 0; j < b; ++j) {
      const int c = fine.assign_nearest(y.coords[j]);
      cell[j] = c;
      const auto [east, north] = geo::tangent_offset_km(fine.center(static_cast<size_t>(c)), y.coords[j]);
      // clamped: a point outside every cell can lie far from the nearest one
      off[2 * j] = static_cast<float>(std::clamp(east / scale[static_cast<size_t>(c)], -3.0, 3.0));
      off[2 * j + 1] = static_cast<float>(std::clamp(north / scale[static_cast<size_t>(c)], -3.0, 3.0));
    }
    t.offset_cell = Tensor::from_labels(cell);
    t.offset = Tensor::from_vector({static_cast<int64_t>(b), 2}, off);
  }
  std::vector<float> ll(2 * b);
  for (size_t j = 0; j < b; ++j) {
    ll[2 * j] = static_cast<float>(y.coords[j].lat * kPi / 180.0);
    ll[2 * j + 1] = static_cast<float>(y.coords[j].lng * kPi / 180.0);
  }
  t.latlng = Tensor::from_vector({static_cast<int64_t>(b), 2}, ll);
  return t;
}

const TrainHistory& Trainer::run(
    int64_t until, const Dataset* val,
    const std::function<Tensor(int64_t step, int shard, int shards, BatchLabels& labels)>& next_batch) {
  const int64_t last = until >= 0 ? std::min(until, cfg_.steps) : cfg_.steps;
  comm::Communicator& comm = *s_->comm;
  const int world = comm.size(), rank = comm.rank(), micro = cfg_.accumulate, shards = world * micro;
  const bool leader = rank == 0;  // evaluates, checkpoints, reports
  Progress progress("train", (last - step_) * cfg_.batch_size, "img", cfg_.progress && leader);
  int64_t images = 0;
  double window_images = 0.0;
  auto window_start = std::chrono::steady_clock::now();
  const int64_t log_every = cfg_.log_every > 0 ? cfg_.log_every : (s_->device.is_cuda() ? 10 : 1);
  model_.net->train();
  // --sync-bn: every training batch norm of this thread's forward passes uses the global batch's statistics
  std::unique_ptr<ops::SyncBatchNormGuard> sync_bn;
  if (cfg_.sync_bn && world > 1)
    sync_bn = std::make_unique<ops::SyncBatchNormGuard>(
        ops::CrossReplica{[&comm](const Tensor& t) { comm.all_reduce_sum(t); }, world, rank});
  while (step_ < last) {
    const float lr = optim::learning_rate(s_->schedule, step_);
    s_->opt->set_lr(lr);
    s_->opt->zero_grad();
    if (s_->stats && micro > 1) s_->stats->begin_step();
    std::vector<nn::MultitaskLoss> losses;
    int64_t step_images = 0;
    std::unique_ptr<comm::Work> stats_work;
    for (int a = 0; a < micro; ++a) {
      const int shard = rank * micro + a;
      BatchLabels y;
      Tensor x = next_batch(step_, shard, shards, y).to(s_->device);
      if (cfg_.precision == "bf16") x = x.to_dtype(DType::BF16);  // once per batch, on the device
      const nn::MultitaskTargets t = targets(y);
      const uint64_t dropout_seed = random::mix_seed(cfg_.seed ^ 0xd0, static_cast<uint64_t>(step_));
      model_.net->set_dropout_seed(shard == 0 ? dropout_seed : random::mix_seed(dropout_seed, static_cast<uint64_t>(shard)));
      const nn::GeoOutput out = model_.net->forward(x);
      const bool last_micro = a + 1 == micro;
      if (s_->stats) {
        s_->stats->after_forward(a, last_micro);
        // the statistics are final after the last forward: their all-reduce runs during backward
        if (last_micro && world > 1) stats_work = comm.all_reduce_sum_async(s_->stats->flat_sum);
      }
      losses.push_back(nn::multitask_loss(*model_.net, out, t, cfg_.loss_weights));
      if (last_micro) s_->reducer->arm();  // buckets start as gradients become final
      losses.back().total.backward();
      step_images += x.dim(0);
    }
    // the mean over the step's micro-batches of every process: the global batch's gradient (exact sums for
    // two terms; with more, the order is fixed by the buckets and the MPI/NCCL reduction)
    const float inv = 1.0f / static_cast<float>(shards);
    s_->reducer->finish(inv);
    if (stats_work) stats_work->wait();
    if (s_->stats) s_->stats->finish(inv);
    if (cfg_.clip_grad_norm > 0.0f) optim::clip_grad_norm(model_.net->parameters(), cfg_.clip_grad_norm);
    s_->opt->step();
    ++step_;

    images += step_images * world;
    window_images += static_cast<double>(step_images * world);
    if (step_ % log_every == 0 || step_ == last) {  // the only read-back of the step
      synchronize(s_->device);  // the rate counts finished steps, not queued ones
      CurvePoint cp{step_, 0.0f, {}, lr, 0.0};
      if (shards == 1) {
        cp.loss = losses[0].total.item();
        for (const auto& [head, value] : losses[0].per_head) cp.per_head[head] = value.item();
      } else {
        // the mean of the micro-batch losses of all processes (every rank gets the same numbers)
        std::vector<float> v(1 + losses[0].per_head.size(), 0.0f);
        for (const auto& l : losses) {
          v[0] += l.total.item();
          size_t i = 1;
          for (const auto& [head, value] : l.per_head) v[i++] += value.item();
        }
        if (world > 1) {
          const Tensor sum = Tensor::from_vector({static_cast<int64_t>(v.size())}, v);
          comm.all_reduce_sum(sum);
          v = sum.to_vector();
        }
        cp.loss = v[0] * inv;
        size_t i = 1;
        for (const auto& [head, value] : losses[0].per_head) cp.per_head[head] = v[i++] * inv;
      }
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - window_start).count();
      cp.images_per_s = dt > 0 ? window_images / dt : 0.0;
      // A diverged run stops here, before its weights reach a checkpoint or a model file (save_state
      // refuses non-finite weights too, for the steps between two read-backs).
      GEOLOC_CHECK(std::isfinite(cp.loss), ValueError, "training diverged: the loss is ", std::isnan(cp.loss) ? "NaN" : "infinite", " at step ", step_,
                   log_every > 1 ? " (read back every " + std::to_string(log_every) + " steps)" : std::string(),
                   " with learning rate ", lr, "; lower the learning rate or clip the gradients (geoloc train --clip)");
      if (dt > 1.0) {
        window_images = 0.0;
        window_start = now;
      }
      history_.curve.push_back(cp);
      char note[96];
      std::snprintf(note, sizeof note, "step %lld loss %.3f lr %.3g", static_cast<long long>(step_), cp.loss, lr);
      progress.update(images, note);
    }

    // Rank 0 alone evaluates and writes; the others wait for it without a deadline (its own failure ends
    // the job through the caller's abort), so that a long evaluation is not taken for a dead rank.
    if (val && cfg_.eval_every > 0 && (step_ % cfg_.eval_every == 0 || step_ == cfg_.steps)) {
      if (leader) history_.evals.push_back({step_, evaluate(model_, *val, "hierarchy")});
      model_.net->train();
      if (world > 1) comm.barrier(0);
    }
    if (!cfg_.checkpoint_path.empty() && cfg_.checkpoint_every > 0 && step_ % cfg_.checkpoint_every == 0) {
      if (leader) save_checkpoint(cfg_.checkpoint_path);
      if (world > 1) comm.barrier(0);
    }
  }
  history_.seconds += progress.elapsed();
  char note[64];
  std::snprintf(note, sizeof note, "final loss %.3f", history_.curve.empty() ? 0.0f : history_.curve.back().loss);
  progress.finish(note);
  model_.net->eval();
  return history_;
}

const TrainHistory& Trainer::fit(const Dataset& train, const Dataset* val, int64_t until) {
  train.validate("training set");
  GEOLOC_CHECK(train.size() > 0, ValueError, "training set is empty");
  const size_t n = train.size();
  const size_t b = static_cast<size_t>(cfg_.batch_size);
  // The data order: a fresh permutation per epoch, a function of (seed, epoch) only.
  int64_t perm_epoch = -1;
  std::vector<size_t> perm(n);
  auto row_at = [&](int64_t flat) {
    const int64_t epoch = flat / static_cast<int64_t>(n);
    if (epoch != perm_epoch) {
      std::iota(perm.begin(), perm.end(), size_t{0});
      random::Rng rng(random::mix_seed(cfg_.seed ^ 0x5eed, static_cast<uint64_t>(epoch)));
      for (size_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[random::below(rng, i + 1)]);
      perm_epoch = epoch;
    }
    return perm[static_cast<size_t>(flat % static_cast<int64_t>(n))];
  };
  // Micro-batch `shard` of `shards` (rank x accumulate + micro-batch) takes positions [shard * m, (shard + 1) * m)
  // of the step's global batch: the shards of a step are disjoint, and over an epoch they cover the set.
  return run(until, val, [&](int64_t step, int shard, int shards, BatchLabels& y) {
    const size_t m = b / static_cast<size_t>(shards), first = static_cast<size_t>(shard) * m;
    std::vector<size_t> rows(m);
    for (size_t j = 0; j < m; ++j) {
      rows[j] = row_at(step * static_cast<int64_t>(b) + static_cast<int64_t>(first + j));
      y.coords.push_back(train.coords[rows[j]]);
      y.scene.push_back(train.scene[rows[j]]);
      y.country.push_back(train.country[rows[j]]);
    }
    return make_batch(train, rows, step, true, first);
  });
}

const TrainHistory& Trainer::fit(image::Loader& loader, const Dataset* val, int64_t until) {
  const int64_t per_epoch = static_cast<int64_t>(loader.batches_per_epoch());
  GEOLOC_CHECK(per_epoch > 0, ValueError, "the loader yields no batch (empty data set?)");
  // Step s wants batch (s mod per_epoch) of epoch (s / per_epoch). The loader only moves forward: it
  // starts the wanted epoch and drops the batches before the wanted one (so a resumed run sees the
  // order of an uninterrupted one). A batch whose samples were all unreadable is never delivered: the
  // next delivered batch, possibly of the next epoch, takes its place.
  // Data-parallel: the loader is sharded (LoaderOptions::shard_index/shard_count = rank/processes) and
  // delivers this rank's part of each global batch, which is split further into the micro-batches.
  const image::LoaderOptions& lo = loader.options();
  GEOLOC_CHECK(lo.shard_count == static_cast<size_t>(world()) && lo.shard_index == static_cast<size_t>(rank()),
               ValueError, "trainer: the loader is shard ", lo.shard_index, " of ", lo.shard_count, " but this is ",
               s_->comm->where(), " (LoaderOptions::shard_index / shard_count)");
  GEOLOC_CHECK(lo.batch_size == static_cast<size_t>(cfg_.batch_size), ValueError, "trainer: the loader's batch size ",
               lo.batch_size, " is not the configured global batch ", cfg_.batch_size);
  int64_t epoch = -1;
  std::optional<image::Batch> batch;  // this rank's part of the current step
  return run(until, val, [&](int64_t step, int shard, int shards, BatchLabels& y) {
    const int micro = shards / world(), a = shard % micro;
    if (a == 0) batch = next_loader_batch(loader, step, per_epoch, epoch);
    const size_t n = batch->size(), lo_row = n * static_cast<size_t>(a) / static_cast<size_t>(micro),
                 hi_row = n * static_cast<size_t>(a + 1) / static_cast<size_t>(micro);
    for (size_t j = lo_row; j < hi_row; ++j) {
      y.coords.push_back({batch->latitude[j], batch->longitude[j]});
      y.scene.push_back(batch->scene[j]);
      y.country.push_back(batch->country[j]);
    }
    GEOLOC_CHECK(batch->images.dim(1) == model_.preprocess.crop && batch->images.dim(2) == model_.preprocess.crop,
                 ShapeError, "loader batches are ", batch->images.shape().str(), " but the model takes ",
                 model_.preprocess.crop, "x", model_.preprocess.crop, " crops");
    if (micro == 1) return batch->images;
    GEOLOC_CHECK(hi_row > lo_row, ValueError, "a loader batch of ", n, " readable samples cannot feed ", micro,
                 " micro-batches (too many unreadable images in it)");
    const Tensor& im = batch->images;
    const int64_t row = im.dim(1) * im.dim(2) * im.dim(3);
    return Tensor::borrow(im.data<float>() + static_cast<int64_t>(lo_row) * row,
                          {static_cast<int64_t>(hi_row - lo_row), im.dim(1), im.dim(2), im.dim(3)}, DType::F32,
                          Device::cpu(), im.impl_ptr());
  });
}

std::optional<image::Batch> Trainer::next_loader_batch(image::Loader& loader, int64_t step, int64_t per_epoch,
                                                       int64_t& epoch) {
  {
    const int64_t want_epoch = step / per_epoch, want_pos = step % per_epoch;
    if (epoch < want_epoch) {
      loader.begin_epoch(static_cast<uint64_t>(want_epoch));
      epoch = want_epoch;
    }
    std::optional<image::Batch> batch;
    int empty_epochs = 0;
    while (true) {
      batch = loader.next();
      if (!batch) {
        GEOLOC_CHECK(++empty_epochs < 2, Error, "the loader delivered no readable batch in a whole epoch (",
                     loader.skipped(), " unreadable samples so far)");
        loader.begin_epoch(static_cast<uint64_t>(++epoch));
        continue;
      }
      if (epoch > want_epoch || static_cast<int64_t>(batch->batch_index) >= want_pos) break;
    }
    return batch;
  }
}

void Trainer::save_checkpoint(const std::string& path) const {
  std::vector<safetensors::WriteItem> items;
  for (const auto& [name, t] : model_.net->state()) items.push_back({"model." + name, t});
  for (const auto& [name, t] : s_->opt->state()) items.push_back({"optim." + name, t});
  // the weights may have diverged since the last loss read-back: no checkpoint holds a NaN
  for (const auto& it : items)
    nn::require_finite(it.tensor, path, it.name, ("to be written at step " + std::to_string(step_)).c_str());
  auto meta = model_.metadata();
  nlohmann::json ck{{"step", step_}, {"seed", cfg_.seed}, {"optimizer", cfg_.optimizer}};
  if (world() > 1) ck["world_size"] = world();  // absent: one process
  meta["checkpoint"] = ck.dump();
  safetensors::write(path, items, meta);
}

void Trainer::resume(const std::string& path) {
  const auto f = safetensors::File::open(path);
  const auto& meta = f.metadata();
  auto ck = meta.find("checkpoint");
  GEOLOC_CHECK(ck != meta.end(), IoError, path, ": not a training checkpoint (no 'checkpoint' metadata)");
  // Same network, same classes (partitions, scenes, countries, preprocessing): otherwise the weights
  // would be read against other labels.
  const auto mine = model_.metadata();
  for (const char* key : {"arch", "heads", "geoloc.model"}) {
    auto it = meta.find(key);
    GEOLOC_CHECK(it != meta.end() && it->second == mine.at(key), IoError, path, ": checkpoint '", key,
                 "' does not match the model being trained (another architecture, heads or partitioning)");
  }
  int64_t step = 0;
  try {
    const auto j = nlohmann::json::parse(ck->second);
    GEOLOC_CHECK(j.at("optimizer").get<std::string>() == cfg_.optimizer, IoError, "optimiser '",
                 j.at("optimizer").get<std::string>(), "' differs from the configured '", cfg_.optimizer, "'");
    GEOLOC_CHECK(j.at("seed").get<uint64_t>() == cfg_.seed, IoError, "seed ", j.at("seed").get<uint64_t>(),
                 " differs from the configured ", cfg_.seed, " (the data order would not continue)");
    step = j.at("step").get<int64_t>();
    const int ck_world = j.value("world_size", 1);
    GEOLOC_CHECK(ck_world == world(), IoError, "was written by a run of ", ck_world, " process",
                 ck_world > 1 ? "es" : "", " and this run has ", world(),
                 ": resume with the same number (mpirun -np ", ck_world, "), whose data shards and batch-norm "
                 "statistics continue exactly");
  } catch (const nlohmann::json::exception& e) {
    throw IoError(path + ": malformed 'checkpoint' metadata: " + e.what());
  } catch (const IoError& e) {
    throw IoError(path + ": checkpoint " + e.what());
  }
  // Everything is read and checked before anything is changed.
  std::vector<std::pair<Tensor, Tensor>> weights;  // (destination, source)
  for (auto& [name, t] : model_.net->state()) {
    const Tensor src = f.tensor("model." + name);
    GEOLOC_CHECK(src.shape() == t.shape(), IoError, path, ": tensor 'model.", name, "' has shape ", src.shape().str(),
                 ", the model expects ", t.shape().str());
    weights.emplace_back(t, src);
  }
  nn::NamedTensors opt_state;
  for (const auto& e : f.entries())
    if (e.name.rfind("optim.", 0) == 0) opt_state.emplace_back(e.name.substr(6), f.tensor(e.name).to(s_->device));
  s_->opt->load_state(opt_state);  // validates the whole state before copying
  GEOLOC_CHECK(step == s_->opt->steps(), IoError, path, ": checkpoint step ", step, " disagrees with the optimiser's ",
               s_->opt->steps());
  for (auto& [dst, src] : weights) dst.copy_(src.to(dst.device()));
  step_ = step;
}

// ---------------------------------------------------------------- evaluation
geo::Metrics evaluate(const GeoModel& model, const Dataset& data, const std::string& strategy, int batch_size) {
  EvalOptions o;
  o.strategies = {parse_strategy(strategy)};
  o.batch_size = batch_size;
  Predictor pred(model);
  if (!pred.supports(o.strategies[0])) o.strategies = {Strategy::CellMean};
  const EvalReport r = evaluate_strategies(model, data, nullptr, o);
  GEOLOC_CHECK(!r.methods.empty(), ValueError, "evaluation: strategy '", strategy, "' is not available for this model");
  return r.methods.front().second;
}

}  // namespace geoloc::pipeline
