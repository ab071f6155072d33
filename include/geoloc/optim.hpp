#pragma once
// Optimisers with PyTorch's update rules: SGD (momentum, Nesterov) and AdamW. Weight decay can skip
// one-dimensional parameters (batch-norm scales and shifts, biases), as is usual for ResNets.
#include <cstdint>
#include <string>
#include <vector>

#include "geoloc/module.hpp"

namespace geoloc::optim {

class Optimizer {
 public:
  /// `params`: named parameters (e.g. Module::named_parameters()); frozen ones (no requires_grad) are skipped.
  Optimizer(const nn::NamedTensors& params, float lr, float weight_decay, bool decay_1d);
  virtual ~Optimizer() = default;
  /// Applies one update to every parameter that has a gradient.
  virtual void step() = 0;
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  int64_t steps() const { return steps_; }
  /// Optimiser state (momentum / moment buffers) by name, plus "step", for checkpoints.
  virtual nn::NamedTensors state() const = 0;
  /// Restores state(); names and shapes must match.
  void load_state(const nn::NamedTensors& state);

 protected:
  struct Param {
    std::string name;
    Tensor value;
    float weight_decay;
  };
  std::vector<Param> params_;
  float lr_;
  int64_t steps_ = 0;
  virtual Tensor* state_tensor(const std::string& name) = 0;
};

struct SgdOptions {
  float lr = 0.1f;
  float momentum = 0.9f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool decay_1d = true;  // false: no weight decay on batch-norm parameters and biases
};

class Sgd : public Optimizer {
 public:
  Sgd(const nn::NamedTensors& params, const SgdOptions& o);
  void step() override;
  nn::NamedTensors state() const override;

 private:
  Tensor* state_tensor(const std::string& name) override;
  SgdOptions o_;
  std::vector<Tensor> momentum_;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;
  bool decay_1d = true;
};

class AdamW : public Optimizer {
 public:
  AdamW(const nn::NamedTensors& params, const AdamWOptions& o);
  void step() override;
  nn::NamedTensors state() const override;

 private:
  Tensor* state_tensor(const std::string& name) override;
  AdamWOptions o_;
  std::vector<Tensor> m_, v_;
};

/// Scales all gradients so that their global L2 norm is at most max_norm; returns the norm before clipping.
float clip_grad_norm(const std::vector<Tensor>& params, float max_norm);

}  // namespace geoloc::optim
