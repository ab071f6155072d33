#pragma once
// Fused multi-head softmax cross-entropy: the geo-cell heads of several partitionings plus the scene
// head, all in one kernel launch that writes each head's per-sample loss and logit gradient in the same
// pass over the logits. Per head, the math is exactly the backend's softmax_xent_hard / softmax_xent_soft
// (backend.hpp), so cuda::ref::multihead_softmax_xent (the CPU reference) simply calls those per head.
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::cuda {

/// One head. logits [N,C] f32; exactly one of labels (I32 [N], label < 0 = ignored sample) and targets
/// ([N,C] probabilities, a zero row = ignored sample) is defined; loss [N] and dlogits [N,C] are
/// overwritten; dlogits = grad_scale * d loss / d logits. Heads may differ in N and C.
struct LossHead {
  Tensor logits;
  Tensor labels;
  Tensor targets;
  Tensor loss;
  Tensor dlogits;
  float grad_scale = 1.0f;
};

/// At most kMaxLossHeads heads per call; all on one CUDA device.
constexpr int kMaxLossHeads = 16;
void multihead_softmax_xent(const std::vector<LossHead>& heads);

namespace ref {
/// CPU reference (CPU tensors): cpu::softmax_xent_hard / cpu::softmax_xent_soft per head.
void multihead_softmax_xent(const std::vector<LossHead>& heads);
}  // namespace ref

}  // namespace geoloc::cuda
