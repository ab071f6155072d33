// A diverging run stops with an error naming the step, and no file ever holds non-finite weights:
// neither a model nor a checkpoint is written from NaN weights, and a weights file holding a NaN is
// refused on loading (so `geoloc predict` never answers from one).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "geoloc/nn/weights.hpp"
#include "geoloc/safetensors.hpp"
#include "geoloc/pipeline/trainer.hpp"
#include "photos.hpp"

using namespace geoloc;

namespace {
pipeline::ModelSpec tiny_spec() {
  pipeline::ModelSpec spec;
  spec.backbone = nn::ResNetConfig::parse("resnet:basic:1-1:w8:k3s2:nopool");
  spec.cells.tau_max = {20};
  spec.cells.tau_min = 3;
  spec.preprocess.resize = 40;
  spec.preprocess.crop = 32;
  return spec;
}
}  // namespace

TEST_CASE("a diverging run stops with an error naming the step; no model or checkpoint is written") {
  const test::PhotoSet set = test::make_photos("diverge", 8, 4);
  const pipeline::Dataset train = pipeline::Dataset::from_manifest(set.manifest, 40, nullptr, false);
  const pipeline::ModelSpec spec = tiny_spec();
  pipeline::GeoModel model = pipeline::build_model(spec, train.coords);
  pipeline::TrainConfig tc;
  tc.steps = 40;
  tc.batch_size = 8;
  tc.lr = 1e6f;  // diverges within a few steps
  tc.progress = false;
  tc.checkpoint_every = 1;
  const std::filesystem::path ck = set.dir / "ck.safetensors";
  tc.checkpoint_path = ck.string();
  std::string what;
  try {
    pipeline::Trainer(model, tc).fit(train);
  } catch (const ValueError& e) {
    what = e.what();
  } catch (const IoError& e) {
    what = e.what();  // a checkpoint refused between two loss read-backs
  }
  INFO(what);
  REQUIRE(!what.empty());
  CHECK((what.find("diverged") != std::string::npos || what.find("non-finite") != std::string::npos));
  CHECK(what.find("step") != std::string::npos);
  // whatever checkpoint exists (from a step before the divergence) holds finite values only
  if (std::filesystem::exists(ck)) {
    const auto file = safetensors::File::open(ck.string());
    size_t bad = 0;
    for (const auto& e : file.entries()) {
      if (e.dtype != safetensors::StDType::F32) continue;
      for (float x : file.tensor(e.name).to_vector()) bad += !std::isfinite(x);
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("save_state refuses NaN weights and leaves no file; load_state refuses a file holding one") {
  const test::PhotoSet set = test::make_photos("nanfile", 4, 5);
  const pipeline::Dataset train = pipeline::Dataset::from_manifest(set.manifest, 40, nullptr, false);
  const pipeline::ModelSpec spec = tiny_spec();
  pipeline::GeoModel model = pipeline::build_model(spec, train.coords);
  const std::filesystem::path good = set.dir / "good.safetensors", bad = set.dir / "bad.safetensors";
  model.save(good.string());
  // poison one weight
  auto state = model.net->state();
  REQUIRE(!state.empty());
  Tensor w = state.front().second;
  std::vector<float> v = w.to_vector();
  v[0] = std::numeric_limits<float>::quiet_NaN();
  Tensor(w).copy_(Tensor::from_vector(w.shape(), v));
  CHECK_THROWS_WITH_AS(model.save(bad.string()), doctest::Contains("non-finite"), IoError);
  CHECK(!std::filesystem::exists(bad));
  // a file with an infinity, written by another tool: refused on loading, naming the tensor
  const auto file = safetensors::File::open(good.string());
  std::vector<safetensors::WriteItem> items;
  std::string poisoned;
  for (const auto& e : file.entries()) {
    if (e.dtype != safetensors::StDType::F32) continue;  // num_batches_tracked (I64) is optional on loading
    safetensors::WriteItem it;
    it.name = e.name;
    Tensor t = file.tensor(e.name);
    if (t.dtype() == DType::F32 && poisoned.empty() && e.name.find("weight") != std::string::npos) {
      std::vector<float> tv = t.to_vector();
      tv.back() = std::numeric_limits<float>::infinity();
      t = Tensor::from_vector(t.shape(), tv);
      poisoned = e.name;
    }
    it.tensor = t;
    items.push_back(it);
  }
  REQUIRE(!poisoned.empty());
  safetensors::write(bad.string(), items, file.metadata());
  CHECK_THROWS_WITH_AS(pipeline::GeoModel::load(bad.string()), doctest::Contains(poisoned.c_str()), IoError);
  CHECK_THROWS_WITH_AS(pipeline::GeoModel::load(bad.string()), doctest::Contains("non-finite"), IoError);
  CHECK_NOTHROW(pipeline::GeoModel::load(good.string()));
}
