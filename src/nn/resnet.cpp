// ResNet backbones with torchvision's names and initialisation.
#include "geoloc/nn/resnet.hpp"

#include <cstring>

#include "geoloc/backend.hpp"

namespace geoloc::nn {

// ---------------------------------------------------------------- config
ResNetConfig ResNetConfig::resnet18() { return {}; }
ResNetConfig ResNetConfig::resnet34() {
  ResNetConfig c;
  c.layers = {3, 4, 6, 3};
  return c;
}
ResNetConfig ResNetConfig::resnet50() {
  ResNetConfig c = resnet34();
  c.block = BlockType::Bottleneck;
  return c;
}
ResNetConfig ResNetConfig::resnet101() {
  ResNetConfig c = resnet50();
  c.layers = {3, 4, 23, 3};
  return c;
}
ResNetConfig ResNetConfig::small() {
  ResNetConfig c;
  c.layers = {2, 2, 2};
  c.base_width = 16;
  c.stem_kernel = 3;
  c.stem_stride = 2;
  c.stem_pool = false;
  return c;
}

int64_t ResNetConfig::embedding_dim() const {
  return static_cast<int64_t>(base_width) << (layers.size() - 1) << (expansion() == 4 ? 2 : 0);
}

void ResNetConfig::validate() const {
  GEOLOC_CHECK(!layers.empty() && layers.size() <= 4, ValueError, "ResNetConfig: ", layers.size(),
               " stages, expected 1 to 4");
  for (int l : layers) GEOLOC_CHECK(l >= 1 && l <= 64, ValueError, "ResNetConfig: ", l, " blocks in a stage");
  GEOLOC_CHECK(base_width >= 1 && base_width <= 4096, ValueError, "ResNetConfig: base width ", base_width);
  GEOLOC_CHECK(stem_kernel >= 1 && stem_kernel <= 15 && stem_kernel % 2 == 1, ValueError,
               "ResNetConfig: stem kernel ", stem_kernel, " must be odd, 1 to 15");
  GEOLOC_CHECK(stem_stride >= 1 && stem_stride <= 4, ValueError, "ResNetConfig: stem stride ", stem_stride);
  GEOLOC_CHECK(in_channels >= 1, ValueError, "ResNetConfig: ", in_channels, " input channels");
}

namespace {
// a * b and a + b for non-negative values, saturating at INT64_MAX
int64_t sat_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t sat_add(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}
}  // namespace

int64_t ResNetConfig::state_size() const {
  // What the constructors below register: conv weights out*in*k*k (no bias), batch norm 4 per channel
  // (weight, bias, running mean, running variance).
  auto conv = [](int64_t in, int64_t out, int64_t k) { return sat_mul(sat_mul(in, out), k * k); };
  auto bn = [](int64_t c) { return sat_mul(c, 4); };
  const int64_t w = base_width;
  int64_t n = sat_add(conv(in_channels, w, stem_kernel), bn(w));
  int64_t in = w;
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t planes = w << i, out = planes * expansion();
    for (int b = 0; b < layers[i]; ++b) {
      const bool stride2 = b == 0 && i > 0;
      if (block == BlockType::Basic) {
        n = sat_add(n, conv(in, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes));
      } else {
        n = sat_add(n, conv(in, planes, 1) + bn(planes) + conv(planes, planes, 3) + bn(planes) +
                           conv(planes, out, 1) + bn(out));
      }
      if (stride2 || in != out) n = sat_add(n, conv(in, out, 1) + bn(out));  // downsample
      in = out;
    }
  }
  return n;
}

std::string ResNetConfig::name() const {
  if (in_channels == 3) {
    for (auto [n, c] : {std::pair{"resnet18", resnet18()}, {"resnet34", resnet34()}, {"resnet50", resnet50()},
                        {"resnet101", resnet101()}, {"small", small()}})
      if (c == *this) return n;
  }
  std::string s = std::string("resnet:") + (block == BlockType::Basic ? "basic" : "bottleneck") + ":";
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i) s += '-';
    s += std::to_string(layers[i]);
  }
  s += ":w" + std::to_string(base_width) + ":k" + std::to_string(stem_kernel) + "s" + std::to_string(stem_stride) +
       ":" + (stem_pool ? "pool" : "nopool");
  if (in_channels != 3) s += ":c" + std::to_string(in_channels);
  return s;
}

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}
int to_int(const std::string& s, const std::string& arch) {
  GEOLOC_CHECK(!s.empty() && s.size() <= 6 && s.find_first_not_of("0123456789") == std::string::npos, ValueError,
               "architecture '", arch, "': '", s, "' is not a number");
  return std::stoi(s);
}
}  // namespace

