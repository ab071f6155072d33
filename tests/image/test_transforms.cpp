// Transforms on tiny hand-made images, where the expected values can be worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "geoloc/image/transforms.hpp"

using namespace geoloc;
using namespace geoloc::image;

namespace {

Image row(std::initializer_list<int> values) {  // a 1-pixel-high image, all channels equal
  Image img(static_cast<int>(values.size()), 1);
  int x = 0;
  for (int v : values) {
    uint8_t* p = img.at(x++, 0);
    p[0] = p[1] = p[2] = static_cast<uint8_t>(v);
  }
  return img;
}

Image numbered(int w, int h) {  // R = x, G = y, B = x + 10 * y: every pixel tells where it came from
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      img.at(x, y)[0] = static_cast<uint8_t>(x);
      img.at(x, y)[1] = static_cast<uint8_t>(y);
      img.at(x, y)[2] = static_cast<uint8_t>(x + 10 * y);
    }
  return img;
}

Image constant(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image img(w, h);
  for (int i = 0; i < w * h; ++i) {
    img.pixels[3 * i] = r;
    img.pixels[3 * i + 1] = g;
    img.pixels[3 * i + 2] = b;
  }
  return img;
}

}  // namespace

TEST_CASE("bilinear upscaling interpolates between pixel centres") {
  const Image out = resize(row({0, 100}), 4, 1);
  // Output centres map to input x = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  CHECK(out.at(0, 0)[0] == 0);
  CHECK(out.at(1, 0)[0] == 25);
  CHECK(out.at(2, 0)[0] == 75);
  CHECK(out.at(3, 0)[0] == 100);
}

TEST_CASE("downscaling widens the triangle filter (antialiasing)") {
  const Image out = resize(row({0, 40, 80, 120}), 2, 1);
  // Output 0 is centred at input 1.0 with a triangle of radius 2: inputs 0,1,2 weigh 0.75,0.75,0.25.
  CHECK(out.at(0, 0)[0] == 29);  // (0*0.75 + 40*0.75 + 80*0.25) / 1.75 = 28.57
  CHECK(out.at(1, 0)[0] == 91);  // (40*0.25 + 80*0.75 + 120*0.75) / 1.75 = 91.43
  // Constant images stay constant at any size, both ways.
  const Image c = constant(7, 5, 10, 200, 255);
  for (auto [w, h] : {std::pair{3, 2}, std::pair{16, 9}, std::pair{1, 1}, std::pair{7, 13}}) {
    const Image r = resize(c, w, h);
    CHECK(r == constant(w, h, 10, 200, 255));
  }
  CHECK(resize(c, 7, 5) == c);
  CHECK_THROWS_AS(resize(c, 0, 3), ValueError);
  CHECK_THROWS_AS(resize(Image(), 3, 3), ValueError);
}

TEST_CASE("resize_shorter keeps the aspect ratio; resize_cover fills the box") {
  const Image img = constant(640, 480, 1, 2, 3);
  const Image a = resize_shorter(img, 256);
  CHECK(a.width == 341);
  CHECK(a.height == 256);
  const Image b = resize_shorter(constant(30, 60, 0, 0, 0), 10);
  CHECK(b.width == 10);
  CHECK(b.height == 20);
  const Image c = resize_cover(img, 100, 100);
  CHECK(c.width == 100);
  CHECK(c.height == 100);
  const Image d = resize_cover(constant(10, 40, 5, 5, 5), 20, 20);
  CHECK(d == constant(20, 20, 5, 5, 5));
}

