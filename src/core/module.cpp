#include "geoloc/module.hpp"

#include <cmath>

namespace geoloc::nn {

namespace {
// Fills on the host and copies to the tensor's device, so the values do not depend on the device.
template <class Gen>
void fill_host(Tensor& t, Gen&& gen) {
  check_f32(t, "initialiser");
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (float& x : v) x = gen();
  t.copy_(Tensor::from_vector(t.shape(), v));
}
}  // namespace

void uniform_(Tensor& t, float lo, float hi, random::Rng& rng) {
  fill_host(t, [&] { return rng.uniform(lo, hi); });
}
void normal_(Tensor& t, float mean, float stddev, random::Rng& rng) {
  fill_host(t, [&] { return rng.normal(mean, stddev); });
}
void kaiming_uniform_default_(Tensor& t, int64_t fan_in, random::Rng& rng) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  uniform_(t, -bound, bound, rng);
}
void kaiming_normal_fan_out_(Tensor& t, int64_t fan_out, random::Rng& rng) {
  normal_(t, 0.0f, std::sqrt(2.0f / static_cast<float>(fan_out)), rng);
}

// ---------------------------------------------------------------- Module
void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::register_parameter(std::string name, Tensor* t) {
  check_defined(*t, name.c_str());
  t->set_requires_grad(true);
  params_.emplace_back(std::move(name), t);
}

void Module::register_buffer(std::string name, Tensor* t) {
  check_defined(*t, name.c_str());
  buffers_.emplace_back(std::move(name), t);
}

void Module::collect(const std::string& prefix, bool params, NamedTensors& out) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, *t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

NamedTensors Module::state() const {
  NamedTensors out = named_parameters();
  for (auto& b : named_buffers()) out.push_back(std::move(b));
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

Tensor* Module::find(const std::string& name) {
  for (auto& [n, t] : params_)
    if (n == name) return t;
  for (auto& [n, t] : buffers_)
    if (n == name) return t;
  for (auto& [cname, child] : children_) {
    if (name.size() > cname.size() && name.compare(0, cname.size(), cname) == 0 && name[cname.size()] == '.') {
      if (Tensor* t = child->find(name.substr(cname.size() + 1))) return t;
    }
  }
  return nullptr;
}

void Module::to(Device d) {
  for (auto& [n, t] : params_) {
    bool rg = t->requires_grad();
    *t = t->detach().to(d);
    t->set_requires_grad(rg);
  }
  for (auto& [n, t] : buffers_) *t = t->to(d);
  for (auto& [name, child] : children_) child->to(d);
}

Device Module::device() const {
  if (!params_.empty()) return params_.front().second->device();
  if (!buffers_.empty()) return buffers_.front().second->device();
  for (const auto& [name, child] : children_) return child->device();
  return Device::cpu();
}

void Module::zero_grad() {
  for (auto& [n, t] : params_) t->zero_grad();
  for (auto& [name, child] : children_) child->zero_grad();
}

void Module::set_frozen(bool frozen) {
  for (auto& [n, t] : params_) t->set_requires_grad(!frozen);
  for (auto& [name, child] : children_) child->set_frozen(frozen);
}

// ---------------------------------------------------------------- layers
Conv2d::Conv2d(int64_t in, int64_t out, int kernel, int stride_, int pad_, bool with_bias, random::Rng& rng)
    : stride(stride_), pad(pad_) {
  GEOLOC_CHECK(in > 0 && out > 0 && kernel > 0, ValueError, "Conv2d: invalid sizes in=", in, " out=", out,
               " kernel=", kernel);
  weight = Tensor::empty({out, kernel, kernel, in});
  const int64_t fan_in = in * kernel * kernel;
  kaiming_uniform_default_(weight, fan_in, rng);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Tensor::empty({out});
    kaiming_uniform_default_(bias, fan_in, rng);
    register_parameter("bias", &bias);
  }
}

BatchNorm2d::BatchNorm2d(int64_t channels, float eps_, float momentum_) : eps(eps_), momentum(momentum_) {
  weight = Tensor::full({channels}, 1.0f);
  bias = Tensor::zeros({channels});
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::full({channels}, 1.0f);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, random::Rng& rng) {
  GEOLOC_CHECK(in > 0 && out > 0, ValueError, "Linear: invalid sizes in=", in, " out=", out);
  weight = Tensor::empty({out, in});
  kaiming_uniform_default_(weight, in, rng);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Tensor::empty({out});
    kaiming_uniform_default_(bias, in, rng);
    register_parameter("bias", &bias);
  }
}

}  // namespace geoloc::nn