ResNetConfig ResNetConfig::parse(const std::string& arch) {
  if (arch == "resnet18") return resnet18();
  if (arch == "resnet34") return resnet34();
  if (arch == "resnet50") return resnet50();
  if (arch == "resnet101") return resnet101();
  if (arch == "small") return small();
  const auto f = split(arch, ':');
  GEOLOC_CHECK((f.size() == 6 || f.size() == 7) && f[0] == "resnet", ValueError, "unknown architecture '", arch,
               "' (expected resnet18, resnet34, resnet50, resnet101, small or "
               "resnet:<basic|bottleneck>:<a-b-c-d>:w<width>:k<kernel>s<stride>:<pool|nopool>)");
  ResNetConfig c;
  GEOLOC_CHECK(f[1] == "basic" || f[1] == "bottleneck", ValueError, "architecture '", arch, "': block '", f[1],
               "' is neither basic nor bottleneck");
  c.block = f[1] == "basic" ? BlockType::Basic : BlockType::Bottleneck;
  c.layers.clear();
  for (const auto& l : split(f[2], '-')) c.layers.push_back(to_int(l, arch));
  GEOLOC_CHECK(f[3].size() > 1 && f[3][0] == 'w', ValueError, "architecture '", arch, "': width field '", f[3], "'");
  c.base_width = to_int(f[3].substr(1), arch);
  const auto s = f[4].find('s');
  GEOLOC_CHECK(f[4].size() > 1 && f[4][0] == 'k' && s != std::string::npos, ValueError, "architecture '", arch,
               "': stem field '", f[4], "' (expected k<kernel>s<stride>)");
  c.stem_kernel = to_int(f[4].substr(1, s - 1), arch);
  c.stem_stride = to_int(f[4].substr(s + 1), arch);
  GEOLOC_CHECK(f[5] == "pool" || f[5] == "nopool", ValueError, "architecture '", arch, "': '", f[5],
               "' is neither pool nor nopool");
  c.stem_pool = f[5] == "pool";
  if (f.size() == 7) {
    GEOLOC_CHECK(f[6].size() > 1 && f[6][0] == 'c', ValueError, "architecture '", arch, "': channel field '", f[6], "'");
    c.in_channels = to_int(f[6].substr(1), arch);
  }
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw ValueError("architecture '" + arch + "': " + e.what());
  }
  return c;
}

// ---------------------------------------------------------------- blocks
namespace {
// torchvision: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"); fan_out = Cout * KH * KW.
std::shared_ptr<Conv2d> make_conv(int64_t in, int64_t out, int k, int stride, random::Rng& rng) {
  auto c = std::make_shared<Conv2d>(in, out, k, stride, k / 2, false, rng);
  kaiming_normal_fan_out_(c->weight, out * k * k, rng);
  return c;
}
}  // namespace

namespace {
// relu?(bn(conv(x)) + residual), where residual may be undefined, on any device. In inference (BN in eval
// mode and nothing that needs a gradient) it is one fused op: the BN is folded, from the current running
// statistics and parameters, into a per-channel scale and shift that the convolution applies in its
// epilogue together with the residual and the ReLU; nothing is cached, so changed weights are always seen.
// In training the BN, residual and ReLU after the convolution are one op (ops::batch_norm_act). A frozen
// backbone that still passes gradients (eval BN, input needing a gradient) takes the separate ops.
Tensor conv_bn_act(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x, bool bn_training, bool relu,
                   const Tensor& residual = {}) {
  if (!bn_training && !conv.bias.defined() && !needs_grad({&x, &conv.weight, &bn.weight, &bn.bias, &residual}))
    return ops::conv2d_bn_act(x, working_copy(conv.weight, x.dtype()), bn.weight, bn.bias, bn.running_mean,
                              bn.running_var, bn.eps, residual, relu, conv.stride, conv.pad);
  Tensor y = conv.forward(x);
  if (bn_training)
    return ops::batch_norm_act(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps,
                               residual, relu);
  y = ops::batch_norm(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, false, bn.momentum, bn.eps);
  if (residual.defined()) return relu ? ops::add_relu(y, residual) : ops::add(y, residual);
  return relu ? ops::relu(y) : y;
}
}  // namespace

Tensor conv_bn(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x, bool bn_training) {
  return conv_bn_act(conv, bn, x, bn_training, false);
}

