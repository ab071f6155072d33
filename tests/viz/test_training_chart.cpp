#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/viz/training_chart.hpp"

using namespace geoloc::viz;
namespace fs = std::filesystem;

TEST_CASE("training chart: the total, then each head by name over the points that have it") {
  const std::vector<LossPoint> curve = {{1, 3.0, {{"scene", 1.0}, {"coarse", 2.0}}},
                                        {2, 2.5, {{"coarse", 1.5}}},
                                        {4, 2.0, {{"scene", 0.5}, {"coarse", 1.25}}}};
  const ChartSpec spec = training_loss_chart(curve);
  CHECK(spec.title == "training loss");
  CHECK(spec.x_label == "step");
  CHECK(spec.y_label == "loss");
  REQUIRE(spec.series.size() == 3);
  CHECK(spec.series[0].name == "total");
  CHECK(spec.series[0].x == std::vector<double>{1, 2, 4});
  CHECK(spec.series[0].y == std::vector<double>{3.0, 2.5, 2.0});
  CHECK(spec.series[1].name == "coarse");
  CHECK(spec.series[1].x == std::vector<double>{1, 2, 4});
  CHECK(spec.series[1].y == std::vector<double>{2.0, 1.5, 1.25});
  CHECK(spec.series[2].name == "scene");
  CHECK(spec.series[2].x == std::vector<double>{1, 4});
  CHECK(spec.series[2].y == std::vector<double>{1.0, 0.5});

  const std::string path = (fs::temp_directory_path() / "geoloc_viz_test_training_chart.png").string();
  fs::remove(path);
  write_training_chart(path, curve);
  CHECK(geoloc::image::decode_file(path) == render_line_chart(spec));
  fs::remove(path);
  CHECK_THROWS_AS(write_training_chart("/nonexistent-geoloc-dir/curve.png", curve), geoloc::IoError);
  // no points: the frame alone
  CHECK(training_loss_chart({}).series.size() == 1);
}
