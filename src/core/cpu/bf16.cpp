// The CPU backend's bf16 reference: widen, run the f32 code, round each output once (see bf16.hpp).
#include "bf16.hpp"

namespace geoloc::cpu::bf16 {

Tensor Widen::in(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::BF16) return t;
  Tensor w = Tensor::empty(t.shape(), DType::F32, t.device());
  cpu::convert(t, w);
  return w;
}

Tensor Widen::out(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::BF16) return t;
  Tensor w = Tensor::empty(t.shape(), DType::F32, t.device());
  back_.emplace_back(w, t);
  return w;
}

Tensor Widen::inout(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::BF16) return t;
  Tensor w = in(t);
  back_.emplace_back(w, t);
  return w;
}

void Widen::finish() {
  for (auto& [tmp, dst] : back_) cpu::convert(tmp, dst);
  back_.clear();
}

bool is_bf16_call(const char* op, std::initializer_list<Tensor> same) {
  const Tensor* f32 = nullptr;
  const Tensor* b16 = nullptr;
  for (const Tensor& t : same) {
    if (!t.defined()) continue;
    if (t.dtype() == DType::BF16 && !b16) b16 = &t;
    if (t.dtype() == DType::F32 && !f32) f32 = &t;
  }
  GEOLOC_CHECK(!(f32 && b16), ShapeError, "cpu::", op, ": f32 and bf16 tensors mixed in one call (", f32->str(),
               " and ", b16->str(), "); all of them must be f32 or all bf16");
  return b16 != nullptr;
}

}  // namespace geoloc::cpu::bf16