TEST_CASE("crop, centre crop and five crop select the right pixels") {
  const Image img = numbered(6, 5);
  const Image c = crop(img, {2, 1, 3, 2});
  REQUIRE(c.width == 3);
  REQUIRE(c.height == 2);
  CHECK(c.at(0, 0)[0] == 2);
  CHECK(c.at(0, 0)[1] == 1);
  CHECK(c.at(2, 1)[2] == 4 + 20);
  CHECK_THROWS_AS(crop(img, {4, 0, 3, 1}), ValueError);
  CHECK_THROWS_AS(crop(img, {-1, 0, 2, 2}), ValueError);

  // (6 - 2) / 2 = 2 ; (5 - 2) / 2 = 1.5 rounds half to even = 2, as torchvision's round() does.
  const Image cc = center_crop(img, 2, 2);
  CHECK(cc.at(0, 0)[0] == 2);
  CHECK(cc.at(0, 0)[1] == 2);
  const Image cc1 = center_crop(numbered(4, 4), 1, 1);  // 1.5 -> 2
  CHECK(cc1.at(0, 0)[0] == 2);
  const Image cc2 = center_crop(numbered(6, 6), 1, 1);  // 2.5 -> 2
  CHECK(cc2.at(0, 0)[0] == 2);
  CHECK_THROWS_AS(center_crop(img, 7, 1), ValueError);

  const auto f = five_crop(img, 2, 2);
  CHECK(f[0].at(0, 0)[2] == 0);            // top-left
  CHECK(f[1].at(0, 0)[0] == 4);            // top-right starts at x = 4
  CHECK(f[1].at(0, 0)[1] == 0);
  CHECK(f[2].at(0, 0)[1] == 3);            // bottom-left starts at y = 3
  CHECK(f[3].at(1, 1)[2] == 5 + 40);       // bottom-right's last pixel is the image's last
  CHECK(f[4] == center_crop(img, 2, 2));
}

TEST_CASE("horizontal flip is an exact mirror") {
  const Image img = numbered(5, 3);
  const Image f = flip_horizontal(img);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) CHECK(f.at(x, y)[c] == img.at(4 - x, y)[c]);
  CHECK(flip_horizontal(f) == img);
}

TEST_CASE("random resized crop is deterministic given the seed and stays in range") {
  std::set<std::tuple<int, int, int, int>> seen;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    random::Rng a(seed), b(seed);
    const CropBox ba = random_resized_crop_box(200, 100, a);
    const CropBox bb = random_resized_crop_box(200, 100, b);
    CHECK(ba == bb);
    CHECK(ba.x >= 0);
    CHECK(ba.y >= 0);
    CHECK(ba.x + ba.width <= 200);
    CHECK(ba.y + ba.height <= 100);
    const double frac = double(ba.width) * ba.height / (200.0 * 100.0);
    CHECK(frac >= 0.07);  // 0.08 minus rounding of w and h
    const double ar = double(ba.width) / ba.height;
    if (frac < 1.0) {  // not the fallback
      CHECK(ar >= 0.7);
      CHECK(ar <= 1.45);
    }
    seen.insert({ba.x, ba.y, ba.width, ba.height});
  }
  CHECK(seen.size() > 40);  // different seeds give different crops

  const Image img = numbered(40, 30);
  random::Rng r1(7), r2(7);
  const Image o1 = random_resized_crop(img, 16, 16, r1);
  const Image o2 = random_resized_crop(img, 16, 16, r2);
  CHECK(o1.width == 16);
  CHECK(o1 == o2);
}

TEST_CASE("random resized crop falls back to a centred crop after 10 failed draws") {
  // A square image can never hold a full-area crop of aspect ratio 2..3, so all 10 draws fail.
  RandomResizedCropOptions o;
  o.scale_min = o.scale_max = 1.0;
  o.ratio_min = 2.0;
  o.ratio_max = 3.0;
  random::Rng rng(3);
  const CropBox b = random_resized_crop_box(100, 100, rng, o);
  CHECK(b == CropBox{0, 25, 100, 50});  // width kept, height = round(100 / 2), centred
  o.ratio_min = 0.2;
  o.ratio_max = 0.25;
  const CropBox t = random_resized_crop_box(100, 100, rng, o);
  CHECK(t == CropBox{37, 0, 25, 100});  // in_ratio 1 > 0.25: height kept, width = 25
}

