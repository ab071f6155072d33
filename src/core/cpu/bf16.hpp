#pragma once
// Internal to the CPU backend: the bf16 reference. A backend call whose float tensors are bf16 runs the
// f32 implementation on widened copies of its bf16 inputs (bf16 -> f32 is exact) and rounds each bf16
// output once, to nearest even (math::f32_to_bf16, the CPU twin of __float2bfloat16_rn): "compute in
// float, one rounding per output element", the contract the CUDA bf16 kernels follow. Slow (a copy per
// bf16 argument) but obviously right, which is what a reference is for.
#include <initializer_list>
#include <utility>
#include <vector>

#include "geoloc/backend.hpp"

namespace geoloc::cpu::bf16 {

/// The f32 stand-ins of one call's tensors.
class Widen {
 public:
  /// An f32 tensor with t's values: t itself unless t is bf16 (undefined stays undefined).
  Tensor in(const Tensor& t);
  /// An f32 tensor for an output the call overwrites: t itself unless t is bf16, else a temporary that
  /// finish() rounds into t.
  Tensor out(const Tensor& t);
  /// As out(), for an output the call reads first (in-place updates: axpy's dst): the temporary starts
  /// with t's widened values.
  Tensor inout(const Tensor& t);
  /// Rounds every temporary into its bf16 tensor.
  void finish();

 private:
  std::vector<std::pair<Tensor, Tensor>> back_;  // (f32 temporary, bf16 destination)
};

/// Whether a call runs in bf16: false when every defined tensor of `same` is f32, true when every one is
/// bf16, ShapeError naming `op` and both tensors when they are mixed. `same` lists the tensors the contract
/// puts in one dtype; those documented as always f32 (batch-norm statistics, ...) are left out.
bool is_bf16_call(const char* op, std::initializer_list<Tensor> same);

/// The bf16 reference in one line: if the call is bf16, fn(widen) runs the f32 implementation on the
/// stand-ins, the outputs are rounded and true is returned; false means "run the f32 code".
template <class F>
bool widened(const char* op, std::initializer_list<Tensor> same, F&& fn) {
  if (!is_bf16_call(op, same)) return false;
  Widen w;
  fn(w);
  w.finish();
  return true;
}

}  // namespace geoloc::cpu::bf16
