// ResNet/GeoNet: torchvision naming, PyTorch parity (forward and a training step), weights files.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "geoloc/nn/loss.hpp"
#include "geoloc/nn/weights.hpp"
#include "nn_test_util.hpp"

using namespace geoloc;
using namespace geoloc::nn;
using geoloc::test::fixture;
using geoloc::test::rel_err;
using geoloc::test::rel_l2;
using geoloc::test::scratch;

TEST_CASE("ResNet: parameter and buffer names and shapes match torchvision exactly") {
  std::ifstream in(fixture("resnet_names.json"));
  REQUIRE(in.good());
  const auto j = nlohmann::json::parse(in);
  for (const char* arch : {"resnet18", "resnet34", "resnet50", "resnet101"}) {
    INFO(arch);
    ResNet net(ResNetConfig::parse(arch));
    const auto& ref = j["models"][arch];
    auto compare = [&](const NamedTensors& ours, const nlohmann::json& theirs) {
      REQUIRE(ours.size() == theirs.size());
      for (size_t i = 0; i < ours.size(); ++i) {
        INFO(ours[i].first);
        CHECK(ours[i].first == theirs[i][0].get<std::string>());  // same order as torch's named_parameters()
        CHECK(pytorch_shape(ours[i].second.shape()) == theirs[i][1].get<std::vector<int64_t>>());
      }
    };
    compare(net.named_parameters(), ref["parameters"]);
    compare(net.named_buffers(), ref["buffers"]);
  }
}

TEST_CASE("ResNetConfig: names round-trip and invalid strings are refused") {
  for (auto c : {ResNetConfig::resnet18(), ResNetConfig::resnet34(), ResNetConfig::resnet50(),
                 ResNetConfig::resnet101(), ResNetConfig::small()})
    CHECK(ResNetConfig::parse(c.name()) == c);
  ResNetConfig c = ResNetConfig::resnet50();
  c.base_width = 4;
  c.layers = {1, 2};
  c.stem_pool = false;
  CHECK(c.name() == "resnet:bottleneck:1-2:w4:k7s2:nopool");
  CHECK(ResNetConfig::parse(c.name()) == c);
  CHECK(c.embedding_dim() == 4 * 2 * 4);
  CHECK(ResNetConfig::resnet18().embedding_dim() == 512);
  CHECK(ResNetConfig::resnet50().embedding_dim() == 2048);
  CHECK(ResNetConfig::small().embedding_dim() == 64);
  for (const char* bad : {"resnet19", "resnet:basic:2-2:w0:k7s2:pool", "resnet:basic:2-2:w8:k6s2:pool",
                          "resnet:basic::w8:k7s2:pool", "resnet:tiny:2:w8:k7s2:pool", "resnet:basic:2:w8:k7s2:maybe"})
    CHECK_THROWS_WITH_AS(ResNetConfig::parse(bad), doctest::Contains(bad), ValueError);
}

TEST_CASE("ResNet: torchvision initialisation, deterministic in the seed") {
  ResNet a(ResNetConfig::small(), 7), b(ResNetConfig::small(), 7), c(ResNetConfig::small(), 8);
  CHECK(a.conv1->weight.to_vector() == b.conv1->weight.to_vector());
  CHECK(a.conv1->weight.to_vector() != c.conv1->weight.to_vector());
  // kaiming_normal(fan_out): std = sqrt(2 / (Cout * k * k)) for layer1.0.conv1 (16 * 9)
  const auto w = a.stages[0]->blocks[0]->named_parameters()[0].second.to_vector();
  double s2 = 0;
  for (float x : w) s2 += static_cast<double>(x) * x;
  CHECK(std::sqrt(s2 / w.size()) == doctest::Approx(std::sqrt(2.0 / (16 * 9))).epsilon(0.1));
  CHECK(a.bn1->weight.to_vector() == std::vector<float>(16, 1.0f));
  CHECK(a.bn1->bias.to_vector() == std::vector<float>(16, 0.0f));
  // 64x64 input -> 64-d embedding
  a.eval();
  NoGradGuard g;
  CHECK(a.forward(Tensor::zeros({2, 64, 64, 3})).shape() == Shape{2, 64});
  CHECK_THROWS_AS(a.forward(Tensor::zeros({2, 3, 64, 64})), ShapeError);
}

