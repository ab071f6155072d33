#include "geoloc/image/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace geoloc::image {

// ---------------------------------------------------------------- random helpers
namespace {

// Python's round(): half to even. std::nearbyint honours the current rounding mode, which is
// round-to-nearest-even unless someone changed it; do it by hand to be independent of that.
int round_half_even(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  if (d > 0.5) return static_cast<int>(f) + 1;
  if (d < 0.5) return static_cast<int>(f);
  const int fi = static_cast<int>(f);
  return (fi % 2 == 0) ? fi : fi + 1;
}

void check_image(const Image& img, const char* op) {
  GEOLOC_CHECK(img.width > 0 && img.height > 0, ValueError, op, ": empty ", img.width, "x", img.height, " image");
  GEOLOC_CHECK(img.pixels.size() == static_cast<size_t>(img.width) * img.height * 3, ShapeError, op, ": image ",
               img.width, "x", img.height, " holds ", img.pixels.size(), " bytes, expected ",
               static_cast<size_t>(img.width) * img.height * 3);
}

inline uint8_t to_byte(float v) {
  v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
  return static_cast<uint8_t>(v + 0.5f);
}

// Filter taps of one axis: output i reads inputs [start[i], start[i] + count[i]) with weights.
struct Taps {
  std::vector<int> start, count;
  std::vector<float> weights;  // count_max per output, zero padded
  int count_max = 0;
};

Taps make_taps(int in, int out) {
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);  // widen the triangle when shrinking
  const double support = filterscale;               // triangle radius 1, scaled
  Taps t;
  t.count_max = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out) * t.count_max, 0.f);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    int hi = static_cast<int>(center + support + 0.5);
    lo = std::max(lo, 0);
    hi = std::min(hi, in);
    hi = std::min(hi, lo + t.count_max);
    double sum = 0;
    std::vector<double> w(hi - lo);
    for (int k = lo; k < hi; ++k) {
      const double x = std::abs((k + 0.5 - center) / filterscale);
      w[k - lo] = x < 1.0 ? 1.0 - x : 0.0;
      sum += w[k - lo];
    }
    if (sum <= 0) {  // cannot happen with support >= 1, kept so a weightless tap never divides by 0
      w.assign(1, 1.0);
      lo = std::clamp(static_cast<int>(center), 0, in - 1);
      hi = lo + 1;
      sum = 1.0;
    }
    t.start[i] = lo;
    t.count[i] = hi - lo;
    for (int k = 0; k < hi - lo; ++k) t.weights[static_cast<size_t>(i) * t.count_max + k] = static_cast<float>(w[k] / sum);
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------- geometry
Image resize(const Image& img, int width, int height) {
  check_image(img, "resize");
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "resize: target size ", width, "x", height, " is not positive");
  if (width == img.width && height == img.height) return img;
  const Taps tx = make_taps(img.width, width);
  const Taps ty = make_taps(img.height, height);
  // Horizontal pass into float rows, then vertical pass; both separable passes keep the cost at
  // (taps_x + taps_y) per output pixel instead of taps_x * taps_y.
  std::vector<float> tmp(static_cast<size_t>(img.height) * width * 3);
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* src = img.pixels.data() + static_cast<size_t>(y) * img.width * 3;
    float* dst = tmp.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) {
      const float* w = tx.weights.data() + static_cast<size_t>(x) * tx.count_max;
      const uint8_t* s = src + static_cast<size_t>(tx.start[x]) * 3;
      float r = 0, g = 0, b = 0;
      for (int k = 0; k < tx.count[x]; ++k) {
        r += w[k] * s[3 * k];
        g += w[k] * s[3 * k + 1];
        b += w[k] * s[3 * k + 2];
      }
      dst[3 * x] = r;
      dst[3 * x + 1] = g;
      dst[3 * x + 2] = b;
    }
  }
  Image out(width, height);
  const size_t row = static_cast<size_t>(width) * 3;
  std::vector<float> acc(row);
  for (int y = 0; y < height; ++y) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const float* w = ty.weights.data() + static_cast<size_t>(y) * ty.count_max;
    for (int k = 0; k < ty.count[y]; ++k) {
      const float* s = tmp.data() + static_cast<size_t>(ty.start[y] + k) * row;
      const float wk = w[k];
      for (size_t i = 0; i < row; ++i) acc[i] += wk * s[i];
    }
    uint8_t* d = out.pixels.data() + static_cast<size_t>(y) * row;
    for (size_t i = 0; i < row; ++i) d[i] = to_byte(acc[i]);
  }
  return out;
}

