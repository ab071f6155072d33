#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/viz/chart.hpp"

using namespace geoloc::viz;
namespace fs = std::filesystem;

namespace {

constexpr Color kRed{255, 0, 0};

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("geoloc_viz_test_" + name)).string();
}

size_t count_color(const geoloc::image::Image& img, Color c) {
  size_t n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const uint8_t* p = img.at(x, y);
      n += p[0] == c.r && p[1] == c.g && p[2] == c.b;
    }
  return n;
}

// Runs of consecutive columns that contain colour c.
int column_runs(const geoloc::image::Image& img, Color c) {
  int runs = 0;
  bool prev = false;
  for (int x = 0; x < img.width; ++x) {
    bool any = false;
    for (int y = 0; y < img.height && !any; ++y) {
      const uint8_t* p = img.at(x, y);
      any = p[0] == c.r && p[1] == c.g && p[2] == c.b;
    }
    runs += any && !prev;
    prev = any;
  }
  return runs;
}

void check_ticks(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
}

}  // namespace

TEST_CASE("nice_ticks: 1-2-5 steps that cover the range") {
  check_ticks(nice_ticks(0, 0.93), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  check_ticks(nice_ticks(0, 100), {0, 20, 40, 60, 80, 100});
  check_ticks(nice_ticks(-1, 1), {-1, -0.5, 0, 0.5, 1});
  check_ticks(nice_ticks(3, 3), {2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3});  // a flat series gets a band around it
  check_ticks(nice_ticks(0, 0), {-1, -0.5, 0, 0.5, 1});
  check_ticks(nice_ticks(0.93, 0), {0, 0.2, 0.4, 0.6, 0.8, 1.0});  // reversed bounds are swapped
  CHECK(nice_ticks(0, 0.6)[6] == 0.6);  // exactly: not 6 * 0.1 = 0.6000000000000001
  CHECK(nice_ticks(0, 0.93)[3] == 0.6);

  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mant(-1, 1), expo(-6, 6);
  for (int trial = 0; trial < 500; ++trial) {
    const double a = mant(rng) * std::pow(10, expo(rng)),
                 b = a + std::abs(mant(rng)) * std::pow(10, expo(rng));
    // Ranges narrower than a millionth of their magnitude are below what a chart can show, and
    // the step measured below would be float noise.
    if (b - a < 1e-6 * std::max(std::abs(a), std::abs(b))) continue;
    const auto t = nice_ticks(a, b);
    REQUIRE(t.size() >= 2);
    CHECK(t.size() <= 12);
    const double tol = 1e-6 * (t[1] - t[0]);  // sub-noise overshoot of a bound is allowed
    CHECK(t.front() <= a + tol);
    CHECK(t.back() >= b - tol);
    const double step = t[1] - t[0];
    const double f = step / std::pow(10, std::floor(std::log10(step) + 1e-9));
    CHECK_MESSAGE((std::abs(f - 1) < 1e-6 || std::abs(f - 2) < 1e-6 || std::abs(f - 5) < 1e-6), "step ", step,
                  " for ", a, " .. ", b);
  }
  CHECK_THROWS_AS(nice_ticks(0, NAN), geoloc::ValueError);
  CHECK_THROWS_AS(nice_ticks(0, 1, 1), geoloc::ValueError);
}

TEST_CASE("log_ticks: decades, with 2 and 5 on short ranges, thinned on long ones") {
  check_ticks(log_ticks(0.5, 5), {0.1, 0.2, 0.5, 1, 2, 5, 10});
  check_ticks(log_ticks(1e-5, 1), {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1});
  check_ticks(log_ticks(1, 1), {0.1, 0.2, 0.5, 1, 2, 5, 10});
  check_ticks(log_ticks(1e-12, 1e6), {1e-12, 1e-9, 1e-6, 1e-3, 1, 1e3, 1e6});
  CHECK_THROWS_AS(log_ticks(0, 1), geoloc::ValueError);
  CHECK_THROWS_AS(log_ticks(2, 1), geoloc::ValueError);
}

TEST_CASE("tick labels") {
  CHECK(format_tick(0.6000000000000001, 0.2) == "0.6");
  CHECK(format_tick(1.0, 0.2) == "1.0");
  CHECK(format_tick(0.05, 0.05) == "0.05");
  CHECK(format_tick(-0.4, 0.2) == "-0.4");
  CHECK(format_tick(-1e-17, 0.2) == "0");
  CHECK(format_tick(5, 1) == "5");
  CHECK(format_tick(1500, 500) == "1500");
  CHECK(format_tick(20000, 5000) == "20k");
  CHECK(format_tick(2500, 500) == "2500");
  CHECK(format_tick(2e6, 1e6) == "2M");
  CHECK(format_tick(3e-4, 1e-4) == "3e-4");
  CHECK(format_tick(1.2e-3, 2e-4) == "1.2e-3");
  CHECK(format_tick(1e-3, 1e-4) == "1e-3");
  CHECK(format_log_tick(0.01) == "0.01");
  CHECK(format_log_tick(1) == "1");
  CHECK(format_log_tick(200) == "200");
  CHECK(format_log_tick(1e-5) == "1e-5");
  CHECK(format_log_tick(2e6) == "2e6");
  CHECK_THROWS_AS(format_tick(1, 0), geoloc::ValueError);
}

TEST_CASE("ema_smooth: bias-corrected, NaN-transparent") {
  const std::vector<double> y = {1, NAN, 3};
  const auto s = ema_smooth(y, 0.5);
  CHECK(s[0] == doctest::Approx(1.0));
  CHECK(std::isnan(s[1]));
  CHECK(s[2] == doctest::Approx((0.25 * 1 + 0.5 * 3) / 0.75));
  CHECK(ema_smooth(y, 0.0)[2] == 3.0);
  CHECK_THROWS_AS(ema_smooth(y, 1.0), geoloc::ValueError);
}

TEST_CASE("line chart: PNG of the requested size with the series colour in the plot area") {
  ChartSpec spec;
  spec.title = "Training loss";
  spec.x_label = "step";
  spec.y_label = "loss";
  spec.width = 480;
  spec.height = 300;
  Series s{"total", {}, {}, kRed, 2.0};
  for (int i = 0; i <= 100; ++i) s.x.push_back(i * 10), s.y.push_back(3.0 * std::exp(-i / 30.0) + 0.2);
  spec.series.push_back(s);
  spec.series.push_back(Series{"other", {0, 1000}, {1, 2}, std::nullopt, 2.0});

  const std::string path = temp_path("chart.png");
  fs::remove(path);
  write_line_chart(path, spec);
  const auto img = geoloc::image::decode_file(path);
  CHECK(img.width == 480);
  CHECK(img.height == 300);
  CHECK(img == render_line_chart(spec));  // deterministic
  // The curve is drawn in its colour, and only inside the plot area (not in the margins).
  CHECK(count_color(img, kRed) > 200);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < 30; ++x) {
      const uint8_t* p = img.at(x, y);
      CHECK_FALSE((p[0] == 255 && p[1] == 0 && p[2] == 0));
    }
  fs::remove(path);
}

