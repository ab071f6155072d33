#pragma once
// Geometric and photometric transforms on 8-bit RGB images, the ImageNet normalisation, and
// packing a batch into an NHWC float tensor. Random transforms draw only from the random::Rng they are
// given, through the portable helpers below, so a seed fixes the result on every platform and
// thread count.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "geoloc/image/image.hpp"
#include "geoloc/random.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::image {

// ---------------------------------------------------------------- geometry
/// A rectangle of pixels: columns [x, x + width), rows [y, y + height).
struct CropBox {
  int x = 0, y = 0, width = 0, height = 0;
  bool operator==(const CropBox& o) const = default;
};

/// Resampling to width x height with a separable triangle (bilinear) filter on pixel centres
/// (half-pixel convention). Downscaling widens the filter to the scale factor (antialiasing, as
/// PIL's BILINEAR does), so reducing 640 -> 224 averages instead of skipping pixels. Upscaling is
/// plain bilinear interpolation with edge clamping. ValueError for empty input or non-positive size.
Image resize(const Image& img, int width, int height);
/// Resizes so that the shorter side becomes `shorter` (aspect kept, longer side rounded).
Image resize_shorter(const Image& img, int shorter);
/// Scales (aspect kept) to the smallest size covering width x height, then centre-crops to exactly
/// width x height: fixed-size storage that loses as little of the scene as possible.
Image resize_cover(const Image& img, int width, int height);
/// Copies the box; ValueError when it is empty or not inside the image.
Image crop(const Image& img, const CropBox& box);
/// The width x height box centred in the image (torchvision's rounding: top = round((H - h) / 2)).
/// ValueError when the image is smaller than the box.
Image center_crop(const Image& img, int width, int height);
/// Mirror left-right.
Image flip_horizontal(const Image& img);
/// The four corners (top-left, top-right, bottom-left, bottom-right) and the centre, each
/// width x height, for test-time averaging over crops.
std::array<Image, 5> five_crop(const Image& img, int width, int height);

/// torchvision's RandomResizedCrop parameters: the crop covers a fraction in [scale_min, scale_max]
/// of the image area with aspect ratio (w / h) log-uniform in [ratio_min, ratio_max].
struct RandomResizedCropOptions {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};
/// Up to 10 random draws; if none fits inside the image, falls back to the largest centred box
/// whose aspect ratio is clamped to the range (torchvision's behaviour).
CropBox random_resized_crop_box(int image_width, int image_height, random::Rng& rng,
                                const RandomResizedCropOptions& options = {});
/// random_resized_crop_box, then crop and resize to out_width x out_height.
Image random_resized_crop(const Image& img, int out_width, int out_height, random::Rng& rng,
                          const RandomResizedCropOptions& options = {});

// ---------------------------------------------------------------- photometric
/// torchvision's ColorJitter: each factor is drawn uniformly from [max(0, 1 - v), 1 + v] (hue
/// shift from [-hue, hue], hue <= 0.5); the enabled adjustments are applied in a random order,
/// in float with clamping to [0, 1] after each, and rounded back to 8 bits once at the end.
struct ColorJitter {
  float brightness = 0.f, contrast = 0.f, saturation = 0.f, hue = 0.f;
};
Image color_jitter(const Image& img, const ColorJitter& jitter, random::Rng& rng);
/// The individual adjustments with a fixed factor (1 = unchanged; hue_shift in turns, 0 = none).
Image adjust_brightness(const Image& img, float factor);
Image adjust_contrast(const Image& img, float factor);
Image adjust_saturation(const Image& img, float factor);
Image adjust_hue(const Image& img, float hue_shift);

// ---------------------------------------------------------------- pipelines
/// One step of a pipeline: image in, image out, randomness only from the given Rng.
using Transform = std::function<Image(const Image&, random::Rng&)>;

/// Steps applied in order.
class Pipeline {
 public:
  Pipeline() = default;
  explicit Pipeline(std::vector<Transform> steps) : steps_(std::move(steps)) {}
  Pipeline& add(Transform t);
  Image operator()(const Image& img, random::Rng& rng) const;
  size_t size() const { return steps_.size(); }

 private:
  std::vector<Transform> steps_;
};

/// Training augmentation: RandomResizedCrop(size), horizontal flip with probability `flip` (no step
/// and no draw when 0), colour jitter (no step when every strength is 0). A model's training
/// transform is this after resizing (pipeline::Preprocess::train_transform).
Pipeline train_pipeline(int size, const ColorJitter& jitter = {0.4f, 0.4f, 0.4f, 0.f},
                        const RandomResizedCropOptions& crop = {}, double flip = 0.5);
/// Evaluation: resize the shorter side to `resize_to`, centre crop `size` x `size` (no randomness).
Pipeline eval_pipeline(int resize_to, int size);
/// Flips with probability p.
Transform random_flip(double p = 0.5);

// ---------------------------------------------------------------- normalisation
struct Normalization {
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};
/// ImageNet's statistics (the default-constructed Normalization).
inline Normalization imagenet_normalization() { return {}; }

/// (pixel / 255 - mean[c]) / std[c], written HWC to dst (width * height * 3 floats).
void normalize_into(const Image& img, const Normalization& norm, float* dst);
FloatImage normalize(const Image& img, const Normalization& norm = {});
/// Packs same-size images into a CPU F32 tensor [N, H, W, 3], normalised. ShapeError naming the
/// first image whose size differs; ValueError for an empty vector.
Tensor pack_batch(const std::vector<Image>& images, const Normalization& norm = {});

}  // namespace geoloc::image
