#include "geoloc/pipeline/preprocess.hpp"

#include <cmath>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/error.hpp"

namespace geoloc::pipeline {

void Augmentation::validate() const {
  GEOLOC_CHECK(crop_scale_min > 0.0 && crop_scale_min <= 1.0, ValueError, "crop scale must be in (0, 1], got ",
               crop_scale_min);
  GEOLOC_CHECK(std::isfinite(jitter) && jitter >= 0.0f, ValueError, "colour jitter must be >= 0, got ", jitter);
}

void Preprocess::validate() const {
  GEOLOC_CHECK(resize > 0 && crop > 0 && crop <= resize, ValueError, "preprocessing: crop ", crop,
               " must be positive and at most the resize ", resize);
  for (int c = 0; c < 3; ++c)
    GEOLOC_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] > 0.0f, ValueError, "preprocessing: channel ",
                 c, " has mean ", mean[c], " and std ", std[c], " (std must be positive)");
}

image::Pipeline Preprocess::train_transform(const Augmentation& aug) const {
  validate();
  aug.validate();
  image::Pipeline p;
  p.add([size = resize](const image::Image& img, random::Rng&) { return image::resize_shorter(img, size); });
  p.add(image::train_pipeline(crop, {aug.jitter, aug.jitter, aug.jitter, 0.0f},
                              {aug.crop_scale_min, 1.0, 3.0 / 4.0, 4.0 / 3.0}, aug.flip ? 0.5 : 0.0));
  return p;
}

image::Pipeline Preprocess::eval_transform() const {
  validate();
  return image::eval_pipeline(resize, crop);
}

std::vector<image::Image> Preprocess::eval_crops(const image::Image& img, bool five_crop) const {
  const image::Image scaled = image::resize_shorter(img, resize);
  if (!five_crop) return {image::center_crop(scaled, crop, crop)};
  const auto crops = image::five_crop(scaled, crop, crop);
  return {crops.begin(), crops.end()};
}

Tensor Preprocess::eval_batch(std::span<const image::Image> images, bool five_crop) const {
  GEOLOC_CHECK(!images.empty(), ValueError, "no images to prepare");
  validate();
  const size_t per = five_crop ? 5 : 1;
  std::vector<image::Image> crops(images.size() * per);
  detail::parallel_for(images.size(), [&](size_t j) {
    std::vector<image::Image> c = eval_crops(images[j], five_crop);
    for (size_t k = 0; k < per; ++k) crops[j * per + k] = std::move(c[k]);
  });
  return image::pack_batch(crops, normalization());
}

Tensor Preprocess::train_batch(std::span<const image::Image* const> images, std::span<const uint64_t> seeds,
                               const Augmentation& aug) const {
  GEOLOC_CHECK(!images.empty(), ValueError, "no images to prepare");
  GEOLOC_CHECK(images.size() == seeds.size(), ValueError, "train_batch: ", images.size(), " images but ", seeds.size(),
               " seeds");
  const image::Pipeline transform = train_transform(aug);
  std::vector<image::Image> out(images.size());
  detail::parallel_for(images.size(), [&](size_t j) {
    random::Rng rng(seeds[j]);
    out[j] = transform(*images[j], rng);
  });
  return image::pack_batch(out, normalization());
}

}  // namespace geoloc::pipeline
