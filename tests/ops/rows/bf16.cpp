// The op table's bf16 rows: a bf16 twin of every row whose function has a bf16 variant in backend.hpp's
// dtype table (all but knn_topk; convert has its own rows). A twin takes its row's inputs, rounds the float
// ones to bf16 except those the contract keeps f32 (batch-norm parameters and statistics, soft targets,
// haversine targets, mul_scalar's s, the optimisers' params and states), and runs the same call with its
// float outputs bf16 (J under rows::bf16_outputs) except the contract's f32 ones. The CPU twin (widen, run
// f32, round once) is the reference: the CPU runs it twice with different junk (bit-identical), other
// backends must be within `ulps` bf16 ulps (rtol ulps * 2^-7) + atol. The (bench) rows have no twin.
#include <memory>

#include "rows.hpp"

namespace geoloc::optest::rows {
namespace {

Tensor to_bf16(const Tensor& t) {
  Tensor b = Tensor::empty(t.shape(), DType::BF16);
  cpu::convert(t, b);
  return b;
}

using Keep = std::function<bool(size_t index, const Tensor& input)>;  // true: the input stays f32

struct Spec {
  const char* op;
  Keep keep;                           // inputs the contract keeps f32
  bool vec_f32;                        // 1-D float outputs stay f32 (losses, statistics, reduce_sum's y)
  std::vector<std::string> f32_outs;   // outputs compared with the f32 row's tolerances
  float ulps = 1, atol = 0;            // the bf16 outputs' tolerance
};

}  // namespace

void bf16_rows(Table& t) {
  const Keep none = [](size_t, const Tensor&) { return false; };
  const Keep vec = [](size_t, const Tensor& x) { return x.ndim() == 1; };  // per-channel parameters
  auto at = [](size_t k) -> Keep { return [k](size_t i, const Tensor&) { return i == k; }; };
  const std::vector<std::string> stats{"save_mean", "save_invstd", "running_mean", "running_var"};
  // Tolerances: elementwise one rounding of the same float math (1 ulp: FMA contraction may differ);
  // reductions and GEMMs sum in another order (2 ulps, atol for sums that cancel); conv2d_bn_act_forward
  // rounds the convolution to bf16 before the batch-norm epilogue on CUDA (cuDNN writes bf16), the CPU once.
  const std::vector<Spec> specs = {
      {"relu_forward", none, false, {}},
      {"relu_backward", none, false, {}},
      {"add_forward", none, false, {}},
      {"add_relu_forward", none, false, {}},
      {"axpy", none, false, {}},
      {"scale", none, false, {}},
      {"mul_scalar", at(1), false, {}},
      {"reduce_sum", none, true, {"y"}},
      {"fill", none, false, {}},
      {"dropout_forward", none, false, {}},
      {"dropout_backward", none, false, {}},
      {"max_pool2d_forward", none, false, {}},
      {"max_pool2d_backward", none, false, {}, 2, 1e-6f},
      {"global_avg_pool_forward", none, false, {}, 2, 1e-6f},
      {"global_avg_pool_backward", none, false, {}, 1, 0},
      {"conv2d_forward", none, false, {}, 2, 1e-4f},
      {"conv2d_backward_data", none, false, {}, 2, 1e-4f},
      {"conv2d_backward_filter", none, false, {}, 2, 1e-4f},
      {"conv2d_bn_act_forward", vec, false, {}, 2, 5e-2f},
      {"linear_forward", none, false, {}, 2, 1e-4f},
      {"linear_backward", none, false, {}, 2, 1e-4f},
      {"batch_norm_forward_train", vec, true, stats, 1, 1e-5f},
      {"batch_norm_forward_eval", vec, true, {}, 1, 1e-5f},
      {"batch_norm_backward", vec, true, {"dgamma", "dbeta"}, 1, 1e-4f},
      {"batch_norm_act_forward_train", vec, true, stats, 1, 1e-5f},
      {"batch_norm_act_backward", vec, true, {"dgamma", "dbeta"}, 1, 1e-4f},
      {"batch_norm_stats", none, true, {"mean", "var"}, 1, 1e-5f},
      {"batch_norm_backward_dx", vec, true, {}, 1, 1e-4f},
      {"cross_entropy_hard", none, true, {"loss"}, 2, 1e-7f},
      {"cross_entropy_soft", at(1), true, {"loss"}, 2, 1e-7f},
      {"cross_entropy_multihead", [](size_t i, const Tensor&) { return i % 2 == 1; }, true, {}, 2, 1e-7f},
      {"haversine_loss", at(1), true, {"loss"}, 2, 1e-6f},
      {"sgd_step", [](size_t i, const Tensor&) { return i % 3 != 1; }, false, {}},
      {"adamw_step", [](size_t i, const Tensor&) { return i % 4 != 1; }, false, {}},
  };
  const size_t n0 = t.rows.size();
  for (size_t r = 0; r < n0; ++r) {
    const OpRow base = t.rows[r];  // a copy: add() may reallocate
    const Spec* sp = nullptr;
    for (const Spec& s : specs)
      if (base.op == s.op) sp = &s;
    if (!sp || base.label.find("(bench)") != std::string::npos) continue;
    // f32 only on CUDA: a bias added to a bf16 convolution would round twice (kept as an error there)
    if (base.op == "conv2d_forward" && base.label.find("+bias") != std::string::npos) continue;
    const bool optim = base.op == "sgd_step" || base.op == "adamw_step";
    std::vector<OutSpec> outs;
    for (const OutSpec& o : base.outs) {
      bool f32 = optim;
      for (const std::string& n : sp->f32_outs) f32 = f32 || n == o.name;
      if (base.op == "cross_entropy_multihead") f32 = o.name.rfind("loss", 0) == 0;
      outs.push_back(f32 ? o : OutSpec{o.name, sp->ulps * 0x1p-7f, sp->atol, o.finite});
    }
    auto mode = std::make_shared<Bf16Outputs>(Bf16Outputs{sp->vec_f32});
    const Keep keep = sp->keep;
    const auto inputs = base.inputs;
    const auto prepare = base.prepare;
    t.add(
        base.op, base.label + " bf16", outs,
        [=] {
          V in = inputs();
          for (size_t i = 0; i < in.size(); ++i)
            if (in[i].defined() && in[i].dtype() == DType::F32 && !keep(i, in[i])) in[i] = to_bf16(in[i]);
          return in;
        },
        [=](const V& in, Device d, int j) {
          struct Scope {
            explicit Scope(const Bf16Outputs* m) { bf16_outputs = m; }
            ~Scope() { bf16_outputs = nullptr; }
          } scope(mode.get());
          return prepare(in, d, j);
        },
        base.flops, base.bytes / 2);
  }
}

}  // namespace geoloc::optest::rows
