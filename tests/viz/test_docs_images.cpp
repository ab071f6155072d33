// Renders the example images of docs/img/ when GEOLOC_VIZ_DOCS_DIR names a folder (otherwise the
// case does nothing), so that the pictures in the documentation are reproducible from the code:
//   GEOLOC_VIZ_DOCS_DIR=docs/img build/tests/geoloc_viz_tests -tc='docs*'
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "geoloc/geo/countries.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/geo/synthetic.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/viz/chart.hpp"
#include "geoloc/viz/probability_map.hpp"

using namespace geoloc;
using namespace geoloc::viz;

namespace {

// Plausible training curves: per-head cross-entropies decaying towards floors set by the number of
// classes of each head, with step noise, and their sum.
ChartSpec example_curves() {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 1.0);
  const int steps = 3000, every = 10;
  const double start[3] = {5.5, 6.4, 8.6}, floor_[3] = {1.6, 2.9, 3.5}, tau[3] = {500, 700, 900};
  const char* names[3] = {"coarse", "middle", "fine"};
  std::vector<double> x;
  std::vector<std::vector<double>> heads(3);
  for (int s = 0; s <= steps; s += every) {
    x.push_back(s);
    for (int h = 0; h < 3; ++h)
      heads[h].push_back(floor_[h] + (start[h] - floor_[h]) * std::exp(-s / tau[h]) + 0.12 * noise(rng));
  }
  // A logging hiccup: a few steps without values, drawn as a gap.
  for (int h = 0; h < 3; ++h)
    for (int i = 120; i < 126; ++i) heads[h][i] = NAN;
  ChartSpec spec;
  spec.title = "Training loss per head";
  spec.x_label = "step";
  spec.y_label = "cross-entropy (EMA 0.8)";
  spec.width = 800;
  spec.height = 480;
  std::vector<double> total(x.size());
  for (size_t i = 0; i < x.size(); ++i) total[i] = heads[0][i] + heads[1][i] + heads[2][i];
  spec.series.push_back({"mean of heads", x, {}, std::nullopt, 2.5});
  for (size_t i = 0; i < x.size(); ++i) total[i] /= 3;
  spec.series[0].y = ema_smooth(total, 0.8);
  for (int h = 0; h < 3; ++h)
    spec.series.push_back({names[h], x, ema_smooth(heads[h], 0.8), std::nullopt, 1.5});
  return spec;
}

}  // namespace

TEST_CASE("docs: example images (only with GEOLOC_VIZ_DOCS_DIR)") {
  const char* dir = std::getenv("GEOLOC_VIZ_DOCS_DIR");
  if (!dir || !*dir) return;
  const std::string out(dir);
  std::filesystem::create_directories(out);

  write_line_chart(out + "/example_curve.png", example_curves());

  // An adaptive S2 partition of synthetic photo locations, and a prediction that hesitates between
  // western Europe and the US east coast; the photo was taken in Barcelona.
  geo::AdaptiveOptions opt;
  opt.min_level = 2;
  opt.max_level = 12;
  opt.tau_min = 30;
  opt.tau_max = {1500};
  const auto points = geo::synthetic_points(150000, 11);
  const geo::CellPartition part = geo::build_adaptive_partitions(points, opt).at(0);
  const geo::LatLng paris{48.8566, 2.3522}, second{40.7128, -74.0060};
  const geo::LatLng truth{41.3874, 2.1686};
  std::vector<float> logits(part.size());
  for (size_t c = 0; c < part.size(); ++c) {
    const double d1 = geo::haversine_km(part.center(c), paris),
                 d2 = geo::haversine_km(part.center(c), second);
    logits[c] = static_cast<float>(std::max(-d1 / 350.0, -0.6 - d2 / 500.0));
  }
  float mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (float& l : logits) sum += (l = std::exp(l - mx));
  for (float& l : logits) l /= sum;

  // 800x400 over a 512x256 copy of the background keeps the committed PNG under 300 KB
  // (photographic detail does not compress); the library draws on the full-resolution picture.
  const image::Image earth = image::resize(image::decode_file(default_background_path()), 512, 256);
  const auto t0 = std::chrono::steady_clock::now();
  MapRenderer renderer(part, earth, 800, 400);
  const auto t1 = std::chrono::steady_clock::now();
  ProbabilityMapSpec spec;
  spec.title = "Where was this photo taken?";
  spec.text_scale = 2;
  spec.truth = truth;
  spec.log_scale = true;
  spec.log_decades = 3;
  spec.top_k = 3;
  const auto t2 = std::chrono::steady_clock::now();
  const image::Image map = renderer.render(logits, spec);
  const auto t3 = std::chrono::steady_clock::now();
  image::write_png(out + "/example_probability_map.png", map);
  using ms = std::chrono::duration<double, std::milli>;
  MESSAGE(part.size(), " cells: class map ", ms(t1 - t0).count(), " ms once, then ", ms(t3 - t2).count(),
          " ms per map");
  MESSAGE("wrote example images to ", out);
}