Image resize_shorter(const Image& img, int shorter) {
  check_image(img, "resize_shorter");
  GEOLOC_CHECK(shorter > 0, ValueError, "resize_shorter: size ", shorter, " is not positive");
  int w, h;
  if (img.width <= img.height) {
    w = shorter;
    h = std::max(1, static_cast<int>(static_cast<int64_t>(shorter) * img.height / img.width));
  } else {
    h = shorter;
    w = std::max(1, static_cast<int>(static_cast<int64_t>(shorter) * img.width / img.height));
  }
  return resize(img, w, h);
}

Image resize_cover(const Image& img, int width, int height) {
  check_image(img, "resize_cover");
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "resize_cover: size ", width, "x", height, " is not positive");
  const double s = std::max(static_cast<double>(width) / img.width, static_cast<double>(height) / img.height);
  // Round, then make sure rounding did not leave a side one pixel short of the target.
  const int w = std::max(width, static_cast<int>(std::lround(img.width * s)));
  const int h = std::max(height, static_cast<int>(std::lround(img.height * s)));
  return center_crop(resize(img, w, h), width, height);
}

Image crop(const Image& img, const CropBox& b) {
  check_image(img, "crop");
  GEOLOC_CHECK(b.width > 0 && b.height > 0 && b.x >= 0 && b.y >= 0 && b.x + b.width <= img.width &&
                   b.y + b.height <= img.height,
               ValueError, "crop: box x=", b.x, " y=", b.y, " ", b.width, "x", b.height, " is not inside the ",
               img.width, "x", img.height, " image");
  Image out(b.width, b.height);
  const size_t row = static_cast<size_t>(b.width) * 3;
  for (int y = 0; y < b.height; ++y) std::memcpy(out.at(0, y), img.at(b.x, b.y + y), row);
  return out;
}

Image center_crop(const Image& img, int width, int height) {
  check_image(img, "center_crop");
  GEOLOC_CHECK(width > 0 && height > 0 && width <= img.width && height <= img.height, ValueError, "center_crop: ",
               width, "x", height, " does not fit in the ", img.width, "x", img.height, " image");
  const int top = round_half_even((img.height - height) / 2.0);
  const int left = round_half_even((img.width - width) / 2.0);
  return crop(img, {left, top, width, height});
}

Image flip_horizontal(const Image& img) {
  check_image(img, "flip_horizontal");
  Image out(img.width, img.height);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) std::memcpy(out.at(img.width - 1 - x, y), img.at(x, y), 3);
  return out;
}

std::array<Image, 5> five_crop(const Image& img, int width, int height) {
  check_image(img, "five_crop");
  GEOLOC_CHECK(width > 0 && height > 0 && width <= img.width && height <= img.height, ValueError, "five_crop: ",
               width, "x", height, " does not fit in the ", img.width, "x", img.height, " image");
  const int r = img.width - width, b = img.height - height;
  return {crop(img, {0, 0, width, height}), crop(img, {r, 0, width, height}), crop(img, {0, b, width, height}),
          crop(img, {r, b, width, height}), center_crop(img, width, height)};
}

