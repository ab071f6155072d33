// The haversine loss (the backend's haversine_loss, per-sample math in detail/haversine.hpp) and the
// multitask loss (all classification heads in one cross_entropy_multihead call).
#include "geoloc/nn/loss.hpp"

#include <cmath>

#include "geoloc/geo/coords.hpp"
#include "geoloc/dispatch.hpp"

namespace geoloc::nn {

Tensor haversine_loss(const Tensor& pred, const Tensor& target, DistanceUnit unit) {
  check_f32(pred, "haversine_loss prediction");
  check_f32(target, "haversine_loss target");
  GEOLOC_CHECK(pred.ndim() == 2 && (pred.dim(1) == 3 || pred.dim(1) == 2) && pred.dim(0) > 0, ShapeError,
               "haversine_loss: prediction must be [N, 3] unit vectors or [N, 2] (lat, lng), got ", pred.shape().str());
  GEOLOC_CHECK(target.ndim() == 2 && target.dim(1) == 2 && target.dim(0) == pred.dim(0), ShapeError,
               "haversine_loss: target must be [", pred.dim(0), ", 2] (lat, lng) radians, got ", target.shape().str());
  const int64_t n = pred.dim(0);
  ops::check_finite(target, "haversine_loss target");  // where it is visible without a device sync
  const Tensor tgt = target.to(pred.device());
  // mean over the batch, in km or radians: k scales both the loss and the per-sample gradients
  const double k = (unit == DistanceUnit::Kilometres ? geo::kEarthRadiusKm : 1.0) / static_cast<double>(n);
  Tensor per = Tensor::empty({n}, DType::F32, pred.device());
  Tensor dpred = Tensor::empty(pred.shape(), DType::F32, pred.device());
  GEOLOC_DISPATCH(pred.device(), haversine_loss, pred, tgt, per, dpred, static_cast<float>(k));
  Tensor loss = Tensor::empty({1}, DType::F32, pred.device());
  GEOLOC_DISPATCH(pred.device(), reduce_sum, per, static_cast<float>(k), loss);
  record(loss, "haversine_loss", {pred}, [dpred](const Tensor& g) -> std::vector<Tensor> {
    Tensor dp = Tensor::empty(dpred.shape(), DType::F32, dpred.device());
    GEOLOC_DISPATCH(dp.device(), mul_scalar, dpred, g, dp);
    return {dp};
  });
  return loss;
}

MultitaskLoss multitask_loss(const GeoNet& net, const GeoOutput& out, const MultitaskTargets& targets,
                             const MultitaskWeights& w) {
  MultitaskLoss r;
  // Every classification head goes into one cross_entropy_multihead call (one launch on the GPU); the
  // terms are then put back in head order, so the sum is the same as with one call per head.
  struct Term {
    std::string name;
    float weight;
    Tensor value;
    int xent = -1;  // index into the multihead call, or -1
  };
  std::vector<Term> terms;
  std::vector<Tensor> xent_logits;
  std::vector<ops::CrossEntropyTarget> xent_targets;
  for (const auto& spec : net.geo_config().heads) {
    const float weight = spec.kind == HeadKind::Partition ? w.geo
                         : spec.kind == HeadKind::Scene   ? w.scene
                         : spec.kind == HeadKind::Country ? w.country
                         : spec.kind == HeadKind::Offset  ? w.offset
                                                          : w.coords;
    if (weight == 0.0f) continue;
    const Tensor& logits = out.at(spec.name);  // f32 or bf16; the loss values are f32
    Term term{spec.name, weight, Tensor(), -1};
    if (spec.kind == HeadKind::Offset) {
      // Only the true cell's pair is trained: the target is the prediction itself elsewhere (zero
      // residual, zero gradient), so the plain MSE over [N, 2C] times 2C is the mean over the batch of
      // the pair's squared error.
      const Tensor pred = ops::to_dtype(logits, DType::F32);
      GEOLOC_CHECK(targets.offset.defined() && targets.offset_cell.defined(), ValueError,
                   "multitask_loss: offset head '", spec.name, "' needs targets.offset and targets.offset_cell");
      const int64_t n = pred.dim(0), c2 = pred.dim(1);
      GEOLOC_CHECK(targets.offset.ndim() == 2 && targets.offset.dim(0) == n && targets.offset.dim(1) == 2 &&
                       targets.offset_cell.numel() == n,
                   ShapeError, "multitask_loss: offset targets must be [", n, ", 2] and [", n, "], got ",
                   targets.offset.shape().str(), " and ", targets.offset_cell.shape().str());
      std::vector<float> tgt = pred.to_vector();
      const auto off = targets.offset.to_vector();
      const auto cell = targets.offset_cell.to_labels();
      for (int64_t i = 0; i < n; ++i) {
        const int32_t c = cell[static_cast<size_t>(i)];
        if (c < 0) continue;  // no cell: no loss from that sample
        GEOLOC_CHECK(2 * static_cast<int64_t>(c) + 1 < c2, ValueError, "multitask_loss: offset cell ", c,
                     " outside the head's ", c2 / 2, " cells");
        tgt[static_cast<size_t>(i * c2 + 2 * c)] = off[static_cast<size_t>(2 * i)];
        tgt[static_cast<size_t>(i * c2 + 2 * c + 1)] = off[static_cast<size_t>(2 * i + 1)];
      }
      term.value = ops::scale(ops::mse_loss(pred, Tensor::from_vector(pred.shape(), tgt, pred.device())),
                              static_cast<float>(c2));
    } else if (spec.kind == HeadKind::Coordinates) {
      const Tensor coords = ops::to_dtype(logits, DType::F32);  // the regression losses are f32 only
      GEOLOC_CHECK(targets.latlng.defined(), ValueError, "multitask_loss: coordinate head '", spec.name,
                   "' needs targets.latlng [N, 2]");
      if (spec.classes == 2) {
        // MSE on the scaled coordinates: (lat, lng) in radians over (pi/2, pi), so both lie in [-1, 1].
        const auto ll = targets.latlng.to_vector();
        std::vector<float> scaled(ll.size());
        for (size_t k = 0; k < ll.size(); k += 2) {
          scaled[k] = ll[k] / 1.5707963267948966f;
          scaled[k + 1] = ll[k + 1] / 3.141592653589793f;
        }
        term.value =
            ops::mse_loss(coords, Tensor::from_vector(targets.latlng.shape(), scaled, coords.device()));
      } else {
        term.value = haversine_loss(coords, targets.latlng, DistanceUnit::Radians);
      }
    } else if (auto s = targets.soft.find(spec.name); s != targets.soft.end()) {
      term.xent = static_cast<int>(xent_logits.size());
      xent_logits.push_back(logits);
      xent_targets.push_back({Tensor(), s->second});
    } else if (auto l = targets.labels.find(spec.name); l != targets.labels.end()) {
      term.xent = static_cast<int>(xent_logits.size());
      xent_logits.push_back(logits);
      xent_targets.push_back({l->second, Tensor()});
    } else {
      throw ValueError("multitask_loss: no labels or soft targets for head '" + spec.name + "'");
    }
    terms.push_back(std::move(term));
  }
  GEOLOC_CHECK(!terms.empty(), ValueError, "multitask_loss: no head contributes (all weights 0?)");
  if (!xent_logits.empty()) {
    const std::vector<Tensor> xent = ops::cross_entropy_multihead(xent_logits, xent_targets);
    for (Term& t : terms)
      if (t.xent >= 0) t.value = xent[static_cast<size_t>(t.xent)];
  }
  std::vector<Tensor> values;
  std::vector<float> weights;
  for (const Term& t : terms) {
    r.per_head[t.name] = t.value;
    values.push_back(t.value);
    weights.push_back(t.weight);
  }
  r.total = ops::weighted_sum(values, weights);
  return r;
}

}  // namespace geoloc::nn