TEST_CASE("line chart: NaN gaps break the line, single points are drawn as dots") {
  ChartSpec spec;
  spec.legend = false;
  spec.width = 400;
  spec.height = 240;
  Series s{"gappy", {}, {}, kRed, 2.0};
  for (int i = 0; i <= 10; ++i) s.x.push_back(i), s.y.push_back(i == 5 ? NAN : 1.0);
  spec.series.push_back(s);
  CHECK(column_runs(render_line_chart(spec), kRed) == 2);

  spec.series[0] = Series{"one", {3}, {2}, kRed, 2.0};
  const auto one = render_line_chart(spec);
  CHECK(count_color(one, kRed) >= 9);
  CHECK(column_runs(one, kRed) == 1);

  // Nothing drawable at all: still a chart (frame and "no data"), no exception.
  spec.series[0] = Series{"none", {1, 2}, {NAN, NAN}, kRed, 2.0};
  CHECK(count_color(render_line_chart(spec), kRed) == 0);
  spec.series.clear();
  CHECK(render_line_chart(spec).width == 400);
}

TEST_CASE("line chart: dense series are merged to pixel resolution") {
  // 200k logged steps on a 400-pixel plot: the line stays a thin line, and drawing stays fast.
  ChartSpec spec;
  spec.legend = false;
  spec.width = 500;
  spec.height = 300;
  Series s{"dense", {}, {}, kRed, 1.0};
  for (int i = 0; i < 200000; ++i) s.x.push_back(i), s.y.push_back(std::sin(i * 2e-5));
  spec.series.push_back(s);
  const auto img = render_line_chart(spec);
  // Pixels mostly covered by the line (anti-aliasing leaves few exactly red).
  size_t red = 0;
  for (size_t i = 0; i < img.pixels.size(); i += 3)
    red += img.pixels[i] > 200 && img.pixels[i + 1] < 128 && img.pixels[i + 2] < 128;
  CHECK(red > 300);
  // About 830 with vertices merged to pixel resolution; drawing all 200k segments smears the
  // anti-aliased edges into a thicker line (about 1120).
  CHECK(red < 1000);
}

