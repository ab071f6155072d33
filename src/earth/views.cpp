#include "geoloc/earth/views.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numbers>
#include <unordered_map>

#include "geoloc/error.hpp"
#include "geoloc/random.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::earth {
namespace {
constexpr double kPi = std::numbers::pi;

// Random-stream ids: each (split, purpose) pair draws from its own streams, so adding views to
// one split never changes another.
enum Split : uint64_t { kTrain = 0, kTestUnseen = 1, kTestSeen = 2 };
enum Purpose : uint64_t { kLocation = 1, kView = 2, kCategoryOrder = 3, kLabelledOrder = 4, kViewOrder = 5 };
uint64_t stream_id(Split s, Purpose p) { return static_cast<uint64_t>(s) * 16 + p; }


// A seeded Fisher-Yates permutation of [0, n).
std::vector<int> permutation(int n, random::StreamRng rng) {
  std::vector<int> p(n);
  for (int i = 0; i < n; ++i) p[i] = i;
  for (int i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(static_cast<uint64_t>(i) + 1)]);
  return p;
}

// Uniform on the sphere: uniform z and uniform longitude (Archimedes).
geo::LatLng uniform_on_sphere(random::StreamRng& rng) {
  const double z = rng.uniform(-1.0, 1.0);
  const double lng = rng.uniform(-180.0, 180.0);
  return {std::asin(z) * 180.0 / kPi, lng};
}

// Draws pixels of the night-lights raster with probability proportional to
// max(0, luma - floor)^gamma times the pixel's area (cos of its latitude), then a uniform point
// inside the pixel.
class LightsSampler {
 public:
  LightsSampler(const Raster& lights, double gamma, double floor) : w_(lights.width()), h_(lights.height()) {
    cdf_.resize(static_cast<size_t>(w_) * h_);
    double total = 0.0;
    const uint8_t* p = lights.data();
    for (int y = 0; y < h_; ++y) {
      const double area = std::cos((90.0 - (y + 0.5) * 180.0 / h_) * kPi / 180.0);
      for (int x = 0; x < w_; ++x) {
        const uint8_t* c = p + (static_cast<size_t>(y) * w_ + x) * 3;
        const double l = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0 - floor;
        if (l > 0.0) total += (gamma == 1.0 ? l : std::pow(l, gamma)) * area;
        cdf_[static_cast<size_t>(y) * w_ + x] = total;
      }
    }
    GEOLOC_CHECK(total > 0.0, ValueError, "night-lights raster has no pixel brighter than the floor ", floor);
  }
  geo::LatLng sample(random::StreamRng& rng) const {
    const double u = rng.uniform() * cdf_.back();
    const size_t i = std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
    const size_t k = std::min(i, cdf_.size() - 1);
    const int x = static_cast<int>(k % w_), y = static_cast<int>(k / w_);
    // Uniform in the pixel's area: uniform longitude, uniform sin(latitude).
    const double lat_top = 90.0 - y * 180.0 / h_, lat_bottom = 90.0 - (y + 1) * 180.0 / h_;
    const double z = rng.uniform(std::sin(lat_bottom * kPi / 180.0), std::sin(lat_top * kPi / 180.0));
    const double lng = -180.0 + (x + rng.uniform()) * 360.0 / w_;
    return {std::clamp(std::asin(z) * 180.0 / kPi, -90.0, 90.0), std::clamp(lng, -180.0, 180.0)};
  }

 private:
  int w_, h_;
  std::vector<double> cdf_;
};

// Points indexed by a uniform grid on their unit vectors with cells one separation-chord wide,
// so "is any point within d" looks at 27 cells, with no special case at the poles or the
// antimeridian.
class SeparationGrid {
 public:
  SeparationGrid(const std::vector<geo::LatLng>& points, double min_km) {
    chord_ = 2.0 * std::sin(min_km / (2.0 * geo::kEarthRadiusKm));
    if (chord_ <= 0.0) return;
    for (const auto& p : points) {
      const geo::Vec3 v = geo::to_unit(p);
      cells_[key(cell(v.x), cell(v.y), cell(v.z))].push_back(v);
    }
  }
  bool too_close(geo::LatLng p) const {
    if (chord_ <= 0.0 || cells_.empty()) return false;
    const geo::Vec3 v = geo::to_unit(p);
    const int cx = cell(v.x), cy = cell(v.y), cz = cell(v.z);
    const double c2 = chord_ * chord_;
    for (int dx = -1; dx <= 1; ++dx)
      for (int dy = -1; dy <= 1; ++dy)
        for (int dz = -1; dz <= 1; ++dz) {
          const auto it = cells_.find(key(cx + dx, cy + dy, cz + dz));
          if (it == cells_.end()) continue;
          for (const auto& u : it->second) {
            const double ex = u.x - v.x, ey = u.y - v.y, ez = u.z - v.z;
            if (ex * ex + ey * ey + ez * ez < c2) return true;
          }
        }
    return false;
  }

