// geoloc train: a model from a CSV manifest of photos (or shards).
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "data_args.hpp"
#include "geoloc/atomic_file.hpp"
#include "geoloc/comm.hpp"
#include "geoloc/cuda/context.hpp"
#include "geoloc/log.hpp"
#include "geoloc/thread_pool.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/image/cache.hpp"
#include "geoloc/image/loader.hpp"
#include "geoloc/image/shards.hpp"
#include "geoloc/lr_schedule.hpp"
#include "geoloc/nn/weights.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/scene_labels.hpp"
#include "geoloc/pipeline/trainer.hpp"
#include "geoloc/safetensors.hpp"

namespace geoloc::cli {
namespace {

// ---- data-parallel training (docs/scaling.md): `mpirun -np N geoloc train ...`
// The communicator of this run; owned here (not by run_train) so that run_train_guarded can still end the
// whole job with it after an exception has left run_train.
std::unique_ptr<comm::Communicator> g_comm;
bool leader() { return !g_comm || g_comm->rank() == 0; }

// CPUs this process may run on (mpirun --bind-to core: one), for the size of geoloc's pool.
int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

// Picks and starts the communicator (--distributed), puts each rank on its GPU and CPUs, and keeps the
// other ranks quiet: rank 0 reports; the others print warnings (prefixed with their rank) and errors only.
comm::Communicator& start_distributed(const Args& args, pipeline::TrainConfig& tc) {
  std::string kind = args.get("distributed");
  GEOLOC_CHECK(kind == "auto" || kind == "mpi" || kind == "nccl", ValueError,
               "--distributed must be auto, mpi or nccl, got '", kind, "'");
  const Device dev = Device::parse(tc.device);
  if (kind == "auto" && comm::launched_by_mpi() && comm::has_mpi())  // (without MPI: create() says why not)
    kind = dev.is_cuda() && comm::has_nccl() ? "nccl" : "mpi";
  GEOLOC_CHECK(kind != "nccl" || dev.is_cuda(), ValueError, "--distributed nccl reduces CUDA tensors: it needs --device cuda");
  comm::Options o;
  o.timeout_s = args.get_double("comm-timeout", 0, 1e9);
  const bool explicit_index = tc.device.find(':') != std::string::npos;
  if (dev.is_cuda() && explicit_index) o.cuda_device = dev.index;
  g_comm = comm::create(kind, o);
  comm::Communicator& c = *g_comm;
  if (c.size() > 1 && dev.is_cuda() && !explicit_index) {  // one rank per GPU
    const int gpus = cuda::device_count();
    GEOLOC_CHECK(gpus > 0, CudaError, "--device cuda on ", c.where(), ": no CUDA device");
    tc.device = "cuda:" + std::to_string(c.local_rank() % gpus);
  }
  if (comm::launched_by_mpi()) usable_device(tc.device);  // (opened by run_train otherwise)
  if (c.size() == 1) return c;
  if (dev.is_cpu()) {
    const int cpus = affinity_cpus();
    if (cpus > 0) set_num_threads(cpus);
  }
  if (c.rank() != 0) {
    tc.progress = false;
    set_progress_handler({});
    auto prev = std::make_shared<LogHandler>(set_log_handler({}));
    const std::string tag = "[rank " + std::to_string(c.rank()) + "] ";
    set_log_handler([prev, tag](LogLevel level, const std::string& m) {
      if (level == LogLevel::warning && *prev) (*prev)(level, tag + m);
    });
  } else {
    std::fprintf(stderr, "data-parallel training: %d processes (%s), global batch %d = %d per process%s%s\n", c.size(),
                 comm::kind_name(c.kind()), tc.batch_size, tc.batch_size / c.size(),
                 tc.accumulate > 1 ? (" in " + std::to_string(tc.accumulate) + " micro-batches").c_str() : "",
                 tc.sync_bn ? ", batch norm synchronised over the processes" : "");
  }
  return c;
}

// --cache with several processes: rank 0 decodes and writes the cache, the others wait and take its list.
std::vector<std::string> shared_cache(const std::function<std::vector<std::string>()>& build) {
  if (!g_comm || g_comm->size() == 1) return build();
  std::vector<std::string> paths;
  std::string joined;
  if (g_comm->rank() == 0) {
    paths = build();
    for (const auto& p : paths) joined += p + "\n";
  }
  g_comm->barrier(0);  // decoding takes as long as it takes
  int64_t n = static_cast<int64_t>(joined.size());
  g_comm->broadcast(Tensor::borrow(&n, {8}, DType::U8, Device::cpu(), nullptr), 0);
  joined.resize(static_cast<size_t>(n));
  if (n > 0) g_comm->broadcast(Tensor::borrow(joined.data(), {n}, DType::U8, Device::cpu(), nullptr), 0);
  if (g_comm->rank() != 0)
    for (const auto& p : Args::split(joined, '\n'))
      if (!p.empty()) paths.push_back(p);
  return paths;
}

std::vector<int64_t> parse_int_list(const std::string& s, const std::string& what) {
  std::vector<int64_t> out;
  for (const auto& part : Args::split(s)) out.push_back(parse_int(part, 1, INT64_MAX, "option --" + what));
  return out;
}

// The training curve's stem: --curve, else <model>-curve.
std::string curve_stem(const Args& args) {
  const std::string out = args.get("out"), stem = args.get("curve", "");
  return stem.empty() ? std::filesystem::path(out).replace_extension("").string() + "-curve" : stem;
}

// The files of this run: every input (which no output may overwrite) and the outputs, registered and
// checked before any work; the model and the curve are written to temporaries and renamed together.
struct TrainFiles {
  Outputs outputs;
  std::string model, curve;  // temporaries to write
};

void register_files(const Args& args, TrainFiles& f) {
  for (const char* key : {"train", "val", "pretrained", "resume", "shard-labels"})
    if (args.has(key)) f.outputs.input(args.get(key), std::string("--") + key);
  if (args.has("partitions"))
    for (const auto& p : Args::split(args.get("partitions"))) f.outputs.input(p, "--partitions");
  if (args.has("shards"))
    for (const auto& p : image::expand_shard_pattern(args.get("shards"))) f.outputs.input(p, "--shards");
  f.model = f.outputs.file(args.get("out"), "--out");
  f.curve = f.outputs.stem(curve_stem(args), {".json", ".png"}, "--curve");
  // Rewritten during the run (it is meant to outlive a failure): not part of the transaction, but it
  // must not be another input or output. The --resume file is the usual --checkpoint.
  if (args.has("checkpoint")) f.outputs.side_file(args.get("checkpoint"), "--checkpoint", "--resume");
}

// Writes the model and its training curve to their temporaries, then renames both into place.
void write_outputs(const Args& args, TrainFiles& f, const pipeline::GeoModel& model, const pipeline::TrainHistory& hist) {
  if (!leader()) return;  // data-parallel: rank 0 writes (the others' temporaries go with their Outputs)
  hist.write(f.curve);
  model.save(f.model);
  const std::string curve = curve_stem(args);
  std::printf("model: %s\ntraining curve: %s.png, %s.json\n", args.get("out").c_str(), curve.c_str(), curve.c_str());
  f.outputs.commit();
}

// The step a --resume checkpoint holds (from its metadata; the full check is Trainer::resume), or -1.
int64_t checkpoint_step(const std::string& path) {
  const auto meta = safetensors::File::open(path).metadata();
  const auto it = meta.find("checkpoint");
  if (it == meta.end()) return -1;
  try {
    return nlohmann::json::parse(it->second).at("step").get<int64_t>();
  } catch (const nlohmann::json::exception&) {
    return -1;
  }
}

// Resuming a checkpoint past --steps would "succeed" with a model trained longer than asked. One exactly at
// --steps (a run killed after its last checkpoint, before the model was written) trains nothing and
// writes the model.
void check_resume_step(const std::string& path, int64_t step, int64_t steps) {
  GEOLOC_CHECK(step <= steps, ValueError, "--resume '", path, "' is at step ", step, ", past --steps ", steps,
               ": nothing left to train (give --steps ", step, " or more to continue)");
}

// A checkpoint at the last step too (the interval's checkpoints may stop short of it).
void final_checkpoint(const pipeline::Trainer& trainer, const pipeline::TrainConfig& tc) {
  if (!leader()) return;  // data-parallel: rank 0 writes checkpoints
  if (!tc.checkpoint_path.empty() && (tc.checkpoint_every == 0 || trainer.step() % tc.checkpoint_every != 0))
    trainer.save_checkpoint(tc.checkpoint_path);
}

// The --val manifest decoded at the model's size, or null.
std::unique_ptr<pipeline::Dataset> validation_set(const Args& args, const pipeline::ModelSpec& spec) {
  if (!args.has("val")) return nullptr;
  return std::make_unique<pipeline::Dataset>(pipeline::Dataset::from_manifest(args.get("val"), spec.preprocess.resize));
}

// geoloc train --stream: the set never sits in memory; loader threads decode (or read cache shards),
// augment and normalise batches while the network trains.
// --epochs E as a step count for n training images.
int64_t steps_for(const Args& args, int64_t fallback, size_t n, int batch) {
  if (!args.has("epochs")) return fallback;
  const double e = args.get_double("epochs", 0, 1e9);
  GEOLOC_CHECK(e > 0, ValueError, "option --epochs must be positive, got '", args.get("epochs"), "'");
  const double steps = std::ceil(e * static_cast<double>(n) / batch);
  GEOLOC_CHECK(steps < 9e18, ValueError, "option --epochs '", args.get("epochs"), "' gives ", steps, " steps: too many");
  return std::max<int64_t>(1, static_cast<int64_t>(steps));
}

// With --partitions: counts the training points outside the given cells, and returns the rows to drop
// (those outside every partitioning, under --outside skip).
std::vector<size_t> check_coverage(const Args& args, const pipeline::ModelSpec& spec, std::span<const geo::LatLng> coords) {
  if (spec.partitions.empty()) return {};
  const pipeline::Coverage c = pipeline::coverage(spec.partitions, coords);
  for (size_t p = 0; p < c.outside.size(); ++p)
    if (c.outside[p] && leader())
      std::fprintf(stderr, "partitioning %s: %zu of %zu training images lie outside its cells (%s)\n",
                   spec.partitions[p].name.c_str(), c.outside[p], coords.size(),
                   args.get("outside") == "nearest" ? "labelled with the nearest cell" : "no label for this head");
  if (args.get("outside") == "nearest" || c.outside_all_rows.empty()) return {};
  if (leader())
    std::fprintf(stderr, "%zu of %zu training images lie outside every partitioning: skipped\n",
                 c.outside_all_rows.size(), coords.size());
  GEOLOC_CHECK(c.outside_all_rows.size() < coords.size(), ValueError, "no training image lies inside the cells of ",
               args.get("partitions"), " (check that the coordinates and the partitionings belong together)");
  return c.outside_all_rows;
}

// --pretrained: a file with exactly the model's heads (an imported or earlier geoloc model) fine-tunes
// everything; otherwise only the backbone is taken.
void load_pretrained(const Args& args, pipeline::GeoModel& model) {
  if (!args.has("pretrained")) return;
  const std::string path = args.get("pretrained");
  const auto file = safetensors::File::open(path);
  bool same_heads = false;
  try {
    same_heads = nn::geonet_config_from(file, model.net->config().name()).heads == model.net->geo_config().heads;
  } catch (const Error&) {
  }
  if (same_heads) {
    nn::load_state(*model.net, file);
    if (leader()) std::fprintf(stderr, "fine-tuning every layer of %s (its heads match the partitionings)\n", path.c_str());
  } else {
    nn::load_backbone(*model.net, path);
  }
}


int train_streaming(const Args& args, const pipeline::ModelSpec& spec, pipeline::TrainConfig tc, TrainFiles& files) {
  GEOLOC_CHECK(!args.flag("propagate-scenes"), ValueError,
               "--propagate-scenes needs the training set in memory; it cannot be combined with --stream or --shards");
  const bool from_shards = args.has("shards");
  GEOLOC_CHECK(!from_shards || !args.has("cache"), ValueError,
               "--cache decodes the --train manifest; shards are read as they are (leave out --cache)");
  std::shared_ptr<image::ShardSet> shards;
  image::Manifest manifest;
  std::vector<geo::LatLng> coords;
  std::vector<int> countries;
  const std::string data_name = from_shards ? args.get("shards") : args.get("train");
  auto check_scene = [&](int scene, const std::string& where) {
    GEOLOC_CHECK(scene < static_cast<int>(spec.scene_names.size()), ValueError, where, ": scene ", scene, " but only ",
                 spec.scene_names.size(), " scene names (--scenes) given");
  };
  if (from_shards) {
    shards = open_shards(args);
    for (size_t i = 0; i < shards->size(); ++i) {
      const auto& l = shards->labels()[i];
      check_scene(l.scene, data_name + " record " + std::to_string(i));
      coords.push_back({l.latitude, l.longitude});
      countries.push_back(l.country);
    }
  } else {
    manifest = image::read_manifest(args.get("train"));
    for (const auto& e : manifest.entries) {
      check_scene(e.scene, args.get("train") + " line " + std::to_string(e.line));
      coords.push_back({e.latitude, e.longitude});
      countries.push_back(e.country);
    }
  }
  if (const auto drop = check_coverage(args, spec, coords); !drop.empty()) {
    std::vector<bool> gone(coords.size(), false);
    for (size_t r : drop) gone[r] = true;
    std::vector<geo::LatLng> kept_coords;
    std::vector<int> kept_countries;
    for (size_t i = 0; i < coords.size(); ++i)
      if (!gone[i]) {
        kept_coords.push_back(coords[i]);
        kept_countries.push_back(countries[i]);
      }
    coords = std::move(kept_coords);
    countries = std::move(kept_countries);
    if (from_shards) {
      shards->drop(drop);
    } else {
      image::Manifest kept = manifest;
      kept.entries.clear();
      for (size_t i = 0; i < manifest.entries.size(); ++i)
        if (!gone[i]) kept.entries.push_back(manifest.entries[i]);
      manifest = std::move(kept);
    }
  }
  tc.steps = steps_for(args, tc.steps, coords.size(), tc.batch_size);
  if (args.has("val") && tc.eval_every == 0) tc.eval_every = tc.steps;  // --val alone: evaluated at the end
  pipeline::GeoModel model = pipeline::build_model(spec, coords, countries);
  load_pretrained(args, model);
  const int threads = static_cast<int>(args.get_int("loader-threads", 1, 256));
  // The photos only need to cover the resize size: JPEGs are decoded DCT-scaled where that is enough.
  const image::DecodeOptions decode{.min_size = spec.preprocess.resize};
  std::shared_ptr<const image::SampleSource> source;
  if (!from_shards) source = std::make_shared<image::ManifestSource>(std::move(manifest), decode);
  if (args.has("cache")) {
    image::CacheBuildOptions co;
    co.width = co.height = spec.preprocess.resize;
    co.threads = threads;
    const auto shard_paths = shared_cache([&] {
      const auto built = image::build_cache(*source, args.get("cache"), co);
      std::fprintf(stderr, "cache: %zu images in %zu shards (%zu unreadable)\n", built.written, built.shards.size(),
                   built.skipped);
      return built.shards;
    });
    source = std::make_shared<image::CacheSource>(shard_paths);
  }
  image::LoaderOptions lo;
  lo.batch_size = static_cast<size_t>(tc.batch_size);
  lo.threads = threads;
  lo.drop_last = true;
  lo.seed = tc.seed;
  lo.shuffle = !args.flag("no-shuffle");
  lo.shuffle_buffer = static_cast<size_t>(args.get_int("shuffle-buffer", 0, INT32_MAX));
  lo.normalization = spec.preprocess.normalization();
  if (g_comm) {  // data-parallel: each rank decodes its part of every global batch
    lo.shard_index = static_cast<size_t>(g_comm->rank());
    lo.shard_count = static_cast<size_t>(g_comm->size());
  }
  const image::Pipeline augment = spec.preprocess.train_transform(tc.augmentation());
  auto loader = from_shards ? std::make_unique<image::Loader>(shards, augment, lo, decode)
                            : std::make_unique<image::Loader>(source, augment, lo);
  const std::unique_ptr<pipeline::Dataset> val = validation_set(args, spec);
  pipeline::Trainer trainer(model, tc, g_comm.get());
  if (args.has("resume")) {
    trainer.resume(args.get("resume"));
    check_resume_step(args.get("resume"), trainer.step(), tc.steps);
  }
  const auto& hist = trainer.fit(*loader, val.get());
  if (loader->skipped() && leader())
    std::fprintf(stderr, "%llu unreadable images were skipped\n", static_cast<unsigned long long>(loader->skipped()));
  final_checkpoint(trainer, tc);
  write_outputs(args, files, model, hist);
  return 0;
}

int run_train(int argc, char** argv) {
  Args args("train", "--train TRAIN.csv | --shards 'SHARDS' --out MODEL.safetensors [options]",
            {{"train", "training manifest (image,latitude,longitude[,scene][,country])"},
             {"shards", "train from tar (WebDataset) or MessagePack (ECCV 2018) shards instead of --train, streamed: "
                        "'dir/{000..009}.tar', a glob or a comma-separated list (implies --stream)"},
             {"shard-labels", "CSV of key/id,latitude,longitude[,scene][,country] joined with the shard records (needed "
                              "for MessagePack shards; replaces key.json in tar shards)"},
             {"shuffle-buffer", "with --shards: records held to draw from when shuffling", false, "1000"},
             {"no-shuffle", "with --stream or --shards: visit the images in listed order every epoch", true},
             {"val", "validation manifest, evaluated every --eval-every steps"},
             {"out", "model file to write"},
             {"arch", "backbone: small, resnet18, resnet34, resnet50, resnet101 (with --pretrained: that file's)", false, "small"},
             {"pretrained", "initialise the backbone from these weights (torchvision names)"},
             {"freeze-backbone", "train the heads only", true},
             {"image-size", "network input size (square)", false, "64"},
             {"resize", "shorter side before cropping", false, ""},
             {"cells", "tau_max of each S2 partitioning, coarse to fine", false, "2000,1000,500"},
             {"partitions", "train on these partition CSVs (ECCV 2018 format), coarse to fine, instead of building cells"},
             {"outside", "with --partitions, images outside a partitioning's cells: skip (no label there; dropped when "
                         "outside all) or nearest (the nearest cell)", false, "skip"},
             {"tau-min", "drop cells with fewer training images", false, "20"},
             {"min-level", "first S2 level", false, "2"},
             {"max-level", "last S2 level", false, "30"},
             {"kmeans", "k-means clusters instead of S2 cells (k)"},
             {"scenes", "scene names, comma-separated (their ids are the manifest's scene column)"},
             {"propagate-scenes", "label rows without a scene with a helper model first", true},
             {"country-head", "add a country classification head", true},
             {"coords-head", "add a coordinate-regression head (haversine loss)", true},
             {"hybrid-head", "add a hybrid head: the offset from the finest cell's centre (strategy hybrid)", true},
             {"steps", "optimisation steps", false, "1000"},
             {"epochs", "train for this many passes over the training set instead of --steps"},
             {"batch", "batch size", false, "64"},
             {"optimizer", "sgd or adamw", false, "sgd"},
             {"lr", "learning rate", false, "0.05"},
             {"weight-decay", "weight decay (not on BN and biases)", false, "0.0001"},
             {"schedule", "constant, step, multistep, cosine, cosine-restarts", false, "cosine"},
             {"warmup", "warm-up steps", false, "0"},
             {"clip", "gradient-norm clipping (0 = off)", false, "0"},
             {"dropout", "dropout before the heads", false, "0"},
             {"soft-tau", "haversine-smoothed targets with this tau in km (0 = hard labels)", false, "0"},
             {"eval-every", "evaluate on --val every N steps (0: at the last step only)", false, "0"},
             {"checkpoint", "checkpoint file, rewritten atomically every --checkpoint-every steps and at the last step"},
             {"checkpoint-every", "with --checkpoint: steps between checkpoints (0: only at the last step)", false, "1000"},
             {"resume", "continue from this checkpoint"},
             {"seed", "random seed", false, "1"},
             {"stream", "decode and augment in loader threads while training, instead of holding the set in memory", true},
             {"cache", "with --stream: decode once into memory-mapped shards with this path prefix, then train from them"},
             {"loader-threads", "with --stream: decoding threads", false, "2"},
             {"device", "cpu or cuda", false, "cpu"},
             {"precision", "f32, or bf16 (mixed precision: bf16 activations, f32 master weights)", false, "f32"},
             {"curve", "training curve file stem (.json and .png)", false, ""},
             {"accumulate", "micro-batches per step (gradient accumulation); --batch stays the step's batch", false, "1"},
             {"distributed", "under mpirun: auto (nccl with --device cuda where built, else mpi), mpi or nccl; --batch is "
                             "the global batch, split over the processes (docs/scaling.md)", false, "auto"},
             {"comm-timeout", "seconds a collective may wait for the other processes before the run stops with an "
                              "error (0 = no limit)", false, "120"},
             {"bucket-mb", "size of the gradient all-reduce buckets, MiB", false, "4"},
             {"sync-bn", "under mpirun: batch norm normalises with the statistics of the whole global batch, gathered "
                         "from every process at each layer (default: each process's own)", true},
             {"threads", "threads of geoloc's pool (default: every core; under mpirun, the cores the process is bound to)"}});
  if (!args.parse(argc, argv)) return 0;
  const int size = static_cast<int>(args.get_int("image-size", 1, 8192));
  args.get("out");  // required: a missing --out fails before any work
  // Every option is checked before the (slow) decoding of the data set.
  pipeline::ModelSpec spec;
  std::string arch = args.get("arch");
  if (args.has("pretrained") && !args.has("arch")) {  // fine-tuning: the pretrained file's architecture
    const auto meta = safetensors::File::open(args.get("pretrained")).metadata();
    if (auto it = meta.find("arch"); it != meta.end()) arch = it->second;
  }
  spec.backbone = nn::ResNetConfig::parse(arch);
  spec.preprocess.crop = size;
  spec.preprocess.resize = static_cast<int>(args.get_int("resize", 1, 8192, size));
  spec.cells.tau_max = parse_int_list(args.get("cells"), "cells");
  spec.cells.tau_min = args.get_int("tau-min", 0, INT64_MAX);
  spec.cells.min_level = static_cast<int>(args.get_int("min-level", 0, 30));
  spec.cells.max_level = static_cast<int>(args.get_int("max-level", 0, 30));
  GEOLOC_CHECK(spec.cells.min_level <= spec.cells.max_level, ValueError, "option --min-level (",
               spec.cells.min_level, ") is above --max-level (", spec.cells.max_level, ")");
  for (int64_t t : spec.cells.tau_max)
    GEOLOC_CHECK(spec.cells.tau_min <= t, ValueError, "option --tau-min (", spec.cells.tau_min,
                 ") is above a --cells value (", t, "): every cell would be dropped");
  spec.kmeans_k = static_cast<int>(args.get_int("kmeans", 1, INT32_MAX, 0));
  if (args.has("partitions")) {
    GEOLOC_CHECK(!args.has("kmeans") && !args.has("cells"), ValueError, "--partitions replaces --cells and --kmeans");
    spec.partitions = pipeline::read_partitions(Args::split(args.get("partitions")));
  }
  GEOLOC_CHECK(args.get("outside") == "skip" || args.get("outside") == "nearest", ValueError,
               "--outside must be skip or nearest, got '", args.get("outside"), "'");
  if (args.has("scenes")) {
    spec.scene_names = Args::split(args.get("scenes"));
    for (const auto& n : spec.scene_names) {
      GEOLOC_CHECK(!n.empty(), ValueError, "option --scenes: empty scene name in '", args.get("scenes"), "'");
      check_utf8(n, "option --scenes: scene name");
    }
  }
  spec.country_head = args.flag("country-head");
  spec.coords_head = args.flag("coords-head");
  spec.hybrid_head = args.flag("hybrid-head");
  spec.dropout = static_cast<float>(args.get_double("dropout", 0, 1));
  GEOLOC_CHECK(spec.dropout < 1.0f, ValueError, "option --dropout expects a number from 0 to below 1, got '",
               args.get("dropout"), "'");
  spec.freeze_backbone = args.flag("freeze-backbone");
  spec.seed = static_cast<uint64_t>(args.get_int("seed", 0, INT64_MAX));

  pipeline::TrainConfig tc;
  tc.steps = args.get_int("steps", 1, INT64_MAX);
  tc.batch_size = static_cast<int>(args.get_int("batch", 1, INT32_MAX));
  tc.optimizer = args.get("optimizer");
  const double max_float = std::numeric_limits<float>::max();
  tc.lr = static_cast<float>(args.get_double("lr", 0, max_float));
  GEOLOC_CHECK(tc.lr > 0, ValueError, "option --lr expects a positive number, got '", args.get("lr"), "'");
  tc.weight_decay = static_cast<float>(args.get_double("weight-decay", 0, max_float));
  tc.schedule = optim::parse_schedule(args.get("schedule"));
  tc.warmup_steps = args.get_int("warmup", 0, INT64_MAX);
  tc.clip_grad_norm = static_cast<float>(args.get_double("clip", 0, max_float));
  tc.soft_targets_tau_km = args.get_double("soft-tau", 0, 1e6);
  tc.outside_nearest = args.get("outside") == "nearest";
  tc.eval_every = args.get_int("eval-every", 0, INT64_MAX);
  GEOLOC_CHECK(!args.has("eval-every") || args.has("val"), ValueError, "option --eval-every needs --val");
  tc.checkpoint_path = args.get("checkpoint", "");
  GEOLOC_CHECK(!args.has("checkpoint-every") || args.has("checkpoint"), ValueError,
               "option --checkpoint-every needs --checkpoint (the file to write)");
  tc.checkpoint_every = tc.checkpoint_path.empty() ? 0 : args.get_int("checkpoint-every", 0, INT64_MAX);
  tc.seed = spec.seed;
  tc.device = args.get("device");
  if (!comm::launched_by_mpi()) usable_device(tc.device);  // under mpirun: the rank's own GPU, start_distributed
  tc.precision = args.get("precision");
  tc.accumulate = static_cast<int>(args.get_int("accumulate", 1, 65536));
  tc.bucket_mb = args.get_double("bucket-mb", 1e-6, 1e6);
  tc.sync_bn = args.flag("sync-bn");
  tc.validate();
  spec.preprocess.validate();
  if (args.has("epochs")) {
    GEOLOC_CHECK(!args.has("steps"), ValueError, "give --steps or --epochs, not both");
    steps_for(args, 1, 1, 1);  // checks the value now, before the data is read
  }
  if (args.has("resume") && !args.has("epochs")) check_resume_step(args.get("resume"), checkpoint_step(args.get("resume")), tc.steps);
  TrainFiles files;
  register_files(args, files);
  if (args.has("cache")) check_output_path(args.get("cache") + "-00000.glc");  // its shards: PREFIX-NNNNN.glc

  comm::Communicator& comm = start_distributed(args, tc);
  if (args.has("threads")) set_num_threads(static_cast<int>(args.get_int("threads", 1, 4096)));
  GEOLOC_CHECK(tc.batch_size % (comm.size() * tc.accumulate) == 0, ValueError, "--batch ", tc.batch_size,
               " (the global batch) is not divisible by ", comm.size(), " processes x ", tc.accumulate, " micro-batches");
  if (args.has("shards")) {
    GEOLOC_CHECK(!args.has("train"), ValueError, "give --train or --shards, not both");
    return train_streaming(args, spec, tc, files);
  }
  if (args.flag("stream")) return train_streaming(args, spec, tc, files);
  GEOLOC_CHECK(!args.has("cache"), ValueError, "--cache needs --stream");
  GEOLOC_CHECK(!args.has("no-shuffle"), ValueError, "--no-shuffle needs --stream");
  pipeline::Dataset train = pipeline::Dataset::from_manifest(args.get("train"), spec.preprocess.resize);
  if (const auto drop = check_coverage(args, spec, train.coords); !drop.empty()) {
    std::vector<bool> gone(train.size(), false);
    for (size_t r : drop) gone[r] = true;
    std::vector<size_t> keep;
    for (size_t i = 0; i < train.size(); ++i)
      if (!gone[i]) keep.push_back(i);
    train = train.subset(keep);
  }
  const std::unique_ptr<pipeline::Dataset> val = validation_set(args, spec);
  tc.steps = steps_for(args, tc.steps, train.size(), tc.batch_size);
  if (args.has("val") && tc.eval_every == 0) tc.eval_every = tc.steps;  // --val alone: evaluated at the end
  for (size_t i = 0; i < train.size(); ++i)
    GEOLOC_CHECK(train.scene[i] < static_cast<int>(spec.scene_names.size()), ValueError, args.get("train"), " row ", i,
                 ": scene ", train.scene[i], " but only ", spec.scene_names.size(), " scene names (--scenes) given");

  if (args.flag("propagate-scenes") && !spec.scene_names.empty()) {
    pipeline::TrainConfig helper = tc;
    helper.checkpoint_path.clear();
    helper.eval_every = 0;
    const size_t n = pipeline::propagate_scene_labels(train, spec.backbone, static_cast<int64_t>(spec.scene_names.size()),
                                                      spec.preprocess, helper);
    if (leader()) std::fprintf(stderr, "scene labels propagated to %zu training images\n", n);
  }
  pipeline::GeoModel model = pipeline::build_model(spec, train.coords, train.country);
  load_pretrained(args, model);
  for (const auto& p : model.partitions)
    if (leader()) std::fprintf(stderr, "partitioning %s: %zu classes\n", p.name.c_str(), p.partition->size());
  pipeline::Trainer trainer(model, tc, g_comm.get());
  if (args.has("resume")) {
    trainer.resume(args.get("resume"));
    check_resume_step(args.get("resume"), trainer.step(), tc.steps);
  }
  const auto& hist = trainer.fit(train, val.get());
  final_checkpoint(trainer, tc);
  write_outputs(args, files, model, hist);
  return 0;
}

// A rank that fails ends the whole data-parallel job (MPI_Abort) after printing its error, rather than
// leaving the other ranks waiting in a collective until their timeout.
int run_train_guarded(int argc, char** argv) {
  struct Release {  // the communicator goes with the command (MPI itself is finalised at exit)
    ~Release() { g_comm.reset(); }
  } release;
  try {
    return run_train(argc, argv);
  } catch (const std::exception& e) {
    if (g_comm && g_comm->size() > 1) {
      std::fprintf(stderr, "geoloc train: error on %s: %s\ngeoloc train: %s stops the job\n", g_comm->where().c_str(),
                   e.what(), g_comm->where().c_str());
      g_comm->abort(1);
    }
    throw;
  }
}

}  // namespace

GEOLOC_COMMAND("train", "train a geolocation model on a manifest of photos", run_train_guarded);

}  // namespace geoloc::cli
