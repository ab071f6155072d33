#pragma once
// Modules: named parameters and buffers (names follow PyTorch's state_dict), train/eval mode,
// device moves, and the basic layers. Layers initialise like PyTorch's defaults, from a seeded random::Rng.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "geoloc/ops.hpp"
#include "geoloc/random.hpp"

namespace geoloc::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Initialisers (fill an F32 tensor in place, any device).
void uniform_(Tensor& t, float lo, float hi, random::Rng& rng);
void normal_(Tensor& t, float mean, float stddev, random::Rng& rng);
/// PyTorch's default for Conv2d/Linear weights: kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void kaiming_uniform_default_(Tensor& t, int64_t fan_in, random::Rng& rng);
/// torchvision's ResNet conv init: kaiming_normal(mode = fan_out, nonlinearity = relu) = N(0, sqrt(2/fan_out)).
void kaiming_normal_fan_out_(Tensor& t, int64_t fan_out, random::Rng& rng);

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Training mode (batch statistics, dropout) for this module and its children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Parameters with their dotted names ("layer1.0.conv1.weight"), children first-registered first.
  NamedTensors named_parameters() const;
  /// Buffers (BN running statistics) with their dotted names.
  NamedTensors named_buffers() const;
  /// Parameters then buffers: everything a weights file holds.
  NamedTensors state() const;
  std::vector<Tensor> parameters() const;
  /// Looks up a parameter or buffer by its dotted name; nullptr if absent.
  Tensor* find(const std::string& name);
  /// Moves every parameter and buffer to `d` (parameters keep requires_grad; gradients are dropped).
  void to(Device d);
  Device device() const;
  void zero_grad();
  /// Freezes (or unfreezes) every parameter of this module: requires_grad = !frozen.
  void set_frozen(bool frozen);

 protected:
  /// Registers a member tensor as a parameter (requires_grad = true). The pointer must outlive the module.
  void register_parameter(std::string name, Tensor* t);
  void register_buffer(std::string name, Tensor* t);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    children_.emplace_back(std::move(name), m);
    return m;
  }

 private:
  void collect(const std::string& prefix, bool params, NamedTensors& out) const;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

/// Mixed precision: parameter p as the working copy for an input of dtype t. A bf16 input makes a bf16 copy
/// of the f32 master (ops::to_dtype, in every forward), whose gradient reaches the master as f32; otherwise
/// p.
inline Tensor working_copy(const Tensor& p, DType t) {
  return p.defined() && p.dtype() != t ? ops::to_dtype(p, t) : p;
}

/// 2-D convolution over NHWC input; weight [Cout, K, K, Cin] (OHWI), optional bias; with a bf16 input, in
/// bf16 (working copies of the weights).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int kernel, int stride, int pad, bool bias, random::Rng& rng);
  Tensor forward(const Tensor& x) const {
    return ops::conv2d(x, working_copy(weight, x.dtype()), working_copy(bias, x.dtype()), stride, pad);
  }
  Tensor weight, bias;
  int stride, pad;
};

/// Batch normalisation over the last (channel) axis; PyTorch's defaults (eps 1e-5, momentum 0.1).
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& x) const {
    return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps);
  }
  Tensor weight, bias, running_mean, running_var;
  float eps, momentum;
};

/// y = x W^T + b with W [out, in]; with a bf16 input, in bf16 (working copies of the weights).
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, random::Rng& rng);
  Tensor forward(const Tensor& x) const {
    return ops::linear(x, working_copy(weight, x.dtype()), working_copy(bias, x.dtype()));
  }
  Tensor weight, bias;
};

}  // namespace geoloc::nn
