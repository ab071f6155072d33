// pipeline::Preprocess: the one image-to-tensor path (transforms owned by the model's preprocessing,
// packed by image::pack_batch).
#include <doctest/doctest.h>

#include <vector>

#include "geoloc/image/transforms.hpp"
#include "geoloc/pipeline/preprocess.hpp"
#include "geoloc/pipeline/trainer.hpp"

using namespace geoloc;

namespace {
image::Image gradient_image(int w, int h, int seed) {
  image::Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        img.pixels[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>((x * 7 + y * 3 + c * 50 + seed * 31) & 255);
  return img;
}
bool same(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && a.to_vector() == b.to_vector(); }
}  // namespace

TEST_CASE("Preprocess::eval_batch is eval_crops packed by pack_batch, five crops as consecutive rows") {
  pipeline::Preprocess pp;
  pp.resize = 40;
  pp.crop = 32;
  pp.mean[1] = 0.5f;
  const std::vector<image::Image> imgs = {gradient_image(60, 45, 1), gradient_image(41, 70, 2)};
  const Tensor one = pp.eval_batch(imgs);
  CHECK(one.shape() == Shape{2, 32, 32, 3});
  std::vector<image::Image> centre;
  random::Rng unused(0);
  for (const auto& im : imgs) centre.push_back(pp.eval_transform()(im, unused));
  CHECK(same(one, image::pack_batch(centre, pp.normalization())));
  const Tensor five = pp.eval_batch(imgs, true);
  CHECK(five.shape() == Shape{10, 32, 32, 3});
  std::vector<image::Image> crops;
  for (const auto& im : imgs) {
    const auto c = image::five_crop(image::resize_shorter(im, 40), 32, 32);
    crops.insert(crops.end(), c.begin(), c.end());
  }
  CHECK(same(five, image::pack_batch(crops, pp.normalization())));
  // the centre crop of the five is the single crop
  CHECK(std::vector<float>(five.data<float>() + 4 * 32 * 32 * 3, five.data<float>() + 5 * 32 * 32 * 3) ==
        std::vector<float>(one.data<float>(), one.data<float>() + 32 * 32 * 3));
  CHECK_THROWS_AS(pp.eval_batch(std::vector<image::Image>{}), ValueError);
  pp.crop = 50;
  CHECK_THROWS_AS(pp.eval_batch(imgs), ValueError);
}

TEST_CASE("Preprocess::train_batch: the training transform per image from its own seed, packed") {
  pipeline::Preprocess pp;
  pp.resize = 36;
  pp.crop = 24;
  const pipeline::Augmentation aug{0.5, true, 0.3f};
  const image::Image a = gradient_image(50, 40, 3), b = gradient_image(36, 36, 4);
  const std::vector<const image::Image*> imgs = {&a, &b, &a};
  const std::vector<uint64_t> seeds = {11, 12, 13};
  const Tensor t = pp.train_batch(imgs, seeds, aug);
  CHECK(t.shape() == Shape{3, 24, 24, 3});
  CHECK(same(t, pp.train_batch(imgs, seeds, aug)));  // a seed fixes the batch
  std::vector<image::Image> manual;
  for (size_t j = 0; j < imgs.size(); ++j) {
    random::Rng rng(seeds[j]);
    manual.push_back(pp.train_transform(aug)(*imgs[j], rng));
  }
  CHECK(same(t, image::pack_batch(manual, pp.normalization())));
  // rows 0 and 2 are the same image with different seeds: different crops
  CHECK(std::vector<float>(t.data<float>(), t.data<float>() + 24 * 24 * 3) !=
        std::vector<float>(t.data<float>() + 2 * 24 * 24 * 3, t.data<float>() + 3 * 24 * 24 * 3));
  // the transform is resize, then the image library's train_pipeline (same draws)
  random::Rng r1(5), r2(5);
  const image::Image via_pp = pp.train_transform(aug)(a, r1);
  const image::Image via_lib = image::train_pipeline(24, {0.3f, 0.3f, 0.3f, 0.f}, {0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0}, 0.5)(
      image::resize_shorter(a, 36), r2);
  CHECK(via_pp.pixels == via_lib.pixels);
  CHECK_THROWS_AS(pp.train_batch(imgs, std::vector<uint64_t>{1}, aug), ValueError);
  CHECK_THROWS_AS(pp.train_transform({0.0, false, 0.f}), ValueError);
  CHECK_THROWS_AS(pp.train_transform({0.5, false, -1.f}), ValueError);
}

TEST_CASE("TrainConfig's augmentation fields are the Augmentation the trainer uses") {
  pipeline::TrainConfig tc;
  tc.crop_scale_min = 0.7;
  tc.flip = true;
  tc.jitter = 0.2f;
  const pipeline::Augmentation a = tc.augmentation();
  CHECK(a.crop_scale_min == 0.7);
  CHECK(a.flip);
  CHECK(a.jitter == 0.2f);
}