Downsample::Downsample(int64_t in, int64_t out, int stride, random::Rng& rng) {
  conv = register_module("0", make_conv(in, out, 1, stride, rng));
  bn = register_module("1", std::make_shared<BatchNorm2d>(out));
}

BasicBlock::BasicBlock(int64_t in, int64_t planes, int stride, random::Rng& rng) {
  conv1 = register_module("conv1", make_conv(in, planes, 3, stride, rng));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", make_conv(planes, planes, 3, 1, rng));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (stride != 1 || in != planes) downsample = register_module("downsample", std::make_shared<Downsample>(in, planes, stride, rng));
}

Tensor BasicBlock::forward(const Tensor& x, bool t) const {
  const Tensor y = conv_bn_act(*conv1, *bn1, x, t, true);
  return conv_bn_act(*conv2, *bn2, y, t, true, downsample ? downsample->forward(x, t) : x);
}

Bottleneck::Bottleneck(int64_t in, int64_t planes, int stride, random::Rng& rng) {
  conv1 = register_module("conv1", make_conv(in, planes, 1, 1, rng));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", make_conv(planes, planes, 3, stride, rng));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  conv3 = register_module("conv3", make_conv(planes, planes * 4, 1, 1, rng));
  bn3 = register_module("bn3", std::make_shared<BatchNorm2d>(planes * 4));
  if (stride != 1 || in != planes * 4)
    downsample = register_module("downsample", std::make_shared<Downsample>(in, planes * 4, stride, rng));
}

Tensor Bottleneck::forward(const Tensor& x, bool t) const {
  Tensor y = conv_bn_act(*conv1, *bn1, x, t, true);
  y = conv_bn_act(*conv2, *bn2, y, t, true);
  return conv_bn_act(*conv3, *bn3, y, t, true, downsample ? downsample->forward(x, t) : x);
}

void ResNetStage::add(std::shared_ptr<ResidualBlock> b) {
  blocks.push_back(register_module(std::to_string(blocks.size()), std::move(b)));
}

Tensor ResNetStage::forward(const Tensor& x, bool t) const {
  Tensor y = x;
  for (const auto& b : blocks) y = b->forward(y, t);
  return y;
}

// ---------------------------------------------------------------- backbone
ResNet::ResNet(const ResNetConfig& cfg, uint64_t seed) : cfg_(cfg) {
  cfg_.validate();
  random::Rng rng(seed);
  const int64_t w = cfg_.base_width;
  conv1 = register_module("conv1", make_conv(cfg_.in_channels, w, cfg_.stem_kernel, cfg_.stem_stride, rng));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(w));
  int64_t in = w;
  for (size_t i = 0; i < cfg_.layers.size(); ++i) {
    auto stage = std::make_shared<ResNetStage>();
    const int64_t planes = w << i;
    for (int b = 0; b < cfg_.layers[i]; ++b) {
      const int stride = (b == 0 && i > 0) ? 2 : 1;
      if (cfg_.block == BlockType::Basic) {
        stage->add(std::make_shared<BasicBlock>(in, planes, stride, rng));
      } else {
        stage->add(std::make_shared<Bottleneck>(in, planes, stride, rng));
      }
      in = planes * cfg_.expansion();
    }
    stages.push_back(register_module("layer" + std::to_string(i + 1), stage));
  }
}

Tensor ResNet::forward(const Tensor& x, bool t) const {
  GEOLOC_CHECK(x.defined() && x.ndim() == 4 && x.dim(3) == cfg_.in_channels, ShapeError, "ResNet (", cfg_.name(),
               "): input must be NHWC [N, H, W, ", cfg_.in_channels, "], got ", x.defined() ? x.str() : "undefined");
  Tensor y = conv_bn_act(*conv1, *bn1, x, t, true);
  if (cfg_.stem_pool) y = ops::max_pool2d(y, 3, 2, 1);
  for (const auto& s : stages) y = s->forward(y, t);
  return ops::global_avg_pool(y);
}

Tensor nchw_to_nhwc(const Tensor& x) {
  check_f32(x, "nchw_to_nhwc");
  check_ndim(x, 4, "nchw_to_nhwc input");
  const Tensor h = x.to(Device::cpu());
  const int64_t n = x.dim(0), c = x.dim(1), hh = x.dim(2), w = x.dim(3);
  Tensor out = Tensor::empty({n, hh, w, c});
  const float* s = h.data<float>();
  float* d = out.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hh * w; ++p) d[(i * hh * w + p) * c + ch] = s[(i * c + ch) * hh * w + p];
  return out.to(x.device());
}

}  // namespace geoloc::nn