CropBox random_resized_crop_box(int W, int H, random::Rng& rng, const RandomResizedCropOptions& o) {
  GEOLOC_CHECK(W > 0 && H > 0, ValueError, "random_resized_crop: empty ", W, "x", H, " image");
  GEOLOC_CHECK(o.scale_min > 0 && o.scale_min <= o.scale_max && o.ratio_min > 0 && o.ratio_min <= o.ratio_max,
               ValueError, "random_resized_crop: bad ranges scale [", o.scale_min, ", ", o.scale_max, "] ratio [",
               o.ratio_min, ", ", o.ratio_max, "]");
  const double area = static_cast<double>(W) * H;
  const double lr0 = std::log(o.ratio_min), lr1 = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * random::uniform(rng, o.scale_min, o.scale_max);
    const double ar = std::exp(random::uniform(rng, lr0, lr1));
    const int w = round_half_even(std::sqrt(target * ar));
    const int h = round_half_even(std::sqrt(target / ar));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      const int y = static_cast<int>(random::below(rng, static_cast<uint64_t>(H - h + 1)));
      const int x = static_cast<int>(random::below(rng, static_cast<uint64_t>(W - w + 1)));
      return {x, y, w, h};
    }
  }
  // Fallback: the whole image, trimmed to the nearest allowed aspect ratio, centred.
  const double in_ratio = static_cast<double>(W) / H;
  int w = W, h = H;
  if (in_ratio < o.ratio_min) {
    h = std::clamp(round_half_even(W / o.ratio_min), 1, H);
  } else if (in_ratio > o.ratio_max) {
    w = std::clamp(round_half_even(H * o.ratio_max), 1, W);
  }
  return {(W - w) / 2, (H - h) / 2, w, h};
}

Image random_resized_crop(const Image& img, int out_w, int out_h, random::Rng& rng, const RandomResizedCropOptions& o) {
  check_image(img, "random_resized_crop");
  const CropBox box = random_resized_crop_box(img.width, img.height, rng, o);
  return resize(crop(img, box), out_w, out_h);
}

// ---------------------------------------------------------------- photometric
namespace {

// torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma).
inline float luma(const float* p) { return 0.2989f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }
inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

void brightness_f(std::vector<float>& px, float f) {
  for (float& v : px) v = clamp01(v * f);
}
void contrast_f(std::vector<float>& px, float f) {
  double sum = 0;
  for (size_t i = 0; i < px.size(); i += 3) sum += luma(&px[i]);
  const float mean = static_cast<float>(sum / (px.size() / 3));
  for (float& v : px) v = clamp01(f * v + (1.f - f) * mean);
}
void saturation_f(std::vector<float>& px, float f) {
  for (size_t i = 0; i < px.size(); i += 3) {
    const float g = luma(&px[i]);
    for (int c = 0; c < 3; ++c) px[i + c] = clamp01(f * px[i + c] + (1.f - f) * g);
  }
}
void hue_f(std::vector<float>& px, float shift) {
  for (size_t i = 0; i < px.size(); i += 3) {
    const float r = px[i], g = px[i + 1], b = px[i + 2];
    const float mx = std::max({r, g, b}), mn = std::min({r, g, b});
    const float d = mx - mn;
    float h = 0.f;
    if (d > 0.f) {
      if (mx == r) h = (g - b) / d;
      else if (mx == g) h = 2.f + (b - r) / d;
      else h = 4.f + (r - g) / d;
      h /= 6.f;
    }
    const float s = mx > 0.f ? d / mx : 0.f, v = mx;
    h = h + shift;
    h -= std::floor(h);
    const float h6 = h * 6.f;
    const int sector = std::min(static_cast<int>(h6), 5);
    const float fr = h6 - sector;
    const float p = v * (1.f - s), q = v * (1.f - s * fr), t = v * (1.f - s * (1.f - fr));
    float o[3];
    switch (sector) {
      case 0: o[0] = v; o[1] = t; o[2] = p; break;
      case 1: o[0] = q; o[1] = v; o[2] = p; break;
      case 2: o[0] = p; o[1] = v; o[2] = t; break;
      case 3: o[0] = p; o[1] = q; o[2] = v; break;
      case 4: o[0] = t; o[1] = p; o[2] = v; break;
      default: o[0] = v; o[1] = p; o[2] = q; break;
    }
    for (int c = 0; c < 3; ++c) px[i + c] = clamp01(o[c]);
  }
}

template <class F>
Image adjust(const Image& img, const char* op, F&& f) {
  check_image(img, op);
  FloatImage fl = to_float(img);
  f(fl.pixels);
  return from_float(fl);
}

}  // namespace