 private:
  int cell(double c) const { return static_cast<int>(std::floor((c + 1.0) / chord_)); }
  static uint64_t key(int x, int y, int z) {
    return (static_cast<uint64_t>(x + 1) << 42) ^ (static_cast<uint64_t>(y + 1) << 21) ^ static_cast<uint64_t>(z + 1);
  }
  double chord_ = 0.0;
  std::unordered_map<uint64_t, std::vector<geo::Vec3>> cells_;
};

// Test regions: the sphere is cut into cells of a 3-D grid on the unit vectors (about
// test_block_km across, no special case at the poles or the antimeridian), and a seeded hash
// makes a test_block_share of the cells test regions. Test locations are drawn only in test
// regions and training ones only outside, so both follow the same distribution: drawing test
// locations first and merely keeping training ones 50 km away would strip the big cities (where
// test locations cluster) from training.
class TestBlocks {
 public:
  TestBlocks(uint64_t seed, double block_km, double share)
      : seed_(random::mix64(seed ^ 0x7e57b10c5ULL)), side_(block_km / geo::kEarthRadiusKm), share_(share) {}
  bool is_test(geo::LatLng p) const {
    const geo::Vec3 v = geo::to_unit(p);
    uint64_t h = seed_;
    for (double c : {v.x, v.y, v.z}) h = random::mix64(h ^ static_cast<uint64_t>(static_cast<int64_t>(std::floor((c + 1.0) / side_))));
    return static_cast<double>(h >> 11) * 0x1.0p-53 < share_;
  }

 private:
  uint64_t seed_;
  double side_, share_;
};

struct Locations {
  std::vector<geo::LatLng> point;
  std::vector<LocationSource> source;
  std::vector<int> scene, country;
};

// Draws n locations of one split: exact counts per source in a seeded order, each location from
// its own stream, rejection to land / sea and, for training, away from the test locations.
Locations draw_locations(const EarthViewsConfig& cfg, Split split, int n, const LightsSampler& lights,
                         const geo::CountryIndex& countries, const TestBlocks& blocks,
                         const SeparationGrid* keep_away) {
  const double total = cfg.share_lights + cfg.share_land + cfg.share_sea;
  const int n_lights = static_cast<int>(std::lround(n * cfg.share_lights / total));
  const int n_sea = std::min(n - n_lights, static_cast<int>(std::lround(n * cfg.share_sea / total)));
  const std::vector<int> order = permutation(n, random::StreamRng(cfg.seed, stream_id(split, kCategoryOrder), 0));
  Locations out;
  out.point.resize(n);
  out.source.resize(n);
  for (int i = 0; i < n; ++i) {
    const int r = order[i];
    out.source[i] = r < n_lights ? LocationSource::Lights : r < n_lights + n_sea ? LocationSource::Sea
                                                                                : LocationSource::Land;
  }
  // Land is 29 % of the sphere and test regions ~20 % of it; 100000 tries only run out when the
  // configuration excludes nearly everything.
  constexpr int kMaxTries = 100000;
  parallel_for(static_cast<size_t>(n), 64, [&](size_t i) {
    random::StreamRng rng(cfg.seed, stream_id(split, kLocation), static_cast<uint64_t>(i));
    for (int t = 0; t < kMaxTries; ++t) {
      geo::LatLng p;
      switch (out.source[i]) {
        case LocationSource::Lights: p = lights.sample(rng); break;
        case LocationSource::Land:
          p = uniform_on_sphere(rng);
          if (!countries.is_land(p)) continue;
          break;
        case LocationSource::Sea:
          p = uniform_on_sphere(rng);
          if (countries.is_land(p)) continue;
          break;
      }
      if (blocks.is_test(p) != (split != kTrain)) continue;
      if (keep_away && keep_away->too_close(p)) continue;
      out.point[i] = p;
      return;
    }
    throw Error(detail::cat("Earth views: no location found for ", i, " after ", kMaxTries,
                            " tries (test_block_share = ", cfg.test_block_share, ", min_separation_km = ", cfg.min_separation_km,
                            " leave no room?)"));
  });
  return out;
}

