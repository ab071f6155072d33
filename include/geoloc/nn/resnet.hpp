#pragma once
// ResNet backbones (torchvision v1.5 layout: the stride of a Bottleneck sits on its 3x3 conv) that
// end in a global average pool and return the embedding [N, D]; there is no `fc`. Parameter and
// buffer names are torchvision's state_dict names: conv1.weight, bn1.running_mean,
// layer1.0.conv1.weight, layer2.0.downsample.0.weight, layer2.0.downsample.1.running_var, ...
// Input is NHWC [N, H, W, C]; conv weights are OHWI (PyTorch's OIHW is converted when loading).
#include <memory>
#include <string>
#include <vector>

#include "geoloc/module.hpp"

namespace geoloc::nn {

enum class BlockType { Basic, Bottleneck };

/// The architecture of a backbone. The standard ones are resnet18/34/50/101(); the knobs make CPU-sized
/// variants (narrower: base_width; shorter: layers; a gentler stem for small images).
struct ResNetConfig {
  BlockType block = BlockType::Basic;
  std::vector<int> layers{2, 2, 2, 2};  // blocks per stage (1 to 4 stages); stage i has base_width << i planes
  int base_width = 64;                   // planes of layer1 (torchvision: 64)
  int stem_kernel = 7;                   // conv1 kernel (padding kernel/2)
  int stem_stride = 2;
  bool stem_pool = true;                 // 3x3 stride-2 max-pool after the stem
  int in_channels = 3;

  static ResNetConfig resnet18();
  static ResNetConfig resnet34();
  static ResNetConfig resnet50();
  static ResNetConfig resnet101();
  /// For 64x64 images on a CPU: BasicBlock, 3 stages of 2 blocks, width 16, 3x3 stride-2 stem, no
  /// max-pool; embedding 64, about 0.17 M parameters, ~30 M multiply-adds per image.
  static ResNetConfig small();

  int expansion() const { return block == BlockType::Basic ? 1 : 4; }
  /// Size of the embedding: the last stage's planes times the block expansion.
  int64_t embedding_dim() const;
  /// "resnet18", "resnet50", "small" for the named configurations, otherwise the custom form
  /// "resnet:<basic|bottleneck>:<layers a-b-c>:w<width>:k<kernel>s<stride>:<pool|nopool>".
  std::string name() const;
  /// Inverse of name(); ValueError naming the string on anything else.
  static ResNetConfig parse(const std::string& arch);
  /// ValueError describing the first invalid field.
  void validate() const;
  /// Values in the backbone's parameters and buffers (its state: what a weights file must hold for it),
  /// computed without building it; saturates at INT64_MAX. For a valid configuration.
  int64_t state_size() const;
  bool operator==(const ResNetConfig& o) const = default;
};

/// A conv + batch-norm pair run with an explicit BN mode (so a frozen backbone can keep BN in eval).
Tensor conv_bn(const Conv2d& conv, const BatchNorm2d& bn, const Tensor& x, bool bn_training);

/// A residual block; forward(x, bn_training) returns relu(body(x) + shortcut(x)).
class ResidualBlock : public Module {
 public:
  virtual Tensor forward(const Tensor& x, bool bn_training) const = 0;
};

/// torchvision's `downsample`: Sequential(conv1x1 stride s, BatchNorm2d), children named "0" and "1".
class Downsample : public Module {
 public:
  Downsample(int64_t in, int64_t out, int stride, random::Rng& rng);
  Tensor forward(const Tensor& x, bool bn_training) const { return conv_bn(*conv, *bn, x, bn_training); }
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
};

class BasicBlock : public ResidualBlock {
 public:
  BasicBlock(int64_t in, int64_t planes, int stride, random::Rng& rng);
  Tensor forward(const Tensor& x, bool bn_training) const override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Downsample> downsample;  // null when the shapes already match
};

class Bottleneck : public ResidualBlock {
 public:
  /// in -> planes (1x1) -> planes (3x3, stride) -> 4*planes (1x1).
  Bottleneck(int64_t in, int64_t planes, int stride, random::Rng& rng);
  Tensor forward(const Tensor& x, bool bn_training) const override;
  std::shared_ptr<Conv2d> conv1, conv2, conv3;
  std::shared_ptr<BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<Downsample> downsample;
};

/// torchvision's `layerK`: a Sequential of blocks named "0", "1", ...
class ResNetStage : public Module {
 public:
  void add(std::shared_ptr<ResidualBlock> b);
  Tensor forward(const Tensor& x, bool bn_training) const;
  std::vector<std::shared_ptr<ResidualBlock>> blocks;
};

/// The backbone. Initialised as torchvision: convs kaiming_normal(fan_out, relu), BN weight 1 bias 0,
/// deterministic in `seed`.
class ResNet : public Module {
 public:
  explicit ResNet(const ResNetConfig& cfg, uint64_t seed = 0);
  /// x NHWC [N, H, W, in_channels] -> embedding [N, embedding_dim()]; BN uses batch statistics when
  /// is_training().
  Tensor forward(const Tensor& x) const { return forward(x, is_training()); }
  /// Same with the BN mode given explicitly.
  Tensor forward(const Tensor& x, bool bn_training) const;
  const ResNetConfig& config() const { return cfg_; }
  int64_t embedding_dim() const { return cfg_.embedding_dim(); }

  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::vector<std::shared_ptr<ResNetStage>> stages;  // layer1..layerK

 private:
  ResNetConfig cfg_;
};

/// NCHW [N, C, H, W] (PyTorch's image layout) -> NHWC [N, H, W, C], a copy on the host (CPU tensors).
Tensor nchw_to_nhwc(const Tensor& x);

}  // namespace geoloc::nn
