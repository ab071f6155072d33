#include "geoloc/pipeline/scene_labels.hpp"

#include <algorithm>

#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/predict.hpp"

namespace geoloc::pipeline {

size_t propagate_scene_labels(Dataset& train, const nn::ResNetConfig& backbone, int64_t scene_classes,
                              const Preprocess& preprocess, TrainConfig config) {
  std::vector<size_t> labelled, unlabelled;
  for (size_t i = 0; i < train.size(); ++i) (train.scene[i] >= 0 ? labelled : unlabelled).push_back(i);
  if (unlabelled.empty()) return 0;
  GEOLOC_CHECK(!labelled.empty(), ValueError, "scene propagation: no row has a scene label");
  GeoModel helper;
  nn::GeoNetConfig cfg;
  cfg.backbone = backbone;
  cfg.heads = {{"scene", nn::HeadKind::Scene, scene_classes}};
  helper.net = std::make_shared<nn::GeoNet>(cfg, config.seed);
  helper.scene_names.resize(static_cast<size_t>(scene_classes));
  helper.preprocess = preprocess;
  helper.finalise();
  const Dataset sub = train.subset(labelled);
  Trainer t(helper, config);
  t.fit(sub);
  const Predictor pred(helper);
  const Dataset rest = train.subset(unlabelled);
  for (size_t start = 0; start < rest.size(); start += 256) {
    const size_t m = std::min<size_t>(256, rest.size() - start);
    const auto hp = pred.probabilities(eval_batch(helper, rest, start, m));
    for (size_t j = 0; j < m; ++j) {
      const auto p = hp.row("scene", static_cast<int64_t>(j));
      train.scene[unlabelled[start + j]] = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
    }
  }
  return unlabelled.size();
}

}  // namespace geoloc::pipeline
