#include "geoloc/optim.hpp"

#include <cmath>

#include "geoloc/dispatch.hpp"

namespace geoloc::optim {

Optimizer::Optimizer(const nn::NamedTensors& params, float lr, float weight_decay, bool decay_1d) : lr_(lr) {
  GEOLOC_CHECK(lr >= 0.0f && weight_decay >= 0.0f, ValueError, "optimiser: learning rate ", lr,
               " and weight decay ", weight_decay, " must be non-negative");
  for (const auto& [name, t] : params) {
    if (!t.requires_grad()) continue;
    params_.push_back({name, t, (t.ndim() <= 1 && !decay_1d) ? 0.0f : weight_decay});
  }
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.value.zero_grad();
}

void Optimizer::load_state(const nn::NamedTensors& state) {
  // Check every entry, and that none is missing, before changing anything.
  const nn::NamedTensors expected = this->state();
  GEOLOC_CHECK(state.size() == expected.size(), ValueError, "optimiser state has ", state.size(), " entries, expected ",
               expected.size());
  int64_t steps = -1;
  std::vector<std::pair<Tensor*, Tensor>> copies;
  for (const auto& [name, t] : state) {
    if (name == "step") {
      GEOLOC_CHECK(t.numel() == 1 && t.dtype() == DType::I32, ValueError, "optimiser state 'step' must be one i32, got ",
                   t.str());
      steps = t.to_labels()[0];
      continue;
    }
    Tensor* dst = state_tensor(name);
    GEOLOC_CHECK(dst, ValueError, "optimiser state: unknown entry '", name, "'");
    GEOLOC_CHECK(dst->shape() == t.shape(), ShapeError, "optimiser state '", name, "' has shape ", t.shape().str(),
                 ", expected ", dst->shape().str());
    copies.emplace_back(dst, t);
  }
  GEOLOC_CHECK(steps >= 0, ValueError, "optimiser state has no valid 'step'");
  for (auto& [dst, src] : copies) dst->copy_(src.to(dst->device()));
  steps_ = steps;
}

Sgd::Sgd(const nn::NamedTensors& params, const SgdOptions& o)
    : Optimizer(params, o.lr, o.weight_decay, o.decay_1d), o_(o) {
  GEOLOC_CHECK(o.momentum >= 0.0f && (!o.nesterov || (o.momentum > 0.0f && o.dampening == 0.0f)), ValueError,
               "SGD: Nesterov needs momentum > 0 and no dampening (momentum ", o.momentum, ", dampening ",
               o.dampening, ")");
  for (auto& p : params_)
    momentum_.push_back(o.momentum > 0.0f ? Tensor::zeros(p.value.shape(), DType::F32, p.value.device()) : Tensor());
}

void Sgd::step() {
  NoGradGuard ng;
  // every parameter in one backend call (one kernel launch per ~200 tensors on the GPU)
  std::vector<OptimSlot> slots;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].value.grad();
    if (g.defined()) slots.push_back({params_[i].value, g, momentum_[i], Tensor(), params_[i].weight_decay});
  }
  if (!slots.empty())
    GEOLOC_DISPATCH(slots[0].param.device(), sgd_step, slots, lr_, o_.momentum, o_.dampening, o_.nesterov,
                    steps_ == 0);
  ++steps_;
}

nn::NamedTensors Sgd::state() const {
  nn::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i)
    if (momentum_[i].defined()) out.emplace_back("momentum." + params_[i].name, momentum_[i]);
  out.emplace_back("step", Tensor::from_labels({static_cast<int32_t>(steps_)}));
  return out;
}

Tensor* Sgd::state_tensor(const std::string& name) {
  for (size_t i = 0; i < params_.size(); ++i)
    if (momentum_[i].defined() && name == "momentum." + params_[i].name) return &momentum_[i];
  return nullptr;
}

AdamW::AdamW(const nn::NamedTensors& params, const AdamWOptions& o)
    : Optimizer(params, o.lr, o.weight_decay, o.decay_1d), o_(o) {
  for (auto& p : params_) {
    m_.push_back(Tensor::zeros(p.value.shape(), DType::F32, p.value.device()));
    v_.push_back(Tensor::zeros(p.value.shape(), DType::F32, p.value.device()));
  }
}

void AdamW::step() {
  NoGradGuard ng;
  ++steps_;
  std::vector<OptimSlot> slots;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].value.grad();
    if (g.defined()) slots.push_back({params_[i].value, g, m_[i], v_[i], params_[i].weight_decay});
  }
  if (!slots.empty())
    GEOLOC_DISPATCH(slots[0].param.device(), adamw_step, slots, lr_, o_.beta1, o_.beta2, o_.eps, steps_);
}

nn::NamedTensors AdamW::state() const {
  nn::NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].name, m_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].name, v_[i]);
  }
  out.emplace_back("step", Tensor::from_labels({static_cast<int32_t>(steps_)}));
  return out;
}

Tensor* AdamW::state_tensor(const std::string& name) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (name == "exp_avg." + params_[i].name) return &m_[i];
    if (name == "exp_avg_sq." + params_[i].name) return &v_[i];
  }
  return nullptr;
}

float clip_grad_norm(const std::vector<Tensor>& params, float max_norm) {
  GEOLOC_CHECK(max_norm > 0.0f, ValueError, "gradient clipping: max_norm must be positive, got ", max_norm);
  double sq = 0.0;
  for (const auto& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    for (float v : g.to_vector()) sq += static_cast<double>(v) * v;
  }
  const float norm = static_cast<float>(std::sqrt(sq));
  if (norm > max_norm && norm > 0.0f) {
    const float k = max_norm / (norm + 1e-6f);
    for (const auto& p : params) {
      const Tensor g = p.grad();
      if (g.defined()) GEOLOC_DISPATCH(g.device(), scale, g, k, g);
    }
  }
  return norm;
}

}  // namespace geoloc::optim
