#include "geoloc/pipeline/demo.hpp"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

#include "geoloc/atomic_file.hpp"
#include "geoloc/detail/parallel.hpp"
#include "geoloc/earth/imagery.hpp"
#include "geoloc/earth/projection.hpp"
#include "geoloc/earth/scene.hpp"
#include "geoloc/earth/views.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/geo/fishnet.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/pipeline/scene_labels.hpp"
#include "geoloc/pipeline/trainer.hpp"
#include "geoloc/progress.hpp"
#include "geoloc/viz/probability_map.hpp"
#include "geoloc/random.hpp"
#include "demo_presets.hpp"

#include "geo/metrics_json.hpp"
#include "pipeline/eval_json.hpp"

namespace geoloc::pipeline {

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A stage line to the program's log handler (printf-style), when progress is on.
void say(const DemoConfig& c, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void say(const DemoConfig& c, const char* fmt, ...) {
  if (!c.progress) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::string line = buf;
  while (!line.empty() && line.back() == '\n') line.pop_back();
  log_message(LogLevel::info, line);
}

// The training recipe per size: data, network input, steps. Calibrated on the 2-core CI machine so
// that "quick" stays under 30 s and "default" under 3 minutes, end to end.
struct Recipe {
  earth::EarthViewsConfig data;
  int64_t steps = 0, helper_steps = 0;
  int batch = 64;
  float lr = 0.05f;
};

Recipe recipe(const std::string& size, uint64_t seed) {
  Recipe r;
  if (size == "quick") {
    r.data = earth::EarthViewsConfig::quick();
    r.steps = 600;
    r.helper_steps = 120;
    r.batch = 32;
  } else if (size == "default") {
    r.data = earth::EarthViewsConfig::default_();
    // 48 px views cover 400-1000 km at 8-20 km a pixel, about the imagery's own resolution, and train
    // 1.8x faster than 64 px: the budget goes to more steps instead.
    r.data.image_size = 48;
    r.steps = 1500;
    r.helper_steps = 300;
    r.batch = 64;
  } else if (size == "large") {
    r.data = earth::EarthViewsConfig::large();
    r.steps = 20000;
    r.helper_steps = 2000;
    r.batch = 256;
    r.lr = 0.1f;
  } else {
    throw ValueError("unknown demo size '" + size + "' (expected quick, default or large)");
  }
  r.data.seed = seed;
  return r;
}

Dataset to_dataset(const earth::EarthSplit& s) {
  Dataset d;
  d.images.resize(s.n());
  for (size_t i = 0; i < s.n(); ++i) {
    d.images[i] = image::Image(s.size, s.size);
    std::copy(s.view(i), s.view(i) + s.view_bytes(), d.images[i].pixels.begin());
  }
  d.coords = s.location;
  d.scene = s.scene;
  d.country = s.country;
  return d;
}

// Europe, the region of the "grid" preset: a latitude/longitude box clipped by the fishnet.
const double kRegion[4] = {35.0, -11.0, 71.0, 40.0};  // min lat, min lng, max lat, max lng
bool in_region(geo::LatLng p) {
  return p.lat >= kRegion[0] && p.lat <= kRegion[2] && p.lng >= kRegion[1] && p.lng <= kRegion[3];
}
Dataset region_subset(const Dataset& d, std::vector<size_t>* rows_out = nullptr) {
  std::vector<size_t> rows;
  for (size_t i = 0; i < d.size(); ++i)
    if (in_region(d.coords[i])) rows.push_back(i);
  if (rows_out) *rows_out = rows;
  return d.subset(rows);
}

// `views` more pictures of every location of a split, same rendering and field of view, headings
// spread around the circle: the several photos of one place that EUGuess averages over.
Dataset extra_views(const earth::EarthSplit& s, const earth::EarthImagery& imagery, int views) {
  Dataset d;
  const size_t n = s.n();
  d.images.resize(n * views);
  for (size_t i = 0; i < n; ++i)
    for (int v = 0; v < views; ++v) {
      d.coords.push_back(s.location[i]);
      d.scene.push_back(s.scene[i]);
      d.country.push_back(s.country[i]);
    }
  detail::parallel_for(n, [&](size_t i) {
    for (int v = 0; v < views; ++v) {
      image::Image img(s.size, s.size);
      const earth::ViewGeometry g{s.location[i], s.heading_deg[i] + 360.0 * v / views, s.fov_km[i]};
      earth::render_view(imagery.rendering(s.rendering[i]), g, s.size, s.size, img.pixels.data());
      d.images[i * views + v] = std::move(img);
    }
  });
  return d;
}

// Colour histograms (4x4x4 bins) of every image: the features of the colour k-NN baseline.
Tensor histograms(const Dataset& d) {
  const int64_t bins = 64;
  Tensor h = Tensor::empty({static_cast<int64_t>(d.size()), bins});
  detail::parallel_for(d.size(), [&](size_t i) {
    const auto v = earth::colour_histogram(d.images[i].pixels.data(), d.images[i].width, d.images[i].height, 4);
    std::copy(v.begin(), v.end(), h.data<float>() + i * bins);
  });
  return h;
}

// ---------------------------------------------------------------- the stages
// The data: imagery, polygons, the rendered views as datasets (the grid preset keeps its region only).
struct DemoData {
  earth::EarthImagery imagery;
  geo::CountryIndex countries;
  earth::EarthViews views;
  Dataset train;
  std::vector<std::pair<std::string, Dataset>> eval_sets;
};

std::unique_ptr<DemoData> load_data(const DemoConfig& c, const Recipe& r) {
  say(c, "[1/6] loading imagery and country polygons\n");
  auto d = std::unique_ptr<DemoData>(new DemoData{earth::EarthImagery::load(), geo::CountryIndex::load_default(), {}, {}, {}});
  say(c, "[2/6] rendering the Earth-views data set\n");
  Progress data_progress("  views", 100, "%", c.progress);
  d->views = earth::build_earth_views(r.data, d->imagery, d->countries, [&](std::string_view stage, double f) {
    data_progress.update(static_cast<int64_t>(100 * f), std::string(stage));
  });
  const earth::EarthViews& v = d->views;
  data_progress.finish(std::to_string(v.train.n()) + " training views, " +
                       std::to_string(v.test_unseen_rendering.n() + v.test_seen_rendering.n()) + " test views");
  d->train = to_dataset(v.train);
  d->eval_sets = {{"test_unseen_rendering", to_dataset(v.test_unseen_rendering)},
                  {"test_seen_rendering", to_dataset(v.test_seen_rendering)}};
  earth::save_contact_sheet(v.test_unseen_rendering, (fs::path(c.out_dir) / "test-views.png").string(), 32, 8, 2);
  return d;
}

// The main network's training configuration for the size's recipe.
TrainConfig train_config(const DemoConfig& c, const Recipe& r) {
  TrainConfig tc;
  tc.batch_size = r.batch;
  tc.lr = r.lr;
  tc.steps = r.steps;
  tc.warmup_steps = r.steps > 1 ? std::max<int64_t>(1, r.steps / 20) : 0;
  tc.weight_decay = 5e-4f;
  tc.crop_scale_min = 0.7;
  tc.jitter = 0.1f;
  tc.seed = c.seed;
  tc.device = c.device;
  if (!c.optimizer.empty()) tc.optimizer = c.optimizer;
  if (tc.optimizer == "adamw") {
    tc.lr = 2e-3f;
    tc.weight_decay = 0.05f;
  }
  tc.progress = c.progress;
  return tc;
}

// Scene-label propagation (the helper network of the seed paper); returns the share of propagated
// labels that agree with the rule the views were labelled by.
double propagate_scenes(const DemoConfig& c, const Recipe& r, const TrainConfig& tc, const Preprocess& pp, DemoData& d) {
  Dataset& train = d.train;
  size_t labelled = 0;
  for (int s : train.scene) labelled += s >= 0;
  say(c, "[3/6] scene-label propagation: a helper network trained on %zu labelled views labels the other %zu\n",
      labelled, train.size() - labelled);
  TrainConfig helper = tc;
  helper.steps = r.helper_steps;
  helper.warmup_steps = r.helper_steps > 1 ? std::max<int64_t>(1, r.helper_steps / 10) : 0;
  propagate_scene_labels(train, nn::ResNetConfig::small(), earth::kNumScenes, pp, helper);
  size_t right = 0, total = 0;
  for (size_t i = 0; i < train.size(); ++i)
    if (d.views.train.scene[i] < 0) {
      ++total;
      right += train.scene[i] == d.views.train.scene_truth[i];
    }
  return total ? static_cast<double>(right) / total : 1.0;
}

// The preset's classes, the model built on them, trained; model.safetensors and the training curve.
GeoModel train_model(const DemoConfig& c, const Preset& preset, const TrainConfig& tc, const Preprocess& pp,
                     DemoData& d) {
  Dataset& train = d.train;
  say(c, "[4/6] partitioning %zu training coordinates and training the network\n", train.size());
  ModelSpec spec;
  spec.backbone = nn::ResNetConfig::small();
  spec.preprocess = pp;
  spec.seed = c.seed;
  const int64_t n = static_cast<int64_t>(train.size());
  GeoModel model;
  switch (preset.classes) {
    case Classes::S2Hierarchy:
      // Three partitionings, coarse to fine, scaled to the data as tau 5000/2000/1000 are to MP-16's 4.7M photos.
      spec.cells.tau_max = {std::max<int64_t>(n / 12, 40), std::max<int64_t>(n / 30, 20), std::max<int64_t>(n / 80, 10)};
      spec.cells.tau_min = std::max<int64_t>(n / 2000, 5);
      break;
    case Classes::CountryAndS2:
      // Country classification next to one S2 partitioning; the country comes from its own head.
      spec.country_head = true;
      spec.cells.tau_max = {std::max<int64_t>(n / 40, 20)};
      spec.cells.tau_min = std::max<int64_t>(n / 2000, 5);
      break;
    case Classes::KMeans:
      spec.kmeans_k = static_cast<int>(std::clamp<int64_t>(n / 60, 16, 1024));
      break;
    case Classes::EuropeFishnet:
      break;
  }
  if (preset.scene_head) {
    for (int s = 0; s < earth::kNumScenes; ++s) spec.scene_names.emplace_back(earth::scene_name(s));
  }
  spec.hybrid_head = preset.hybrid_head;
  if (preset.classes == Classes::EuropeFishnet) {
    // A 3-degree fishnet over Europe; training and test views outside it are left out.
    train = region_subset(train);
    for (auto& [name, set] : d.eval_sets) set = region_subset(set);
    say(c, "  grid preset: %zu training views inside the region (%.0f..%.0f N, %.0f..%.0f E)\n", train.size(), kRegion[0],
        kRegion[2], kRegion[1], kRegion[3]);
    auto grid = std::make_shared<geo::FishnetPartition>(geo::FishnetPartition::build(
        geo::bounding_box(kRegion[0], kRegion[1], kRegion[2], kRegion[3]),
        {.cell_deg = train.size() < 1500 ? 6.0 : 3.0, .merge_below = 0.3}, train.coords));
    nn::GeoNetConfig cfg;
    cfg.backbone = spec.backbone;
    cfg.heads = {{"grid", nn::HeadKind::Partition, static_cast<int64_t>(grid->size())}};
    model.preprocess = pp;
    model.partitions = {{"grid", grid}};
    model.net = std::make_shared<nn::GeoNet>(cfg, c.seed);
    model.finalise();
  } else {
    model = build_model(spec, train.coords, train.country);
  }
  for (const auto& p : model.partitions) say(c, "  partitioning %s: %zu classes\n", p.name.c_str(), p.partition->size());
  Trainer trainer(model, tc);
  const TrainHistory& hist = trainer.fit(train);
  model.save((fs::path(c.out_dir) / "model.safetensors").string());
  hist.write((fs::path(c.out_dir) / "training-curve").string());
  return model;
}

// Extra stage of the regression preset (Sy & Day): coordinates regressed from the frozen backbone just
// trained, by two heads side by side: a unit 3-vector with the haversine loss, and (lat/90, lng/180) with MSE.
GeoModel train_regression_heads(const DemoConfig& c, const Recipe& r, const TrainConfig& tc, const Preprocess& pp,
                                const GeoModel& model, const Dataset& train) {
  say(c, "  regression heads on the frozen backbone\n");
  GeoModel regression;
  nn::GeoNetConfig cfg;
  cfg.backbone = nn::ResNetConfig::small();
  cfg.freeze_backbone = true;
  cfg.heads = {{"coords", nn::HeadKind::Coordinates, 3}, {"latlng", nn::HeadKind::Coordinates, 2}};
  regression.net = std::make_shared<nn::GeoNet>(cfg, c.seed + 1);
  regression.preprocess = pp;
  regression.finalise();
  for (const auto& [name, t] : model.net->state()) {
    if (name.rfind("heads.", 0) == 0) continue;
    Tensor* dst = regression.net->find(name);
    GEOLOC_CHECK(dst, Error, "regression preset: backbone tensor '", name, "' missing");
    dst->copy_(t);
  }
  TrainConfig rc = tc;
  rc.optimizer = "adamw";
  rc.lr = 1e-2f;
  rc.weight_decay = 0.0f;
  rc.steps = std::max<int64_t>(r.steps / 3, 50);
  Trainer(regression, rc).fit(train);
  return regression;
}

// One test split's evaluation: the model's strategies, the preset's extra methods and the baselines,
// into metrics.json's splits.SPLIT and the printed report, with the split's probability maps.
struct SplitEvaluation {
  const DemoConfig& c;
  const Preset& preset;
  const DemoData& d;
  const GeoModel& model;
  const GeoModel* regression;  // the regression preset's heads, else null
  const KnnIndex& colour_index;
  const viz::MapRenderer* maps;
  nlohmann::json& metrics;
  std::string& report;

  void run(size_t si) const;
};

void SplitEvaluation::run(size_t si) const {
  // not a structured binding: the lambdas below capture `data`, which clang before 16 refuses for a binding
  const std::string& split = d.eval_sets[si].first;
  const Dataset& data = d.eval_sets[si].second;
  if (data.size() == 0) return;
  const earth::EarthSplit* split_src[] = {&d.views.test_unseen_rendering, &d.views.test_seen_rendering};
  const geo::CountryIndex& countries = d.countries;
  const auto& fine = *model.finest().partition;
  char buf[256];
  EvalOptions eo;
  eo.keep_probabilities = maps != nullptr;  // the maps of chosen views
  eo.strategies = preset.strategies;
  eo.predict.snap_to_land = preset.snap_to_land;
  // The five thresholds of the table's first rows, and Sy & Day's distance buckets.
  eo.thresholds_km = geo::kDefaultThresholdsKm;
  eo.thresholds_km.insert(eo.thresholds_km.end(), geo::kDistanceBucketsKm.begin(), geo::kDistanceBucketsKm.end());
  const EvalReport er = evaluate_strategies(model, data, &countries, eo);
  std::vector<std::pair<std::string, geo::Metrics>> table;
  auto& js = metrics["splits"][split];
  // One method's entry in metrics.json (scene_acc null where the method has no scene) and in the table.
  // "acc_km" keeps exactly the five thresholds it always had; the buckets go to "acc_km_buckets".
  auto record = [&](const std::string& method, const geo::Metrics& m, std::optional<double> scene_acc) {
    nlohmann::json j = geo::to_json_object(m);
    nlohmann::json buckets = nlohmann::json::object();
    for (double t : geo::kDistanceBucketsKm) {
      const std::string key = geo::threshold_key(t);
      buckets[key] = j["acc_km"][key];
      j["acc_km"].erase(key);
    }
    j["acc_km_buckets"] = buckets;
    j["scene_acc"] = scene_acc ? nlohmann::json(*scene_acc) : nlohmann::json(nullptr);
    js[method] = j;
    table.emplace_back(method, m);
  };
  // Metrics of predicted coordinates (the baselines, the regression heads, several views): countries
  // and continents looked up in the polygons (or, given, from a country head), cells of the model's
  // finest partitioning assigned to the coordinates.
  const std::vector<geo::Continent> true_continent = countries.continents(data.coords);
  const std::vector<geo::LatLng> true_cell = true_cell_centers(fine, data.coords);
  auto from_coords = [&](const std::vector<geo::LatLng>& pred, std::vector<int> country = {}) {
    std::vector<geo::Continent> continent;
    if (country.empty()) {
      country = countries.country_codes(pred);
      continent = countries.continents(pred);
    } else {
      for (int code : country) continent.push_back(geo::continent_of_country(code));
    }
    const std::vector<geo::LatLng> cell = fine.cell_centers_of(pred);
    return geo::compute_metrics(pred, data.coords, eo.thresholds_km,
                                {.predicted_country = country,
                                 .true_country = data.country,
                                 .predicted_continent = continent,
                                 .true_continent = true_continent,
                                 .predicted_cell = cell,
                                 .true_cell = true_cell});
  };
  for (const auto& [name, m] : er.methods) {
    const std::string method = name == "cell"       ? "model"
                               : name == "hierarchy" ? "model_hierarchy"
                               : name == "centroid"  ? "model_centroid"
                               : name == "knn"       ? "model_knn"
                                                     : "model_" + name;
    record(method, m, er.scene_acc);
    js[method]["coverage"] = calibration_json_object(er)["coverage"][name];
  }
  if (er.calibration) metrics["calibration"][split] = to_json_object(*er.calibration);
  er.write_calibration((fs::path(c.out_dir) / ("calibration-" + split)).string(), split);
  if (regression) {
    const Predictor rp(*regression);
    std::vector<geo::LatLng> hav, mse;
    for (size_t start = 0; start < data.size(); start += 128) {
      const size_t m = std::min<size_t>(128, data.size() - start);
      const auto hp = rp.probabilities(eval_batch(*regression, data, start, m));
      for (int64_t i = 0; i < hp.n; ++i) {
        hav.push_back(regression_coordinate(hp.row("coords", i)));
        mse.push_back(regression_coordinate(hp.row("latlng", i)));
      }
    }
    record("model_regression_haversine", from_coords(hav), std::nullopt);
    record("model_regression_mse", from_coords(mse), std::nullopt);
  }
  // Baselines on the same split: uniform over the sphere (over the region for the grid preset: z =
  // sin(lat) uniform, longitude uniform), the most populous cell of the finest partitioning (or the
  // class with most training points), and the colour-histogram k-NN.
  size_t top = 0;
  for (size_t k = 1; k < fine.size(); ++k)
    if (fine.count(k) > fine.count(top)) top = k;
  random::Rng gen(c.seed * 7919 + si);
  std::mt19937_64& rng = gen.engine();
  const bool regional = preset.classes == Classes::EuropeFishnet;
  constexpr double kDeg = 3.14159265358979323846 / 180.0;
  std::uniform_real_distribution<double> uz(regional ? std::sin(kRegion[0] * kDeg) : -1.0,
                                            regional ? std::sin(kRegion[2] * kDeg) : 1.0),
      ul(regional ? kRegion[1] : -180.0, regional ? kRegion[3] : 180.0);
  std::vector<geo::LatLng> uniform(data.size()), top_cell(data.size(), fine.center(top)), colour(data.size());
  for (auto& p : uniform) p = {std::asin(uz(rng)) / kDeg, ul(rng)};
  const Tensor test_hist = histograms(data);
  PredictOptions po;
  detail::parallel_for(data.size(), [&](size_t i) {
    colour[i] = knn_coordinate(colour_index, test_hist.data<float>() + i * test_hist.dim(1), test_hist.dim(1), po);
  });
  record("random", from_coords(uniform), std::nullopt);
  record("top_cell", from_coords(top_cell), std::nullopt);
  record("color_knn", from_coords(colour), std::nullopt);
  if (preset.multiview) {
    // Several photos of each test place, their probabilities averaged (EUGuess).
    constexpr int kViews = 4;
    const Dataset multi = extra_views(*split_src[si], d.imagery, kViews);
    const Predictor pred(model, &countries);
    std::vector<geo::LatLng> coords;
    std::vector<int> country;
    for (size_t start = 0; start < data.size(); start += 64) {
      const size_t m = std::min<size_t>(64, data.size() - start);
      const auto hp = Predictor::aggregate(pred.probabilities(eval_batch(model, multi, start * kViews, m * kViews)), kViews);
      for (int64_t i = 0; i < hp.n; ++i) {
        const Prediction p = pred.decide(hp, i, eo.predict);  // one partitioning: the cell mean
        coords.push_back(p.coordinate);
        country.push_back(p.country);
      }
    }
    // the country from the country head, as for the single views
    record("model_multiview", from_coords(coords, country), std::nullopt);
  }
  std::snprintf(buf, sizeof buf, "\n%s (%zu views%s)\n", split.c_str(), data.size(),
                si == 0 ? "; renderings never seen in training, unseen regions" : "; training renderings, unseen regions");
  report += buf + geo::format_metrics_table(table, {.unit = c.unit});
  if (er.scene_acc) {
    std::snprintf(buf, sizeof buf, "scene accuracy (model): %.1f %%\n", 100.0 * *er.scene_acc);
    report += buf;
  }
  report += er.calibration_table();
  if (!maps) return;
  // Probability maps, with the truth: the first few views as they come, then the view the model
  // placed best (a hit) and the one at the median error (a typical miss), so that the maps show
  // both what the model does well and how it usually fails.
  const auto& best = er.predicted.count("hierarchy") ? er.predicted.at("hierarchy") : er.predicted.begin()->second;
  auto write_map = [&](size_t k, const std::string& title, const std::string& file) {
    viz::ProbabilityMapSpec ms;
    ms.title = title;
    ms.truth = data.coords[k];
    ms.prediction = best[k];
    ms.log_scale = true;
    ms.top_k = 3;
    maps->write((fs::path(c.out_dir) / "maps" / (file + ".png")).string(), er.probabilities.row(model.finest().name, k),
                ms);
  };
  for (int k = 0; k < c.maps && k < static_cast<int>(data.size()); ++k)
    write_map(static_cast<size_t>(k), split + " view " + std::to_string(k), split + "-" + std::to_string(k));
  std::vector<double> err(data.size());
  for (size_t i = 0; i < data.size(); ++i) err[i] = geo::haversine_km(best[i], data.coords[i]);
  std::vector<size_t> by_err(data.size());
  std::iota(by_err.begin(), by_err.end(), size_t{0});
  std::stable_sort(by_err.begin(), by_err.end(), [&](size_t a, size_t b) { return err[a] < err[b]; });
  const size_t hit = by_err.front(), median = by_err[by_err.size() / 2];
  const std::string n = std::to_string(data.size());
  write_map(hit, split + " view " + std::to_string(hit) + ": the best of " + n, split + "-best");
  write_map(median, split + " view " + std::to_string(median) + ": the median of " + n, split + "-median");
}

}  // namespace

DemoResult run_demo(const DemoConfig& c) {
  const auto t0 = Clock::now();
  const Preset& preset = find_preset(c.preset);
  Recipe r = recipe(c.size, c.seed);
  if (c.steps > 0) r.steps = c.steps;
  Device::parse(c.device);  // a bad device name fails before any work
  fs::create_directories(fs::path(c.out_dir) / "maps");

  const std::unique_ptr<DemoData> d = load_data(c, r);
  const TrainConfig tc = train_config(c, r);
  Preprocess pp;
  pp.resize = r.data.image_size;
  pp.crop = r.data.image_size;
  const double propagation_acc = propagate_scenes(c, r, tc, pp, *d);
  GeoModel model = train_model(c, preset, tc, pp, *d);
  GeoModel regression;
  if (preset.regression_heads) regression = train_regression_heads(c, r, tc, pp, model, d->train);

  say(c, "[5/6] indexing the training embeddings for k-NN\n");
  model.knn = build_knn_index(model, d->train);
  model.knn.save((fs::path(c.out_dir) / "knn.safetensors").string());

  say(c, "[6/6] evaluating on the two test splits\n");
  const KnnIndex colour_index = KnnIndex::build(histograms(d->train), d->train.coords);
  std::unique_ptr<viz::MapRenderer> maps;
  if (c.maps > 0)
    maps = std::make_unique<viz::MapRenderer>(*model.finest().partition,
                                              d->imagery.rendering(earth::Rendering::BlueMarbleJul).image());
  DemoResult out;
  nlohmann::json metrics;  // out.metrics, as text at the end
  metrics["preset"] = c.preset;
  metrics["size"] = c.size;
  metrics["scene_propagation_acc"] = propagation_acc;
  metrics["train_views"] = d->train.size();
  std::string report;
  const SplitEvaluation eval{c, preset, *d, model, preset.regression_heads ? &regression : nullptr, colour_index,
                             maps.get(), metrics, report};
  for (size_t si = 0; si < d->eval_sets.size(); ++si) eval.run(si);

  // ---- the report: metrics.json and the printed tables
  char buf[256];
  std::snprintf(buf, sizeof buf, "\nscene labels propagated to unlabelled training views: %.1f %% agree with the rule\n",
                100.0 * propagation_acc);
  report += buf;
  out.seconds = since(t0);
  metrics["seconds"] = out.seconds;
  out.metrics = metrics.dump(2);
  const std::string& mj = out.metrics;
  write_file_atomic((fs::path(c.out_dir) / "metrics.json").string(), [&](std::ostream& os) { os << mj << "\n"; }, false);
  std::snprintf(buf, sizeof buf,
                "\nwrote %s/: model.safetensors, knn.safetensors, metrics.json, training-curve.png/.json, maps/*.png, "
                "test-views.png, calibration-*.png/.json (%.0f s)\n",
                c.out_dir.c_str(), out.seconds);
  report += buf;
  out.report = report;
  return out;
}

}  // namespace geoloc::pipeline