namespace {
struct ParityResult {
  double eval_emb, eval_logits, train_emb, loss, grad_max, running;
};

ParityResult run_parity(const std::string& name) {
  auto net = load_geonet(fixture(name + "_weights.safetensors"));
  const auto exp = safetensors::File::open(fixture(name + "_expected.safetensors"));
  const Tensor x = nchw_to_nhwc(exp.tensor("input"));
  ParityResult r{};
  {
    NoGradGuard g;
    net->eval();
    auto out = net->forward(x);
    r.eval_emb = rel_err(out.embedding.to_vector(), exp.tensor("eval.embedding").to_vector());
    for (const auto& [h, t] : out.logits)
      r.eval_logits = std::max(r.eval_logits, rel_err(t.to_vector(), exp.tensor("eval.heads." + h).to_vector()));
  }
  net->train();
  auto out = net->forward(x);
  MultitaskTargets tg;
  for (const auto& spec : net->geo_config().heads) tg.labels[spec.name] = exp.tensor("labels." + spec.name).clone();
  auto loss = multitask_loss(*net, out, tg);
  loss.total.backward();
  r.train_emb = rel_err(out.embedding.to_vector(), exp.tensor("train.embedding").to_vector());
  r.loss = std::fabs(loss.total.item() - exp.tensor("train.loss").item()) / std::fabs(exp.tensor("train.loss").item());
  for (const auto& named : net->named_parameters()) {
    const std::string& pn = named.first;  // INFO's lambda cannot take a structured binding (clang < 16)
    const Tensor& p = named.second;
    INFO(pn);
    REQUIRE(p.grad().defined());
    auto g = p.grad().to_vector();
    if (p.ndim() == 4) g = test::ohwi_to_oihw(g, p.shape());
    const double e = rel_l2(g, exp.tensor("grad." + pn).to_vector());
    CHECK(e < 1e-3);
    r.grad_max = std::max(r.grad_max, e);
  }
  for (const auto& [bn, b] : net->named_buffers())
    r.running = std::max(r.running, rel_err(b.to_vector(), exp.tensor("train." + bn).to_vector()));
  MESSAGE(name, ": eval embedding ", r.eval_emb, ", eval logits ", r.eval_logits, ", train embedding ", r.train_emb,
          ", loss ", r.loss, ", worst gradient (relative L2) ", r.grad_max, ", running stats ", r.running);
  return r;
}
}  // namespace

// The references are PyTorch computed in float64 from the float32 weights and input (tools/make_parity_fixtures.py).
TEST_CASE("parity with PyTorch: ResNet-18 topology, width 8, three heads") {
  const auto r = run_parity("resnet18_w8");
  CHECK(r.eval_emb < 1e-5);
  CHECK(r.eval_logits < 1e-5);
  CHECK(r.train_emb < 1e-5);
  CHECK(r.loss < 1e-5);
  CHECK(r.grad_max < 1e-3);
  CHECK(r.running < 1e-5);
}

TEST_CASE("parity with PyTorch: ResNet-50 topology, width 4, two heads") {
  const auto r = run_parity("resnet50_w4");
  CHECK(r.eval_emb < 1e-5);
  CHECK(r.eval_logits < 1e-5);
  // Training-mode BN at width 4 normalises layer4 over N*H*W = 8 values per channel, which amplifies
  // float32 rounding: PyTorch's own float32 forward is 1.2e-4 away from this float64 reference.
  CHECK(r.train_emb < 2e-4);
  CHECK(r.loss < 1e-5);
  CHECK(r.grad_max < 1e-3);
  CHECK(r.running < 2e-4);
}