Image adjust_brightness(const Image& img, float factor) {
  GEOLOC_CHECK(factor >= 0.f, ValueError, "adjust_brightness: factor ", factor, " is negative");
  return adjust(img, "adjust_brightness", [&](std::vector<float>& p) { brightness_f(p, factor); });
}
Image adjust_contrast(const Image& img, float factor) {
  GEOLOC_CHECK(factor >= 0.f, ValueError, "adjust_contrast: factor ", factor, " is negative");
  return adjust(img, "adjust_contrast", [&](std::vector<float>& p) { contrast_f(p, factor); });
}
Image adjust_saturation(const Image& img, float factor) {
  GEOLOC_CHECK(factor >= 0.f, ValueError, "adjust_saturation: factor ", factor, " is negative");
  return adjust(img, "adjust_saturation", [&](std::vector<float>& p) { saturation_f(p, factor); });
}
Image adjust_hue(const Image& img, float shift) {
  GEOLOC_CHECK(std::abs(shift) <= 0.5f, ValueError, "adjust_hue: shift ", shift, " is outside [-0.5, 0.5]");
  return adjust(img, "adjust_hue", [&](std::vector<float>& p) { hue_f(p, shift); });
}

Image color_jitter(const Image& img, const ColorJitter& j, random::Rng& rng) {
  check_image(img, "color_jitter");
  GEOLOC_CHECK(j.brightness >= 0 && j.contrast >= 0 && j.saturation >= 0 && j.hue >= 0 && j.hue <= 0.5f,
               ValueError, "color_jitter: strengths must be >= 0 (hue <= 0.5), got brightness ", j.brightness,
               " contrast ", j.contrast, " saturation ", j.saturation, " hue ", j.hue);
  // Order first, then the factors, like torchvision's get_params; the draws are made even for
  // disabled adjustments' order slots so that enabling one does not reshuffle the others' order.
  int order[4] = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[random::below(rng, static_cast<uint64_t>(i) + 1)]);
  auto factor = [&](float v) { return static_cast<float>(random::uniform(rng, std::max(0.0, 1.0 - v), 1.0 + v)); };
  const float fb = j.brightness > 0 ? factor(j.brightness) : 1.f;
  const float fc = j.contrast > 0 ? factor(j.contrast) : 1.f;
  const float fs = j.saturation > 0 ? factor(j.saturation) : 1.f;
  const float fh = j.hue > 0 ? static_cast<float>(random::uniform(rng, -j.hue, j.hue)) : 0.f;
  if (fb == 1.f && fc == 1.f && fs == 1.f && fh == 0.f) return img;
  FloatImage fl = to_float(img);
  for (int op : order) {
    switch (op) {
      case 0: if (j.brightness > 0) brightness_f(fl.pixels, fb); break;
      case 1: if (j.contrast > 0) contrast_f(fl.pixels, fc); break;
      case 2: if (j.saturation > 0) saturation_f(fl.pixels, fs); break;
      case 3: if (j.hue > 0) hue_f(fl.pixels, fh); break;
    }
  }
  return from_float(fl);
}

// ---------------------------------------------------------------- pipelines
Pipeline& Pipeline::add(Transform t) {
  GEOLOC_CHECK(static_cast<bool>(t), ValueError, "Pipeline::add: empty transform");
  steps_.push_back(std::move(t));
  return *this;
}