void label_locations(Locations& loc, const EarthImagery& imagery, const geo::CountryIndex& countries) {
  const size_t n = loc.point.size();
  loc.scene.resize(n);
  parallel_for(n, 64, [&](size_t i) {
    loc.scene[i] = static_cast<int>(scene_at(imagery, countries, loc.point[i]));
  });
  loc.country = countries.country_codes(loc.point);
}

struct ViewSpec {
  int location;
  int rendering;
  float heading, fov;
};

void render_split(EarthSplit& out, const std::vector<ViewSpec>& specs, const Locations& loc,
                  const EarthImagery& imagery, int size, const ProgressFn& progress,
                  const std::string& stage) {
  const size_t n = specs.size();
  out.size = size;
  out.images.resize(n * static_cast<size_t>(size) * size * 3);
  out.location.resize(n);
  out.location_id.resize(n);
  out.rendering.resize(n);
  out.scene.resize(n);
  out.scene_truth.resize(n);
  out.country.resize(n);
  out.source.resize(n);
  out.heading_deg.resize(n);
  out.fov_km.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const ViewSpec& s = specs[i];
    out.location[i] = loc.point[s.location];
    out.location_id[i] = s.location;
    out.rendering[i] = s.rendering;
    out.scene_truth[i] = out.scene[i] = loc.scene[s.location];
    out.country[i] = loc.country[s.location];
    out.source[i] = loc.source[s.location];
    out.heading_deg[i] = s.heading;
    out.fov_km[i] = s.fov;
  }
  const size_t bytes = out.view_bytes();
  // Chunks so that progress is reported from this thread; each view is independent of chunking.
  // Each task of 16 views has its own scratch (2 floats a pixel, a few tens of KB).
  constexpr size_t kChunk = 2048, kTask = 16;
  for (size_t begin = 0; begin < n; begin += kChunk) {
    const size_t end = std::min(n, begin + kChunk);
    run_tasks(static_cast<int64_t>((end - begin + kTask - 1) / kTask), [&](int64_t t) {
      std::vector<float> scratch(2 * static_cast<size_t>(size) * size);
      const size_t i0 = begin + static_cast<size_t>(t) * kTask, i1 = std::min(end, i0 + kTask);
      for (size_t i = i0; i < i1; ++i) {
        const ViewFrame frame = view_frame({out.location[i], out.heading_deg[i], out.fov_km[i]});
        render_view(imagery.rendering(out.rendering[i]), frame, size, size, out.images.data() + i * bytes,
                    scratch.data());
      }
    });
    if (progress) progress(stage, static_cast<double>(end) / n);
  }
}

ViewSpec view_spec(const EarthViewsConfig& cfg, random::StreamRng& rng, int location, int rendering) {
  const float heading = static_cast<float>(rng.uniform(0.0, 360.0));
  const float fov = static_cast<float>(rng.uniform(cfg.fov_km_min, cfg.fov_km_max));
  return {location, rendering, heading, fov};
}
}  // namespace

// ---------------------------------------------------------------- config
EarthViewsConfig EarthViewsConfig::quick() {
  EarthViewsConfig c;
  c.image_size = 48;
  c.train_locations = 1500;
  c.views_per_train_location = 2;
  c.test_unseen_rendering = 500;
  c.test_seen_rendering = 500;
  return c;
}
EarthViewsConfig EarthViewsConfig::default_() { return {}; }
EarthViewsConfig EarthViewsConfig::large() {
  EarthViewsConfig c;
  c.train_locations = 50000;
  c.views_per_train_location = 4;
  c.test_unseen_rendering = 5000;
  c.test_seen_rendering = 5000;
  return c;
}

