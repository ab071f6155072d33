// The reverse-mode engine: topological order over the recorded nodes, gradient accumulation
// (copy-on-write where one gradient tensor feeds several inputs), and release of the graph.
#include "geoloc/autograd.hpp"

#include <unordered_map>
#include <unordered_set>

#include "geoloc/dispatch.hpp"

namespace geoloc {

namespace {
thread_local bool g_grad_enabled = true;
thread_local GradReadyHook g_grad_ready;  // empty: no hook (no bookkeeping either)

// dst += src, where dst is a buffer owned by the engine.
void accumulate(const Tensor& dst, const Tensor& src) { GEOLOC_DISPATCH(dst.device(), axpy, 1.0f, src, dst); }

struct PendingGrad {
  Tensor grad;
  bool owned = false;  // false: grad may be shared with another input; copy before accumulating
};

void add_into(PendingGrad& p, const Tensor& g) {
  if (!p.grad.defined()) {
    p.grad = g;
    p.owned = false;
    return;
  }
  if (!p.owned) {
    p.grad = p.grad.clone();
    p.owned = true;
  }
  accumulate(p.grad, g);
}
}  // namespace

GradReadyHookGuard::GradReadyHookGuard(GradReadyHook hook) : prev_(std::move(g_grad_ready)) {
  g_grad_ready = std::move(hook);
}
GradReadyHookGuard::~GradReadyHookGuard() { g_grad_ready = std::move(prev_); }

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool enabled) { g_grad_enabled = enabled; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward) {
  if (!g_grad_enabled) return;
  bool any = false;
  for (const auto& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return;
  out.impl().requires_grad = true;
  out.impl().grad_fn = std::make_shared<LambdaNode>(name, std::move(inputs), std::move(backward));
}

void Tensor::backward() const {
  GEOLOC_CHECK(numel() == 1, ShapeError, "backward() without a seed needs a one-element tensor, got ",
               shape().str(), "; pass a seed gradient");
  backward(Tensor::full(shape(), 1.0f, device()));
}

void Tensor::backward(const Tensor& seed) const {
  check_same_shape(*this, seed, "backward tensor", "seed gradient");
  GEOLOC_CHECK(requires_grad(), Error, "backward() on a tensor that does not require a gradient ", str());
  auto accumulate_leaf = [](TensorImpl& leaf, const Tensor& g) {
    if (!leaf.grad) {
      leaf.grad = g.clone().impl_ptr();
    } else {
      accumulate(Tensor(leaf.grad), g);
    }
  };
  if (!impl().grad_fn) {
    accumulate_leaf(impl(), seed);
    if (g_grad_ready) g_grad_ready(*this);
    return;
  }
  // Topological order (iterative DFS, post-order). Holding shared_ptrs keeps every node alive until
  // the walk ends, even once its consumers have released their inputs.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{impl().grad_fn, 0}};
  seen.insert(impl().grad_fn.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && in.impl().grad_fn && seen.insert(in.impl().grad_fn.get()).second)
        stack.push_back({in.impl().grad_fn, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  // With a grad-ready hook: how many node inputs still to run refer to each leaf; at zero the leaf's
  // gradient is final.
  const bool hooked = static_cast<bool>(g_grad_ready);
  std::unordered_map<TensorImpl*, int> leaf_uses;
  auto is_hooked_leaf = [](const Tensor& in) { return in.defined() && !in.impl().grad_fn && in.requires_grad(); };
  if (hooked)
    for (const auto& node : order)
      for (const Tensor& in : node->inputs)
        if (is_hooked_leaf(in)) ++leaf_uses[&in.impl()];
  auto release_leaves = [&](Node* node) {
    for (const Tensor& in : node->inputs)
      if (is_hooked_leaf(in) && --leaf_uses[&in.impl()] == 0) g_grad_ready(in);
  };
  std::unordered_map<Node*, PendingGrad> pending;
  pending[impl().grad_fn.get()].grad = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = it->get();
    auto pit = pending.find(node);
    if (pit == pending.end()) {  // no gradient flowed here
      if (hooked) release_leaves(node);
      continue;
    }
    Tensor g = pit->second.grad;
    pending.erase(pit);
    GEOLOC_CHECK(!node->inputs.empty(), Error, "backward through ", node->name(),
                 " whose graph was already released by an earlier backward()");
    std::vector<Tensor> grads = node->backward(g);
    GEOLOC_CHECK(grads.size() == node->inputs.size(), Error, "op ", node->name(), " returned ", grads.size(),
                 " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor& in = node->inputs[i];
      const Tensor& gi = grads[i];
      if (!gi.defined() || !in.defined() || !in.requires_grad()) continue;
      GEOLOC_CHECK(gi.shape() == in.shape(), ShapeError, "op ", node->name(), " produced gradient ",
                   gi.shape().str(), " for input ", i, " of shape ", in.shape().str());
      GEOLOC_CHECK(gi.dtype() == in.dtype(), ShapeError, "op ", node->name(), " produced gradient ", gi.str(),
                   " for input ", i, " ", in.str(), " (a gradient has its tensor's dtype)");
      if (in.impl().grad_fn) {
        add_into(pending[in.impl().grad_fn.get()], gi);
      } else {
        accumulate_leaf(in.impl(), gi);
      }
    }
    if (hooked) release_leaves(node);
    node->inputs.clear();  // frees what the node saved for backward
    if (auto* l = dynamic_cast<LambdaNode*>(node)) l->fn = nullptr;
  }
}

}  // namespace geoloc