Image Pipeline::operator()(const Image& img, random::Rng& rng) const {
  if (steps_.empty()) return img;
  Image cur = steps_[0](img, rng);
  for (size_t i = 1; i < steps_.size(); ++i) cur = steps_[i](cur, rng);
  return cur;
}

Transform random_flip(double p) {
  GEOLOC_CHECK(p >= 0 && p <= 1, ValueError, "random_flip: probability ", p, " is outside [0, 1]");
  return [p](const Image& img, random::Rng& rng) { return random::uniform(rng, 0, 1) < p ? flip_horizontal(img) : img; };
}

Pipeline train_pipeline(int size, const ColorJitter& jitter, const RandomResizedCropOptions& crop_opts, double flip) {
  GEOLOC_CHECK(size > 0, ValueError, "train_pipeline: size ", size, " is not positive");
  Pipeline p;
  p.add([size, crop_opts](const Image& img, random::Rng& rng) { return random_resized_crop(img, size, size, rng, crop_opts); });
  if (flip > 0) p.add(random_flip(flip));
  if (jitter.brightness > 0 || jitter.contrast > 0 || jitter.saturation > 0 || jitter.hue > 0)
    p.add([jitter](const Image& img, random::Rng& rng) { return color_jitter(img, jitter, rng); });
  return p;
}

Pipeline eval_pipeline(int resize_to, int size) {
  GEOLOC_CHECK(resize_to > 0 && size > 0 && size <= resize_to, ValueError, "eval_pipeline: crop ", size,
               " must be positive and at most the resize ", resize_to);
  Pipeline p;
  p.add([resize_to](const Image& img, random::Rng&) { return resize_shorter(img, resize_to); });
  p.add([size](const Image& img, random::Rng&) { return center_crop(img, size, size); });
  return p;
}

// ---------------------------------------------------------------- normalisation
void normalize_into(const Image& img, const Normalization& n, float* dst) {
  check_image(img, "normalize");
  for (int c = 0; c < 3; ++c)
    GEOLOC_CHECK(n.std[c] > 0 && std::isfinite(n.mean[c]), ValueError, "normalize: channel ", c, " has std ",
                 n.std[c], " and mean ", n.mean[c], "; std must be positive and mean finite");
  // A 3 x 256 table: one load per byte instead of a subtract and a divide.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (v / 255.f - n.mean[c]) / n.std[c];
  const size_t np = static_cast<size_t>(img.width) * img.height;
  const uint8_t* s = img.pixels.data();
  for (size_t i = 0; i < np; ++i) {
    dst[3 * i] = lut[0][s[3 * i]];
    dst[3 * i + 1] = lut[1][s[3 * i + 1]];
    dst[3 * i + 2] = lut[2][s[3 * i + 2]];
  }
}

FloatImage normalize(const Image& img, const Normalization& n) {
  FloatImage out(img.width, img.height);
  normalize_into(img, n, out.pixels.data());
  return out;
}

Tensor pack_batch(const std::vector<Image>& images, const Normalization& n) {
  GEOLOC_CHECK(!images.empty(), ValueError, "pack_batch: no images");
  const int W = images[0].width, H = images[0].height;
  for (size_t i = 0; i < images.size(); ++i)
    GEOLOC_CHECK(images[i].width == W && images[i].height == H, ShapeError, "pack_batch: image ", i, " is ",
                 images[i].width, "x", images[i].height, " but image 0 is ", W, "x", H,
                 "; a batch needs one size (crop or resize first)");
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(images.size()), H, W, 3}, DType::F32, Device::cpu());
  float* d = t.data<float>();
  const size_t per = static_cast<size_t>(W) * H * 3;
  for (size_t i = 0; i < images.size(); ++i) normalize_into(images[i], n, d + i * per);
  return t;
}

}  // namespace geoloc::image