void EarthViewsConfig::validate() const {
  GEOLOC_CHECK(image_size >= 4 && image_size <= 1024, ValueError, "EarthViewsConfig.image_size ", image_size,
               " is outside [4, 1024]");
  GEOLOC_CHECK(train_locations >= 1, ValueError, "EarthViewsConfig.train_locations ", train_locations, " < 1");
  GEOLOC_CHECK(views_per_train_location >= 1, ValueError, "EarthViewsConfig.views_per_train_location ",
               views_per_train_location, " < 1");
  GEOLOC_CHECK(test_unseen_rendering >= 0 && test_seen_rendering >= 0, ValueError,
               "EarthViewsConfig: negative test size (", test_unseen_rendering, ", ", test_seen_rendering, ")");
  GEOLOC_CHECK(fov_km_min > 0.0 && fov_km_min <= fov_km_max && fov_km_max < 10000.0, ValueError,
               "EarthViewsConfig: fov range [", fov_km_min, ", ", fov_km_max, "] km must satisfy 0 < min <= max < 10000");
  for (double s : {share_lights, share_land, share_sea})
    GEOLOC_CHECK(s >= 0.0 && std::isfinite(s), ValueError, "EarthViewsConfig: share ", s, " is negative or not finite");
  GEOLOC_CHECK(share_lights + share_land + share_sea > 0.0, ValueError, "EarthViewsConfig: the shares sum to 0");
  GEOLOC_CHECK(lights_gamma > 0.0 && lights_floor >= 0.0 && lights_floor < 1.0, ValueError,
               "EarthViewsConfig: lights_gamma ", lights_gamma, " must be > 0 and lights_floor ", lights_floor,
               " in [0, 1)");
  GEOLOC_CHECK(labelled_share >= 0.0 && labelled_share <= 1.0, ValueError, "EarthViewsConfig.labelled_share ",
               labelled_share, " is outside [0, 1]");
  GEOLOC_CHECK(min_separation_km >= 0.0 && min_separation_km < 2000.0, ValueError,
               "EarthViewsConfig.min_separation_km ", min_separation_km, " is outside [0, 2000)");
  GEOLOC_CHECK(test_block_km >= 10.0 && test_block_km <= 5000.0, ValueError, "EarthViewsConfig.test_block_km ",
               test_block_km, " is outside [10, 5000]");
  GEOLOC_CHECK(test_block_share > 0.0 && test_block_share < 1.0, ValueError, "EarthViewsConfig.test_block_share ",
               test_block_share, " is outside (0, 1)");
  std::array<bool, kNumRenderings> held{};
  for (int r : held_out_renderings) {
    GEOLOC_CHECK(r >= 0 && r < kNumRenderings, ValueError, "EarthViewsConfig.held_out_renderings: id ", r,
                 " is outside [0, ", kNumRenderings, ")");
    GEOLOC_CHECK(!held[r], ValueError, "EarthViewsConfig.held_out_renderings: id ", r, " is listed twice");
    held[r] = true;
  }
  const int n_held = static_cast<int>(held_out_renderings.size());
  GEOLOC_CHECK(n_held >= 1 && n_held < kNumRenderings, ValueError,
               "EarthViewsConfig.held_out_renderings: need between 1 and ", kNumRenderings - 1, " ids, got ",
               n_held);
}

