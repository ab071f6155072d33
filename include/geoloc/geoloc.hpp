#pragma once
// geoloc's public API for other C++ programs: load a model file, read an image, ask where it was
// taken. This header has no CUDA, Eigen or s2geometry types; link geoloc::geoloc.
//
//   geoloc::Locator loc = geoloc::Locator::load("model.safetensors");
//   geoloc::Result r = loc.predict(geoloc::read_image("photo.jpg"));
//   std::printf("%.4f, %.4f\n", r.latitude, r.longitude);
//
// Errors are geoloc::Error exceptions (see error.hpp) whose message names the input and the problem.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc {

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};

/// Decodes a JPEG or PNG file (IoError when unreadable, truncated or over the pixel limit).
RgbImage read_image(const std::string& path);

struct Cell {
  int id = -1;                // class of the finest partitioning
  double probability = 0.0;
  double latitude = 0.0, longitude = 0.0;  // the cell's centre (mean of its training photos)
};

struct Result {
  double latitude = 0.0, longitude = 0.0;  // the predicted coordinate, degrees
  std::vector<Cell> top_cells;              // most probable first
  std::string scene;                        // scene name ("" without a scene head)
  double scene_probability = 0.0;
  int country = -1;                         // ISO 3166-1 numeric, -1 at sea / unknown
  std::string country_name;
  double confidence = 0.0;  // in [0, 1]; for abstaining on the least confident answers (one strategy)
};

struct Options {
  /// "hierarchy" (default; falls back to "cell" for a single partitioning), "cell", "centroid", "knn",
  /// "refine" (search within the top cells; knn and refine need a k-NN index), "hybrid" (a model
  /// trained with --hybrid-head), "rank" (candidate ranking; needs a k-NN index).
  std::string strategy = "hierarchy";
  int top_cells = 5;
  bool snap_to_land = false;   // move a prediction at sea to the nearest coast
  bool five_crop = false;      // average the probabilities of five crops (slower, a little better)
  /// How five crops are combined: "mean" or "max" (per class, then renormalised; the published
  /// ECCV 2018 pipeline takes the max). ValueError at load for anything else.
  std::string crop_aggregation = "mean";
  std::string device = "cpu";  // "cpu" or "cuda[:N]" (when geoloc was built with CUDA)
};

/// A loaded model, ready to predict. Thread-compatible: use one Locator per thread.
class Locator {
 public:
  /// Loads a model file written by `geoloc train` (and, optionally, a k-NN index from `geoloc index`).
  static Locator load(const std::string& model_path, const Options& options = {},
                      const std::string& knn_index_path = "");
  Locator(Locator&&) noexcept;
  Locator& operator=(Locator&&) noexcept;
  ~Locator();

  Result predict(const RgbImage& image) const;
  std::vector<Result> predict(const std::vector<RgbImage>& images) const;
  /// Several photos of one place: their probabilities are averaged into one answer.
  Result predict_place(const std::vector<RgbImage>& views) const;

  const Options& options() const;
  /// The scene names of the model (empty without a scene head).
  std::vector<std::string> scene_names() const;

 private:
  struct Impl;
  explicit Locator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace geoloc
