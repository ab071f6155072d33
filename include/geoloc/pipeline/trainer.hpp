#pragma once
// Training the multitask network: SGD-Nesterov or AdamW, learning-rate schedules, weight decay,
// gradient clipping, periodic evaluation, atomic resumable checkpoints, deterministic given a seed,
// progress with loss, images/s and ETA, and the training curve as JSON and PNG.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "geoloc/geo/metrics.hpp"
#include "geoloc/image/loader.hpp"
#include "geoloc/lr_schedule.hpp"
#include "geoloc/nn/loss.hpp"
#include "geoloc/pipeline/dataset.hpp"
#include "geoloc/pipeline/model.hpp"

namespace geoloc::comm {
class Communicator;
class GradReducer;
}  // namespace geoloc::comm

namespace geoloc::pipeline {

struct TrainConfig {
  int64_t steps = 1000;
  int batch_size = 64;
  std::string optimizer = "sgd";  // "sgd" (momentum, Nesterov) or "adamw"
  float lr = 0.05f;
  float momentum = 0.9f;
  bool nesterov = true;
  float weight_decay = 1e-4f;
  bool decay_bn_and_bias = false;
  optim::Schedule schedule = optim::Schedule::Cosine;  // geoloc/lr_schedule.hpp
  int64_t warmup_steps = 0;              // linear warm-up from lr/10
  int64_t step_size = 0;                 // Step: period; CosineRestarts: first period (0 = steps/4)
  std::vector<int64_t> milestones;       // MultiStep
  float gamma = 0.1f;                    // Step / MultiStep factor
  int restart_mult = 2;                  // CosineRestarts: each period this many times longer
  float clip_grad_norm = 0.0f;           // 0 = off
  // Targets: 0 = hard cell labels; > 0 = haversine-smoothed soft targets with this tau (km)
  double soft_targets_tau_km = 0.0;
  // A training point outside every cell of a partitioning: false = no label for that head (it adds
  // nothing to that head's loss), true = labelled with the cell whose mean is nearest.
  bool outside_nearest = false;
  nn::MultitaskWeights loss_weights;
  // Augmentation (training only): random-resized crop scale range, horizontal flip, colour jitter
  double crop_scale_min = 0.6;
  bool flip = false;
  float jitter = 0.1f;
  Augmentation augmentation() const { return {crop_scale_min, flip, jitter}; }
  // Evaluation and checkpoints (0 = never); the checkpoint is one file, rewritten atomically
  int64_t eval_every = 0;
  // Training-curve points (the loss read back from the device) every this many steps (0 = 1 on the
  // CPU, 10 on a GPU, where each read-back waits for the step to finish); the last step always logs
  int64_t log_every = 0;
  int64_t checkpoint_every = 0;
  std::string checkpoint_path;
  uint64_t seed = 1;
  std::string device = "cpu";
  // "f32", or "bf16": mixed precision. The batch is converted to bf16 once, the network runs in bf16 (NHWC
  // activations and their gradients; conv/linear weights as bf16 working copies of the f32 masters, made in
  // every forward by ops::to_dtype; batch-norm parameters and statistics f32), the losses are f32, and the
  // optimiser updates the f32 masters with the working copies' gradients (widened, exactly). On the CPU it
  // runs the backend's bf16 reference (f32 math on widened inputs, one rounding per output).
  std::string precision = "f32";
  bool progress = true;
  // Gradient accumulation: each step runs this many forward/backward passes (micro-batches) per process, of
  // batch_size / (processes x accumulate) samples each, and averages their gradients; batch_size stays the
  // global batch of the step. Batch norm normalises each micro-batch with its own statistics.
  int accumulate = 1;
  // Data-parallel runs (a communicator of several processes): gradients are all-reduced in buckets of this
  // many MiB, started while backward runs.
  double bucket_mb = 4.0;
  // Data-parallel runs: batch norm in training normalises with the statistics of the whole global batch,
  // gathered from every process at each layer (ops::batch_norm_sync; two small all-reduces per layer and
  // step), instead of each process's own (the default, as PyTorch's DistributedDataParallel). Micro-batches
  // (accumulate > 1) are each synchronised over the processes, not merged.
  bool sync_bn = false;
  /// ValueError naming the first invalid field.
  void validate() const;
  /// The learning-rate schedule of these fields (lr, steps, schedule, warmup_steps, step_size, milestones,
  /// gamma, restart_mult).
  optim::ScheduleOptions schedule_options() const;
};

/// The learning rate at `step` (0-based) for the configuration: optim::learning_rate(c.schedule_options(), step).
float learning_rate(const TrainConfig& c, int64_t step);

struct CurvePoint {
  int64_t step = 0;
  float loss = 0.0f;
  std::map<std::string, float> per_head;
  float lr = 0.0f;
  double images_per_s = 0.0;
};
struct EvalPoint {
  int64_t step = 0;
  geo::Metrics metrics;
};

struct TrainHistory {
  std::vector<CurvePoint> curve;
  std::vector<EvalPoint> evals;
  double seconds = 0.0;
  /// {"curve": [{"step", "loss", "lr", "images_per_s", "heads": {...}}], "evals": [...], "seconds"}
  std::string to_json() const;
  /// Writes <stem>.json and <stem>.png (the total and per-head loss: viz::write_training_chart), atomically.
  void write(const std::string& stem) const;
};

/// Data-parallel training (docs/scaling.md): give the Trainer a communicator of N processes (comm.hpp), each
/// running the same program on the same data set with the same configuration. config.batch_size is the
/// global batch: each process takes batch_size / N of every step's samples (its shard: the rows a single
/// process would put at positions [r * b, (r + 1) * b) of the batch, with the same augmentation), so the
/// shards are disjoint and together cover the data set each epoch. The gradients are averaged over the
/// processes (bucketed all-reduce during backward, comm::GradReducer), the batch-norm running statistics
/// too after every step (each process normalises with the statistics of its own samples); every process
/// then holds the same model. Rank 0 alone evaluates, writes checkpoints (which record the number of
/// processes: a resume needs the same) and reports progress. N processes with accumulate A train the same
/// model as one process with accumulate N x A, up to the order of the floating-point sums (bit for bit for
/// N = 2, A = 1 against one process with A = 2: the sum of two terms does not depend on their order).
class Trainer {
 public:
  Trainer(GeoModel& model, TrainConfig config);
  /// A data-parallel trainer over `comm` (which must outlive it); nullptr = one process.
  Trainer(GeoModel& model, TrainConfig config, comm::Communicator* comm);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Trains from the current step to config.steps (or to `until`, when smaller: the schedule still
  /// spans config.steps) on `train`; evaluates on `val` every eval_every steps when given.
  /// Returns the history (also kept in history()).
  const TrainHistory& fit(const Dataset& train, const Dataset* val = nullptr, int64_t until = -1);
  /// The same from a streaming loader (decoding and augmenting in its worker threads while the
  /// network trains), for data sets that do not fit in memory. The loader's batches must be the
  /// model's crop size, normalised with its preprocessing, batch_size = config.batch_size, drop_last.
  /// Step s trains on batch (s mod batches_per_epoch) of epoch (s / batches_per_epoch), so a resumed run
  /// continues exactly, except where unreadable samples ended an earlier epoch early: the run then moved on
  /// to the next epoch, which a resume does not know.
  const TrainHistory& fit(image::Loader& loader, const Dataset* val = nullptr, int64_t until = -1);
  /// One file, written atomically: the model (weights, partitions, ...), the optimiser state, the step and
  /// the number of processes (data-parallel training: rank 0 writes it; resume() needs the same number). The data order and augmentation are functions of (seed, step), so resuming from it
  /// continues exactly as an uninterrupted run would.
  void save_checkpoint(const std::string& path) const;
  /// Restores weights, optimiser state and step from save_checkpoint()'s file. IoError when the
  /// file is not a checkpoint of this model's architecture and heads.
  void resume(const std::string& checkpoint_path);

  int64_t step() const { return step_; }
  const TrainConfig& config() const { return cfg_; }
  const TrainHistory& history() const { return history_; }
 private:
  struct BatchLabels {
    std::vector<geo::LatLng> coords;
    std::vector<int> scene, country;
  };
  nn::MultitaskTargets targets(const BatchLabels& y) const;
  /// The training loop: next_batch(step, shard, shards, labels) supplies micro-batch `shard` of `shards`
  /// (shard = rank x accumulate + micro-batch) of each step and fills its labels.
  const TrainHistory& run(int64_t until, const Dataset* val,
                          const std::function<Tensor(int64_t step, int shard, int shards, BatchLabels& labels)>& next_batch);
  /// The batch of `rows`; sample j's augmentation is that of position first + j of the step's global batch.
  Tensor make_batch(const Dataset& data, const std::vector<size_t>& rows, int64_t step, bool augment,
                    size_t first = 0) const;
  int rank() const;
  int world() const;
  /// The loader batch of `step` (see fit(Loader&)); `epoch`: the loader's current epoch, advanced here.
  static std::optional<image::Batch> next_loader_batch(image::Loader& loader, int64_t step, int64_t per_epoch,
                                                       int64_t& epoch);
  GeoModel& model_;
  TrainConfig cfg_;
  int64_t step_ = 0;
  TrainHistory history_;
  struct State;
  std::unique_ptr<State> s_;
};

/// Evaluates a model on a data set with centre crops: the metrics of one strategy.
geo::Metrics evaluate(const GeoModel& model, const Dataset& data, const std::string& strategy = "hierarchy",
                      int batch_size = 128);

}  // namespace geoloc::pipeline
