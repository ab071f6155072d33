#pragma once
// "Earth views": an embedded geolocation data set rendered from NASA whole-Earth imagery.
// Each sample is a small RGB "photo" of the Earth seen from above around a location (one of eight
// renderings, random heading and field of view), with its location, rendering, scene and country.
// See docs/earth-views.md for the sampling, the splits and the label rules.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "geoloc/earth/imagery.hpp"
#include "geoloc/earth/projection.hpp"
#include "geoloc/earth/scene.hpp"
#include "geoloc/geo/coords.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/random.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::earth {

struct EarthViewsConfig {
  uint64_t seed = 0;
  int image_size = 64;  // views are image_size x image_size RGB
  int train_locations = 10000;
  int views_per_train_location = 2;  // each on a different training rendering
  int test_unseen_rendering = 1000;  // one view per location, held-out rendering, held-out location
  int test_seen_rendering = 1000;    // one view per location, training rendering, held-out location
  double fov_km_min = 400.0;  // width of a view on the ground, uniform in [min, max]
  double fov_km_max = 1000.0;
  // Where locations come from (normalised if they do not sum to 1): night lights (where people
  // live and take pictures), uniform over land, uniform over sea. Exact counts per split.
  double share_lights = 0.6;
  double share_land = 0.3;
  double share_sea = 0.1;
  double lights_gamma = 1.0;      // per-pixel weight: max(0, luma - lights_floor)^gamma * cos(lat)
  double lights_floor = 0.05;     // night-lights background (JPEG noise on black) that is not a light
  std::vector<int> held_out_renderings{static_cast<int>(Rendering::BlueMarbleMar),
                                       static_cast<int>(Rendering::OpenUniverse)};
  double labelled_share = 0.3;        // share of training locations with a scene label (others: -1)
  // Test locations come from test regions (grid cells about test_block_km across, a seeded
  // test_block_share of them), training ones from the rest, so both have the same distribution;
  // on top, no training location is closer than min_separation_km to any test location.
  double test_block_km = 300.0;
  double test_block_share = 0.2;
  double min_separation_km = 50.0;

  /// ~3k training views, 500 + 500 test views, 48x48: the demo's --quick run (well under 1 s to build).
  static EarthViewsConfig quick();
  /// 20k training views (10k locations x 2), 1000 + 1000 test views, 64x64.
  static EarthViewsConfig default_();
  /// 200k training views (50k locations x 4), 5000 + 5000 test views, 64x64: for GPUs.
  static EarthViewsConfig large();
  /// ValueError naming the first bad field.
  void validate() const;
};

/// Where a location was drawn from.
enum class LocationSource : int8_t { Lights = 0, Land = 1, Sea = 2 };

/// One split: n views, all arrays of length n, images contiguous [n, size, size, 3] uint8 (HWC).
struct EarthSplit {
  std::string name;
  int size = 0;
  std::vector<uint8_t> images;
  std::vector<geo::LatLng> location;
  std::vector<int> location_id;   // views of one location share it (ids are per split)
  std::vector<int> rendering;     // 0..7, see Rendering
  std::vector<int> scene;         // 0..6 (see Scene), or -1 where not given (unlabelled training locations)
  std::vector<int> scene_truth;   // the rule's label for every view; for evaluating label propagation
                                  // only: a trainer must learn from `scene`, never from this
  std::vector<int> country;       // ISO 3166-1 numeric, -1 at sea or where Natural Earth has none
  std::vector<LocationSource> source;
  std::vector<float> heading_deg;
  std::vector<float> fov_km;

  size_t n() const { return location.size(); }
  const uint8_t* view(size_t i) const { return images.data() + i * static_cast<size_t>(size) * size * 3; }
  size_t view_bytes() const { return static_cast<size_t>(size) * size * 3; }
  /// The images as a CPU U8 tensor [n, size, size, 3] (copies).
  Tensor images_u8() const;
};

struct EarthViews {
  EarthViewsConfig config;
  EarthSplit train, test_unseen_rendering, test_seen_rendering;
  std::vector<int> train_renderings;  // the renderings training views use
  double seconds = 0.0;               // wall time of build_earth_views (without loading the rasters)
};

/// Progress: stage name and the fraction (0..1) of that stage done.
using ProgressFn = std::function<void(std::string_view stage, double fraction)>;

/// Builds the data set from rasters and polygons already loaded, on geoloc's thread pool
/// (geoloc::set_num_threads). Deterministic: the same config gives the same bytes for any number of
/// threads (every location and view has its own random stream derived from (seed, split, index)).
/// ValueError for a bad config; Error when the separation constraint leaves no room for a training
/// location.
EarthViews build_earth_views(const EarthViewsConfig& config, const EarthImagery& imagery,
                             const geo::CountryIndex& countries, const ProgressFn& progress = {});
/// Same, loading EarthImagery::load() and CountryIndex::load_default() first.
EarthViews build_earth_views(const EarthViewsConfig& config, const ProgressFn& progress = {});

/// Views [begin, begin + count) of a split as a normalised F32 NHWC tensor ((x / 255 - mean) / std),
/// packed by image::pack_batch.
Tensor normalised_batch(const EarthSplit& split, size_t begin, size_t count,
                        const image::Normalization& norm = image::imagenet_normalization());
/// Same for arbitrary indices (a shuffled mini-batch).
Tensor normalised_batch(const EarthSplit& split, const std::vector<size_t>& indices,
                        const image::Normalization& norm = image::imagenet_normalization());

/// Joint RGB histogram of one view (bins^3 cells, channel value v goes to bin v * bins / 256),
/// L1-normalised: the colour-kNN baseline's feature. ValueError unless 1 <= bins <= 16.
std::vector<float> colour_histogram(const uint8_t* view, int width, int height, int bins = 4);
/// colour_histogram of every view of a split: F32 [n, bins^3].
Tensor colour_histograms(const EarthSplit& split, int bins = 4);

/// Writes the first `count` views (or all, if fewer) of a split as a PNG grid with `cols` columns,
/// each view scaled up `scale` times (nearest) with a 2-pixel gap. Atomic (write_file_atomic).
void save_contact_sheet(const EarthSplit& split, const std::string& path, int count = 32, int cols = 8,
                        int scale = 2);
/// Same for chosen views.
void save_contact_sheet(const EarthSplit& split, const std::vector<size_t>& indices, const std::string& path,
                        int cols = 8, int scale = 2);


}  // namespace geoloc::earth