TEST_CASE("line chart: log y ignores values <= 0 and fixed ranges clip") {
  ChartSpec spec;
  spec.log_y = true;
  spec.width = 400;
  spec.height = 240;
  spec.series.push_back(Series{"lr", {0, 1, 2, 3, 4}, {1e-3, 1e-4, 0, -1, 1e-5}, kRed, 2.0});
  CHECK(count_color(render_line_chart(spec), kRed) > 20);

  // A fixed range that cuts the curve: nothing is drawn outside the plot area.
  ChartSpec clip;
  clip.width = 300;
  clip.height = 200;
  clip.legend = false;
  clip.y_min = 0.0;
  clip.y_max = 1.0;
  clip.series.push_back(Series{"big", {0, 1}, {-100, 100}, kRed, 3.0});
  const auto img = render_line_chart(clip);
  CHECK(count_color(img, kRed) > 10);
  for (int x = 0; x < img.width; ++x) {
    const uint8_t* top = img.at(x, 0);
    const uint8_t* bottom = img.at(x, img.height - 1);
    CHECK_FALSE((top[0] == 255 && top[1] == 0 && top[2] == 0));
    CHECK_FALSE((bottom[0] == 255 && bottom[1] == 0 && bottom[2] == 0));
  }
}

TEST_CASE("line chart: invalid input and unwritable paths") {
  ChartSpec spec;
  spec.series.push_back(Series{"bad", {1, 2, 3}, {1, 2}, std::nullopt, 2.0});
  CHECK_THROWS_AS(render_line_chart(spec), geoloc::ShapeError);
  spec.series[0].y.push_back(3);
  spec.width = 100;
  CHECK_THROWS_AS(render_line_chart(spec), geoloc::ValueError);
  spec.width = 800;
  spec.x_min = 5.0;
  spec.x_max = 5.0;
  CHECK_THROWS_AS(render_line_chart(spec), geoloc::ValueError);
  spec.x_min.reset();
  spec.x_max.reset();
  spec.log_y = true;
  spec.y_min = 0.0;
  CHECK_THROWS_AS(render_line_chart(spec), geoloc::ValueError);
  spec.y_min.reset();

  // A missing folder, and a target that is a folder: IoError, and nothing left behind.
  CHECK_THROWS_AS(write_line_chart("/nonexistent-geoloc-dir/chart.png", spec), geoloc::IoError);
  CHECK_FALSE(fs::exists("/nonexistent-geoloc-dir"));
  const fs::path dir = temp_path("chart_dir");
  fs::remove_all(dir);
  fs::create_directories(dir / "target.png");
  CHECK_THROWS_AS(write_line_chart((dir / "target.png").string(), spec), geoloc::IoError);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);  // only the folder itself: the temporary file was removed
  CHECK(fs::is_empty(dir / "target.png"));
  fs::remove_all(dir);
}