TEST_CASE("weights: saving reproduces the PyTorch file tensor for tensor, and loads back") {
  const std::string src = fixture("resnet18_w8_weights.safetensors");
  auto net = load_geonet(src);
  const std::string out = scratch("r18w8_resaved.safetensors");
  save_geonet(*net, out);
  const auto a = safetensors::File::open(src), b = safetensors::File::open(out);
  CHECK(b.metadata().at("arch") == a.metadata().at("arch"));
  CHECK(b.metadata().at("heads") == a.metadata().at("heads"));
  REQUIRE(a.entries().size() == b.entries().size());  // including every num_batches_tracked
  for (const auto& e : a.entries()) {
    INFO(e.name);
    const auto& f = b.entry(e.name);
    CHECK(f.shape == e.shape);
    CHECK(f.dtype == e.dtype);
    if (e.dtype == safetensors::StDType::F32) CHECK(b.tensor(e.name).to_vector() == a.tensor(e.name).to_vector());
  }
  auto again = load_geonet(out);
  NoGradGuard g;
  const Tensor x = Tensor::full({1, 40, 40, 3}, 0.3f);
  CHECK(again->forward(x).at("scene").to_vector() == net->forward(x).at("scene").to_vector());
}

TEST_CASE("weights: missing, unexpected and mis-shaped tensors are errors naming the tensor and shapes") {
  GeoNetConfig cfg;
  cfg.backbone = ResNetConfig::parse("resnet:basic:1-1:w4:k3s1:nopool");
  cfg.heads = {{"cells", HeadKind::Partition, 5}, {"scene", HeadKind::Scene, 3}};
  GeoNet net(cfg, 1);
  const std::string good = scratch("tiny.safetensors");
  save_geonet(net, good);
  const auto f = safetensors::File::open(good);

  auto rewrite = [&](const std::string& path, const std::string& drop, const std::string& add, Tensor add_t,
                     const std::map<std::string, std::string>& meta) {
    std::vector<safetensors::WriteItem> items;
    for (const auto& e : f.entries()) {
      if (e.name == drop || e.dtype != safetensors::StDType::F32) continue;
      safetensors::WriteItem w;
      w.name = e.name;
      w.tensor = e.name == add ? add_t : f.tensor(e.name).clone();
      items.push_back(w);
    }
    if (!add.empty() && !f.has(add)) {
      safetensors::WriteItem w;
      w.name = add;
      w.tensor = add_t;
      items.push_back(w);
    }
    safetensors::write(path, items, meta);
  };
  const auto meta = f.metadata();
  GeoNet other(cfg, 2);
  const auto before = other.conv1->weight.to_vector();

  rewrite(scratch("missing.st"), "layer1.0.bn2.running_var", "", {}, meta);
  CHECK_THROWS_WITH_AS(load_state(other, scratch("missing.st")),
                       doctest::Contains("missing tensor 'layer1.0.bn2.running_var'"), IoError);
  rewrite(scratch("extra.st"), "", "heads.country.weight", Tensor::zeros({2, 8}), meta);
  CHECK_THROWS_WITH_AS(load_state(other, scratch("extra.st")), doctest::Contains("unexpected tensor 'heads.country.weight' [2, 8]"),
                       IoError);
  rewrite(scratch("shape.st"), "", "layer2.0.conv1.weight", Tensor::zeros({8, 4, 3, 2}), meta);
  CHECK_THROWS_WITH_AS(load_state(other, scratch("shape.st")),
                       doctest::Contains("'layer2.0.conv1.weight' has shape [8, 4, 3, 2] in the file but the model "
                                         "expects [8, 4, 3, 3]"),
                       ShapeError);
  rewrite(scratch("headshape.st"), "", "heads.cells.weight", Tensor::zeros({6, 8}), meta);
  CHECK_THROWS_WITH_AS(load_state(other, scratch("headshape.st")), doctest::Contains("[6, 8]"), ShapeError);
  CHECK(other.conv1->weight.to_vector() == before);  // nothing was modified by the failed loads

  rewrite(scratch("noarch.st"), "", "", {}, {});
  CHECK_THROWS_WITH_AS(load_geonet(scratch("noarch.st")), doctest::Contains("arch"), IoError);
  // with --arch given, heads are inferred from the tensors
  auto inferred = load_geonet(scratch("noarch.st"), "resnet:basic:1-1:w4:k3s1:nopool");
  REQUIRE(inferred->geo_config().heads.size() == 2);
  CHECK(inferred->geo_config().heads[1].kind == HeadKind::Scene);
  CHECK_THROWS_AS(load_geonet(scratch("noarch.st"), "resnet18"), ShapeError);

  load_state(other, good);
  CHECK(other.conv1->weight.to_vector() == net.conv1->weight.to_vector());
}

