#pragma once
// How images become network input: the one path from decoded 8-bit images to the normalised NHWC
// batch. A model's Preprocess (stored in its file) gives the training and evaluation transforms;
// image::pack_batch normalises and packs their output. The trainer, evaluation, the batch loader,
// `geoloc predict` and the C++ API all go through here, so training and inference see the same
// pixels.
//
// Representation: every step works on 8-bit RGB images (crop, flip and colour jitter are
// 8-bit in, 8-bit out; the jitter's arithmetic is float inside one step and rounds once, as
// torchvision's ColorJitter on uint8 images does), and the conversion to float happens once, in
// pack_batch's normalisation.
#include <span>
#include <vector>

#include "geoloc/image/transforms.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc::pipeline {

/// Training-only randomness: random-resized crop (area fraction in [crop_scale_min, 1], aspect
/// ratio in [3/4, 4/3]), horizontal flip with probability 1/2, colour jitter of this strength
/// (brightness, contrast and saturation; 0 = none).
struct Augmentation {
  double crop_scale_min = 0.6;
  bool flip = false;
  float jitter = 0.1f;
  /// ValueError unless 0 < crop_scale_min <= 1 and 0 <= jitter (finite).
  void validate() const;
};

/// Resize the shorter side to `resize`, centre-crop `crop` (training: random-resized crop to
/// `crop`), normalise with mean/std (ImageNet's by default).
struct Preprocess {
  int resize = 256;
  int crop = 224;
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
  /// ValueError unless 0 < crop <= resize and every std is positive and mean finite.
  void validate() const;
  image::Normalization normalization() const {
    return {{mean[0], mean[1], mean[2]}, {std[0], std[1], std[2]}};
  }

  /// Training: shorter side to `resize`, random-resized crop to crop x crop, then the flip and the
  /// colour jitter `aug` asks for. Randomness only from the Rng the pipeline is called with.
  image::Pipeline train_transform(const Augmentation& aug) const;
  /// Evaluation: shorter side to `resize`, centre crop crop x crop (no randomness).
  image::Pipeline eval_transform() const;
  /// The evaluation crops of one image: the centre crop, or the five crops (corners, centre) of
  /// the image resized to `resize`.
  std::vector<image::Image> eval_crops(const image::Image& img, bool five_crop) const;

  /// The network input for evaluation: eval_crops of every image (five consecutive rows per image
  /// with five_crop), packed by image::pack_batch; a CPU F32 tensor [N (x5), crop, crop, 3].
  /// ValueError for no images.
  Tensor eval_batch(std::span<const image::Image> images, bool five_crop = false) const;
  /// A training batch: images[j] through train_transform(aug) with an Rng seeded by seeds[j], packed.
  Tensor train_batch(std::span<const image::Image* const> images, std::span<const uint64_t> seeds,
                     const Augmentation& aug) const;
};

}  // namespace geoloc::pipeline