// ---------------------------------------------------------------- building
EarthViews build_earth_views(const EarthViewsConfig& cfg, const EarthImagery& imagery,
                             const geo::CountryIndex& countries, const ProgressFn& progress) {
  cfg.validate();
  const auto t0 = std::chrono::steady_clock::now();
  EarthViews out;
  out.config = cfg;
  std::vector<int> held = cfg.held_out_renderings;
  std::sort(held.begin(), held.end());
  for (int r = 0; r < kNumRenderings; ++r)
    if (!std::binary_search(held.begin(), held.end(), r)) out.train_renderings.push_back(r);
  const int n_train_r = static_cast<int>(out.train_renderings.size());

  if (progress) progress("locations", 0.0);
  const LightsSampler lights(imagery.night_lights(), cfg.lights_gamma, cfg.lights_floor);
  const TestBlocks blocks(cfg.seed, cfg.test_block_km, cfg.test_block_share);
  Locations unseen =
      draw_locations(cfg, kTestUnseen, cfg.test_unseen_rendering, lights, countries, blocks, nullptr);
  Locations seen = draw_locations(cfg, kTestSeen, cfg.test_seen_rendering, lights, countries, blocks, nullptr);
  std::vector<geo::LatLng> test_points = unseen.point;
  test_points.insert(test_points.end(), seen.point.begin(), seen.point.end());
  const SeparationGrid keep_away(test_points, cfg.min_separation_km);
  Locations train =
      draw_locations(cfg, kTrain, cfg.train_locations, lights, countries, blocks, &keep_away);
  if (progress) progress("locations", 1.0);

  if (progress) progress("labels", 0.0);
  for (Locations* l : {&unseen, &seen, &train}) label_locations(*l, imagery, countries);
  if (progress) progress("labels", 1.0);

  // Training: views_per_train_location views per location, on distinct training renderings while
  // there are enough of them.
  std::vector<ViewSpec> train_specs;
  train_specs.reserve(static_cast<size_t>(cfg.train_locations) * cfg.views_per_train_location);
  for (int l = 0; l < cfg.train_locations; ++l) {
    random::StreamRng rng(cfg.seed, stream_id(kTrain, kView), static_cast<uint64_t>(l));
    const std::vector<int> order = permutation(n_train_r, random::StreamRng(cfg.seed, stream_id(kTrain, kViewOrder), l));
    for (int v = 0; v < cfg.views_per_train_location; ++v)
      train_specs.push_back(view_spec(cfg, rng, l, out.train_renderings[order[v % n_train_r]]));
  }
  std::vector<ViewSpec> unseen_specs, seen_specs;
  for (int l = 0; l < cfg.test_unseen_rendering; ++l) {
    random::StreamRng rng(cfg.seed, stream_id(kTestUnseen, kView), static_cast<uint64_t>(l));
    const int r = held[rng.below(held.size())];
    unseen_specs.push_back(view_spec(cfg, rng, l, r));
  }
  for (int l = 0; l < cfg.test_seen_rendering; ++l) {
    random::StreamRng rng(cfg.seed, stream_id(kTestSeen, kView), static_cast<uint64_t>(l));
    const int r = out.train_renderings[rng.below(out.train_renderings.size())];
    seen_specs.push_back(view_spec(cfg, rng, l, r));
  }

  out.train.name = "train";
  out.test_unseen_rendering.name = "test_unseen_rendering";
  out.test_seen_rendering.name = "test_seen_rendering";
  render_split(out.train, train_specs, train, imagery, cfg.image_size, progress, "render train");
  render_split(out.test_unseen_rendering, unseen_specs, unseen, imagery, cfg.image_size, progress,
               "render test_unseen_rendering");
  render_split(out.test_seen_rendering, seen_specs, seen, imagery, cfg.image_size, progress,
               "render test_seen_rendering");

  // Scene labels for a seeded share of the training locations (all views of a location alike).
  const int n_labelled = static_cast<int>(std::lround(cfg.labelled_share * cfg.train_locations));
  const std::vector<int> order =
      permutation(cfg.train_locations, random::StreamRng(cfg.seed, stream_id(kTrain, kLabelledOrder), 0));
  std::vector<char> labelled(cfg.train_locations, 0);
  for (int i = 0; i < n_labelled; ++i) labelled[order[i]] = 1;
  for (size_t i = 0; i < out.train.n(); ++i)
    if (!labelled[out.train.location_id[i]]) out.train.scene[i] = -1;

  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

EarthViews build_earth_views(const EarthViewsConfig& config, const ProgressFn& progress) {
  config.validate();
  if (progress) progress("load", 0.0);
  const EarthImagery imagery = EarthImagery::load();
  const geo::CountryIndex countries = geo::CountryIndex::load_default();
  if (progress) progress("load", 1.0);
  return build_earth_views(config, imagery, countries, progress);
}

// ---------------------------------------------------------------- tensors and features
Tensor EarthSplit::images_u8() const {
  Tensor t = Tensor::empty({static_cast<int64_t>(n()), size, size, 3}, DType::U8);
  if (!images.empty()) std::memcpy(t.data<uint8_t>(), images.data(), images.size());
  return t;
}

Tensor normalised_batch(const EarthSplit& split, const std::vector<size_t>& indices,
                        const image::Normalization& norm) {
  GEOLOC_CHECK(!indices.empty(), ValueError, "normalised_batch: no views requested from ", split.name);
  for (size_t i : indices)
    GEOLOC_CHECK(i < split.n(), ValueError, "normalised_batch: view ", i, " is outside ", split.name, " (",
                 split.n(), " views)");
  // The views as images, normalised and packed by the one image-to-tensor path (image::pack_batch).
  std::vector<image::Image> imgs(indices.size());
  for (size_t b = 0; b < indices.size(); ++b) {
    imgs[b] = image::Image(split.size, split.size);
    std::memcpy(imgs[b].pixels.data(), split.view(indices[b]), split.view_bytes());
  }
  return image::pack_batch(imgs, norm);
}

Tensor normalised_batch(const EarthSplit& split, size_t begin, size_t count, const image::Normalization& norm) {
  GEOLOC_CHECK(begin + count <= split.n(), ValueError, "normalised_batch: views [", begin, ", ", begin + count,
               ") exceed ", split.name, " (", split.n(), " views)");
  std::vector<size_t> idx(count);
  for (size_t i = 0; i < count; ++i) idx[i] = begin + i;
  return normalised_batch(split, idx, norm);
}

std::vector<float> colour_histogram(const uint8_t* view, int width, int height, int bins) {
  GEOLOC_CHECK(bins >= 1 && bins <= 16, ValueError, "colour_histogram: bins ", bins, " is outside [1, 16]");
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "colour_histogram: size ", width, "x", height);
  std::vector<float> h(static_cast<size_t>(bins) * bins * bins, 0.f);
  const int n = width * height;
  for (int i = 0; i < n; ++i) {
    const int r = view[i * 3] * bins >> 8, g = view[i * 3 + 1] * bins >> 8, b = view[i * 3 + 2] * bins >> 8;
    h[(r * bins + g) * bins + b] += 1.f;
  }
  for (float& v : h) v /= static_cast<float>(n);
  return h;
}