TEST_CASE("GeoNet: frozen backbone trains only the heads and keeps BN in eval mode") {
  GeoNetConfig cfg;
  cfg.backbone = ResNetConfig::parse("resnet:basic:1-1:w4:k3s1:nopool");
  cfg.heads = {{"cells", HeadKind::Partition, 5}, {"scene", HeadKind::Scene, 3}};
  cfg.freeze_backbone = true;
  GeoNet net(cfg, 3);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> xv(2 * 12 * 12 * 3);
  for (float& v : xv) v = nd(rng);
  const Tensor x = Tensor::from_vector({2, 12, 12, 3}, xv);
  net.train();
  const auto rm = net.bn1->running_mean.to_vector();
  auto out = net.forward(x);
  MultitaskTargets tg;
  tg.labels["cells"] = Tensor::from_labels({1, 4});
  tg.labels["scene"] = Tensor::from_labels({2, -1});
  multitask_loss(net, out, tg).total.backward();
  CHECK(net.bn1->running_mean.to_vector() == rm);
  CHECK_FALSE(net.conv1->weight.grad().defined());
  CHECK(net.heads->layers[0]->weight.grad().defined());
  net.eval();
  NoGradGuard g;
  CHECK(net.forward(x).embedding.to_vector() == out.embedding.to_vector());
}

TEST_CASE("GeoNet: dropout before the heads acts in training only") {
  GeoNetConfig cfg;
  cfg.backbone = ResNetConfig::parse("resnet:basic:1:w8:k3s2:nopool");
  cfg.heads = {{"cells", HeadKind::Partition, 4}};
  cfg.dropout = 0.5f;
  GeoNet net(cfg, 4);
  const Tensor x = Tensor::full({2, 8, 8, 3}, 0.5f);
  net.eval();
  const auto e1 = net.forward(x).at("cells").to_vector();
  CHECK(net.forward(x).at("cells").to_vector() == e1);
  net.train();
  net.set_freeze_backbone(true);  // BN in eval: the only training-mode difference left is dropout
  CHECK(net.forward(x).at("cells").to_vector() != e1);
  CHECK_THROWS_AS(GeoNet(GeoNetConfig{ResNetConfig::small(), {{"a", HeadKind::Coordinates, 4}}}), ValueError);
  CHECK_NOTHROW(GeoNet(GeoNetConfig{ResNetConfig::small(), {{"a", HeadKind::Coordinates, 2}}}));  // (lat, lng) for MSE
  CHECK_THROWS_AS(GeoNet(GeoNetConfig{ResNetConfig::small(), {{"a.b", HeadKind::Scene, 2}}}), ValueError);
}