TEST_CASE("colour jitter adjustments") {
  const Image img = numbered(8, 8);
  random::Rng rng(1);
  CHECK(color_jitter(img, {}, rng) == img);
  CHECK(adjust_brightness(img, 0.f) == constant(8, 8, 0, 0, 0));
  CHECK(adjust_brightness(img, 1.f) == img);
  const Image bright = adjust_brightness(constant(1, 1, 100, 200, 10), 1.5f);
  CHECK(bright == constant(1, 1, 150, 255, 15));  // clamped at 255

  const Image grey = adjust_saturation(constant(1, 1, 200, 100, 50), 0.f);
  const int luma = static_cast<int>(std::lround(0.2989 * 200 + 0.587 * 100 + 0.114 * 50));
  CHECK(grey == constant(1, 1, luma, luma, luma));

  // Contrast 0: every pixel becomes the image's mean luma.
  const Image two = [] {
    Image t(2, 1);
    t.pixels = {0, 0, 0, 255, 255, 255};
    return t;
  }();
  const Image flat = adjust_contrast(two, 0.f);
  CHECK(flat.pixels[0] == flat.pixels[3]);
  CHECK(std::abs(int(flat.pixels[0]) - 127) <= 1);

  // A third of a turn takes pure red to pure green, two thirds to blue.
  CHECK(adjust_hue(constant(1, 1, 255, 0, 0), 1.f / 3.f) == constant(1, 1, 0, 255, 0));
  CHECK(adjust_hue(constant(1, 1, 255, 0, 0), -1.f / 3.f) == constant(1, 1, 0, 0, 255));
  CHECK(adjust_hue(img, 0.f) == img);

  const ColorJitter j{0.4f, 0.4f, 0.4f, 0.1f};
  random::Rng a(5), b(5), c(6);
  const Image ja = color_jitter(img, j, a);
  CHECK(ja == color_jitter(img, j, b));
  CHECK(!(ja == color_jitter(img, j, c)));
  CHECK_THROWS_AS(color_jitter(img, {-1.f, 0, 0, 0}, a), ValueError);
}

TEST_CASE("ImageNet normalisation and batch packing") {
  Image img(2, 1);
  img.pixels = {0, 128, 255, 255, 255, 255};
  const FloatImage f = normalize(img);
  CHECK(f.at(0, 0)[0] == doctest::Approx((0.0 - 0.485) / 0.229).epsilon(1e-6));
  CHECK(f.at(0, 0)[1] == doctest::Approx((128 / 255.0 - 0.456) / 0.224).epsilon(1e-6));
  CHECK(f.at(0, 0)[2] == doctest::Approx((1.0 - 0.406) / 0.225).epsilon(1e-6));
  CHECK(f.at(1, 0)[0] == doctest::Approx((1.0 - 0.485) / 0.229).epsilon(1e-6));

  Image img2 = img;
  img2.pixels[0] = 51;
  const Tensor t = pack_batch({img, img2});
  CHECK(t.shape() == Shape{2, 1, 2, 3});
  CHECK(t.dtype() == DType::F32);
  CHECK(t.device().is_cpu());
  const auto v = t.to_vector();
  CHECK(v[0] == doctest::Approx(f.pixels[0]));
  CHECK(v[6] == doctest::Approx((51 / 255.0 - 0.485) / 0.229).epsilon(1e-6));
  CHECK(v[11] == doctest::Approx(f.pixels[5]));

  CHECK_THROWS_AS(pack_batch({img, numbered(3, 1)}), ShapeError);
  CHECK_THROWS_AS(pack_batch({}), ValueError);
  Normalization bad;
  bad.std[1] = 0.f;
  CHECK_THROWS_AS(normalize(img, bad), ValueError);
}

TEST_CASE("pipelines: evaluation is fixed, training is seeded") {
  const Image img = numbered(64, 48);
  random::Rng rng(0);
  const Image e = eval_pipeline(32, 24)(img, rng);
  CHECK(e.width == 24);
  CHECK(e.height == 24);
  CHECK(e == center_crop(resize_shorter(img, 32), 24, 24));
  const Pipeline tp = train_pipeline(16);
  CHECK(tp.size() == 3);
  random::Rng a(9), b(9);
  const Image ta = tp(img, a);
  CHECK(ta.width == 16);
  CHECK(ta == tp(img, b));
  // Flip probability extremes.
  random::Rng r(1);
  CHECK(random_flip(1.0)(img, r) == flip_horizontal(img));
  CHECK(random_flip(0.0)(img, r) == img);
  CHECK(Pipeline{}(img, r) == img);
}

TEST_CASE("portable random helpers") {
  random::Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) {
    const double u = random::uniform(a, 2.0, 3.0);
    CHECK(u >= 2.0);
    CHECK(u < 3.0);
    CHECK(random::below(b, 7) < 7);
  }
  CHECK(random::mix_seed(1, 2) != random::mix_seed(2, 1));
  CHECK(random::mix_seed(1, 2) == random::mix_seed(1, 2));
  CHECK_THROWS_AS(random::below(a, 0), ValueError);
}
