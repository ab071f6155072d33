#pragma once
// Reverse-mode autograd: every differentiable op records a Node holding what its backward needs.
// Tensor::backward() walks the nodes in reverse topological order; a tensor used twice (a residual
// connection) receives the sum of its gradients. Gradients of leaves accumulate across backward()
// calls until zero_grad(), into the same buffer, so a repeated training step allocates nothing new.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc {

struct Node {
  virtual ~Node() = default;
  /// The op's name, for error messages and graph dumps.
  virtual const char* name() const = 0;
  /// Given d(loss)/d(output), returns d(loss)/d(input_i) for each input (undefined where not needed).
  virtual std::vector<Tensor> backward(const Tensor& grad_output) = 0;
  /// The tensors this op read; backward() returns one gradient per entry.
  std::vector<Tensor> inputs;
};

/// A Node whose backward is a lambda: the way every op in ops.cpp records itself.
struct LambdaNode : Node {
  const char* op_name;
  std::function<std::vector<Tensor>(const Tensor&)> fn;
  LambdaNode(const char* n, std::vector<Tensor> in, std::function<std::vector<Tensor>(const Tensor&)> f)
      : op_name(n), fn(std::move(f)) {
    inputs = std::move(in);
  }
  const char* name() const override { return op_name; }
  std::vector<Tensor> backward(const Tensor& g) override { return fn(g); }
};

/// Whether ops record graph nodes on this thread (false inside NoGradGuard).
bool grad_enabled();
void set_grad_enabled(bool enabled);

/// Disables graph recording for its lifetime (inference, optimiser updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// Called by Tensor::backward(), on the thread running it, once for each leaf that requires a gradient and
/// that the graph reaches, as soon as the leaf's gradient for this backward() is final: every node that adds
/// to it has run (Tensor::grad() may still be undefined when no gradient flowed to it). Data-parallel training
/// (comm.hpp, GradReducer) starts a parameter's all-reduce from here while the rest of backward runs.
using GradReadyHook = std::function<void(const Tensor& leaf)>;

/// Installs a grad-ready hook on this thread for its lifetime (the previous one is restored after).
class GradReadyHookGuard {
 public:
  explicit GradReadyHookGuard(GradReadyHook hook);
  ~GradReadyHookGuard();
  GradReadyHookGuard(const GradReadyHookGuard&) = delete;
  GradReadyHookGuard& operator=(const GradReadyHookGuard&) = delete;

 private:
  GradReadyHook prev_;
};

/// True when any input requires a gradient and grad mode is on: the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

/// Attaches a node to `out` (sets requires_grad and grad_fn) when needs_grad(inputs).
void record(Tensor& out, const char* name, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward);

}  // namespace geoloc