TEST_CASE("weights: load_backbone takes the backbone and ignores the file's heads") {
  auto src = load_geonet(fixture("resnet18_w8_weights.safetensors"));
  GeoNetConfig cfg = src->geo_config();
  cfg.heads = {{"other", HeadKind::Partition, 2}};
  GeoNet net(cfg, 9);
  const auto head_before = net.heads->layers[0]->weight.to_vector();
  load_backbone(net, fixture("resnet18_w8_weights.safetensors"));
  CHECK(net.stages[3]->blocks[1]->named_parameters()[0].second.to_vector() ==
        src->stages[3]->blocks[1]->named_parameters()[0].second.to_vector());
  CHECK(net.bn1->running_var.to_vector() == src->bn1->running_var.to_vector());
  CHECK(net.heads->layers[0]->weight.to_vector() == head_before);
  GeoNet wrong(GeoNetConfig{ResNetConfig::parse("resnet:basic:2-2-2-2:w16:k7s2:pool"), {}}, 1);
  CHECK_THROWS_WITH_AS(load_backbone(wrong, fixture("resnet18_w8_weights.safetensors")),
                       doctest::Contains("'conv1.weight' has shape [8, 3, 7, 7] in the file but the model expects [16, 3, 7, 7]"),
                       ShapeError);
}

TEST_CASE("GeoNetConfig::state_size counts what the network registers, without building it") {
  for (const char* arch : {"small", "resnet:basic:1-1:w4:k3s1:nopool", "resnet:bottleneck:1-2:w2:k1s1:pool:c1",
                           "resnet:bottleneck:2-1-1:w4:k5s2:nopool", "resnet:basic:3:w8:k7s2:pool:c5"}) {
    CAPTURE(arch);
    GeoNetConfig cfg;
    cfg.backbone = ResNetConfig::parse(arch);
    cfg.heads = {{"cells", HeadKind::Partition, 7}, {"coords", HeadKind::Coordinates, 3}};
    const GeoNet net(cfg, 1);
    int64_t values = 0;
    for (const auto& [name, t] : net.state()) values += t.numel();
    CHECK(cfg.state_size() == values);
  }
  // torchvision's resnet50: 25 557 032 parameters, less fc (2 049 000), plus BN running statistics (53 120)
  CHECK(ResNetConfig::resnet50().state_size() == 25'557'032 - 2'049'000 + 53'120);
  // Saturates instead of overflowing.
  GeoNetConfig huge;
  huge.backbone = ResNetConfig::resnet18();
  huge.heads = {{"a", HeadKind::Partition, INT64_MAX / 2}};
  CHECK(huge.state_size() == INT64_MAX);
}

// Issue #16 (found while writing fuzz_model_metadata, in the code it drives): a weights file's
// __metadata__ "arch" and "heads" were trusted before the file was compared with them, so a file of a
// few kilobytes describing resnet:bottleneck:64-64-64-64:w4096 made `geoloc forward` try to allocate
// terabytes. The network's size is now checked against the values the file holds, before anything is
// built.
TEST_CASE("weights: metadata describing a network larger than its file is refused before allocating") {
  GeoNetConfig cfg;
  cfg.backbone = ResNetConfig::parse("resnet:basic:1-1:w4:k3s1:nopool");
  cfg.heads = {{"cells", HeadKind::Partition, 5}};
  GeoNet net(cfg, 1);
  const std::string path = scratch("huge_arch.safetensors");
  std::map<std::string, std::string> meta = {{"format", "geoloc-geonet/1"},
                                             {"arch", "resnet:bottleneck:64-64-64-64:w4096:k15s4:pool"},
                                             {"heads", "cells:partition:5"}};
  save_state(net, path, meta);
  CHECK_THROWS_WITH_AS(load_geonet(path), doctest::Contains("but the file holds only"), ShapeError);
  CHECK_THROWS_WITH_AS(geonet_config_from(safetensors::File::open(path)), doctest::Contains("huge_arch.safetensors"),
                       ShapeError);
  meta["arch"] = "resnet:basic:1-1:w4:k3s1:nopool";
  meta["heads"] = "cells:partition:999999999";
  save_state(net, path, meta);
  CHECK_THROWS_WITH_AS(load_geonet(path), doctest::Contains("cells:partition:999999999"), ShapeError);
  meta["heads"] = "cells:partition:5";
  save_state(net, path, meta);
  CHECK(load_geonet(path)->geo_config().heads.size() == 1);
}
