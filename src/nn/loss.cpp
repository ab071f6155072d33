// The haversine loss (host math from detail/haversine.hpp) and the multitask loss.
#include "geoloc/nn/loss.hpp"

#include "geoloc/detail/haversine.hpp"
#include "geoloc/dispatch.hpp"

namespace geoloc::nn {

Tensor haversine_loss(const Tensor& pred, const Tensor& target, DistanceUnit unit) {
  check_f32(pred, "haversine_loss prediction");
  check_f32(target, "haversine_loss target");
  GEOLOC_CHECK(pred.ndim() == 2 && (pred.dim(1) == 3 || pred.dim(1) == 2) && pred.dim(0) > 0, ShapeError,
               "haversine_loss: prediction must be [N, 3] unit vectors or [N, 2] (lat, lng), got ", pred.shape().str());
  GEOLOC_CHECK(target.ndim() == 2 && target.dim(1) == 2 && target.dim(0) == pred.dim(0), ShapeError,
               "haversine_loss: target must be [", pred.dim(0), ", 2] (lat, lng) radians, got ", target.shape().str());
  const int64_t n = pred.dim(0), d = pred.dim(1);
  const auto p = pred.to_vector(), t = target.to_vector();
  std::vector<float> grad(p.size());
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float lat = t[i * 2], lng = t[i * 2 + 1];
    GEOLOC_CHECK(std::isfinite(lat) && std::isfinite(lng), ValueError, "haversine_loss: target ", i, " (", lat, ", ",
                 lng, ") is not finite");
    if (d == 3) {
      sum += math::sphere_angle_vec3(&p[i * 3], lat, lng, &grad[i * 3]);
    } else {
      sum += math::sphere_angle_latlng(p[i * 2], p[i * 2 + 1], lat, lng, &grad[i * 2], &grad[i * 2 + 1]);
    }
  }
  const double k = (unit == DistanceUnit::Kilometres ? math::kEarthRadiusKm : 1.0) / static_cast<double>(n);
  Tensor loss = Tensor::full({1}, static_cast<float>(sum * k), pred.device());
  Tensor dpred = Tensor::from_vector(pred.shape(), grad, pred.device());
  record(loss, "haversine_loss", {pred}, [dpred, k](const Tensor& g) -> std::vector<Tensor> {
    Tensor dp = Tensor::empty(dpred.shape(), DType::F32, dpred.device());
    GEOLOC_DISPATCH(dp.device(), scale, dpred, static_cast<float>(k * g.item()), dp);
    return {dp};
  });
  return loss;
}

MultitaskLoss multitask_loss(const GeoNet& net, const GeoOutput& out, const MultitaskTargets& targets,
                             const MultitaskWeights& w) {
  MultitaskLoss r;
  std::vector<Tensor> terms;
  std::vector<float> weights;
  for (const auto& spec : net.geo_config().heads) {
    const float weight = spec.kind == HeadKind::Partition ? w.geo
                         : spec.kind == HeadKind::Scene   ? w.scene
                         : spec.kind == HeadKind::Country ? w.country
                                                          : w.coords;
    if (weight == 0.0f) continue;
    const Tensor& logits = out.at(spec.name);
    Tensor term;
    if (spec.kind == HeadKind::Coordinates) {
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
        term = ops::mse_loss(logits, Tensor::from_vector(targets.latlng.shape(), scaled, logits.device()));
      } else {
        term = haversine_loss(logits, targets.latlng, DistanceUnit::Radians);
      }
    } else if (auto s = targets.soft.find(spec.name); s != targets.soft.end()) {
      term = ops::cross_entropy_soft(logits, s->second);
    } else if (auto l = targets.labels.find(spec.name); l != targets.labels.end()) {
      term = ops::cross_entropy(logits, l->second);
    } else {
      throw ValueError("multitask_loss: no labels or soft targets for head '" + spec.name + "'");
    }
    r.per_head[spec.name] = term.item();
    terms.push_back(term);
    weights.push_back(weight);
  }
  GEOLOC_CHECK(!terms.empty(), ValueError, "multitask_loss: no head contributes (all weights 0?)");
  r.total = ops::weighted_sum(terms, weights);
  return r;
}

}  // namespace geoloc::nn