Tensor colour_histograms(const EarthSplit& split, int bins) {
  GEOLOC_CHECK(split.n() > 0, ValueError, "colour_histograms: ", split.name, " is empty");
  const int64_t d = static_cast<int64_t>(bins) * bins * bins;
  Tensor t = Tensor::empty({static_cast<int64_t>(split.n()), d});
  float* out = t.data<float>();
  parallel_for(split.n(), 64, [&](size_t i) {
    const std::vector<float> h = colour_histogram(split.view(i), split.size, split.size, bins);
    std::copy(h.begin(), h.end(), out + static_cast<int64_t>(i) * d);
  });
  return t;
}

void save_contact_sheet(const EarthSplit& split, const std::vector<size_t>& indices, const std::string& path,
                        int cols, int scale) {
  GEOLOC_CHECK(!indices.empty(), ValueError, "save_contact_sheet: no views");
  GEOLOC_CHECK(cols >= 1 && scale >= 1 && scale <= 16, ValueError, "save_contact_sheet: cols ", cols, " and scale ",
               scale, " must be >= 1 (scale <= 16)");
  for (size_t i : indices)
    GEOLOC_CHECK(i < split.n(), ValueError, "save_contact_sheet: view ", i, " is outside ", split.name, " (",
                 split.n(), " views)");
  constexpr int kGap = 2;
  const int cell = split.size * scale;
  const int n = static_cast<int>(indices.size());
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols;
  image::Image sheet(cols * cell + (cols + 1) * kGap, rows * cell + (rows + 1) * kGap);
  std::fill(sheet.pixels.begin(), sheet.pixels.end(), uint8_t{255});  // white gaps
  for (int k = 0; k < n; ++k) {
    const uint8_t* v = split.view(indices[k]);
    const int ox = kGap + (k % cols) * (cell + kGap), oy = kGap + (k / cols) * (cell + kGap);
    for (int y = 0; y < cell; ++y)
      for (int x = 0; x < cell; ++x)
        std::memcpy(sheet.at(ox + x, oy + y), v + (static_cast<size_t>(y / scale) * split.size + x / scale) * 3, 3);
  }
  image::write_png(path, sheet);
}

void save_contact_sheet(const EarthSplit& split, const std::string& path, int count, int cols, int scale) {
  GEOLOC_CHECK(count >= 1, ValueError, "save_contact_sheet: count ", count, " < 1");
  std::vector<size_t> idx(std::min<size_t>(static_cast<size_t>(count), split.n()));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  return save_contact_sheet(split, idx, path, cols, scale);
}

}  // namespace geoloc::earth
