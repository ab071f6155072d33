// GeoNet: backbone + ordered heads.
#include "geoloc/nn/heads.hpp"

#include <set>

namespace geoloc::nn {

const char* head_kind_name(HeadKind k) {
  switch (k) {
    case HeadKind::Partition: return "partition";
    case HeadKind::Scene: return "scene";
    case HeadKind::Country: return "country";
    case HeadKind::Coordinates: return "coords";
    case HeadKind::Offset: return "offset";
  }
  return "?";
}

HeadKind parse_head_kind(const std::string& s) {
  for (HeadKind k : {HeadKind::Partition, HeadKind::Scene, HeadKind::Country, HeadKind::Coordinates, HeadKind::Offset})
    if (s == head_kind_name(k)) return k;
  throw ValueError("unknown head kind '" + s + "' (expected partition, scene, country, coords or offset)");
}

void GeoNetConfig::validate() const {
  backbone.validate();
  GEOLOC_CHECK(dropout >= 0.0f && dropout < 1.0f, ValueError, "GeoNet: dropout ", dropout, " outside [0, 1)");
  std::set<std::string> names;
  for (const auto& h : heads) {
    GEOLOC_CHECK(!h.name.empty() && h.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_-") == std::string::npos,
                 ValueError, "GeoNet: head name '", h.name, "' must be non-empty [A-Za-z0-9_-]");
    GEOLOC_CHECK(names.insert(h.name).second, ValueError, "GeoNet: head '", h.name, "' given twice");
    GEOLOC_CHECK(h.classes >= 1, ValueError, "GeoNet: head '", h.name, "' has ", h.classes, " outputs");
    GEOLOC_CHECK(h.kind != HeadKind::Coordinates || h.classes == 3 || h.classes == 2, ValueError,
                 "GeoNet: coordinate head '", h.name,
                 "' must have 3 outputs (a unit 3-vector) or 2 (latitude/90, longitude/180), got ", h.classes);
    GEOLOC_CHECK(h.kind != HeadKind::Offset || h.classes % 2 == 0, ValueError, "GeoNet: offset head '", h.name,
                 "' must have 2 outputs per cell, got ", h.classes);
  }
}

int64_t GeoNetConfig::state_size() const {
  int64_t n = backbone.state_size();
  const int64_t dim = backbone.embedding_dim();
  for (const auto& h : heads) {  // Linear(dim, classes) with bias
    int64_t head = 0;
    if (h.classes < 0 || __builtin_mul_overflow(h.classes, dim + 1, &head) || __builtin_add_overflow(n, head, &n))
      return INT64_MAX;
  }
  return n;
}

std::string GeoNetConfig::heads_string() const {
  std::string s;
  for (const auto& h : heads)
    s += (s.empty() ? "" : ",") + h.name + ":" + head_kind_name(h.kind) + ":" + std::to_string(h.classes);
  return s;
}

std::vector<HeadSpec> GeoNetConfig::parse_heads(const std::string& s) {
  std::vector<HeadSpec> out;
  if (s.empty()) return out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(start, end - start);
    const size_t a = item.find(':'), b = a == std::string::npos ? a : item.find(':', a + 1);
    GEOLOC_CHECK(b != std::string::npos, ValueError, "heads '", s, "': item '", item,
                 "' is not name:kind:classes");
    HeadSpec h;
    h.name = item.substr(0, a);
    h.kind = parse_head_kind(item.substr(a + 1, b - a - 1));
    const std::string c = item.substr(b + 1);
    GEOLOC_CHECK(!c.empty() && c.size() < 10 && c.find_first_not_of("0123456789") == std::string::npos, ValueError,
                 "heads '", s, "': class count '", c, "' of head '", h.name, "' is not a number");
    h.classes = std::stoll(c);
    out.push_back(h);
    start = end + 1;
  }
  return out;
}

const Tensor& GeoOutput::at(const std::string& name) const {
  for (const auto& [n, t] : logits)
    if (n == name) return t;
  throw Error("GeoNet output has no head '" + name + "'");
}

Heads::Heads(const std::vector<HeadSpec>& s, int64_t dim, random::Rng& rng) : specs(s) {
  for (const auto& h : specs) layers.push_back(register_module(h.name, std::make_shared<Linear>(dim, h.classes, true, rng)));
}

GeoNet::GeoNet(const GeoNetConfig& cfg, uint64_t seed) : ResNet(cfg.backbone, seed), gcfg_(cfg) {
  gcfg_.validate();
  random::Rng rng(seed ^ 0x68656164735f5f5full);  // heads draw from their own stream: adding a head leaves the backbone as is
  heads = register_module("heads", std::make_shared<Heads>(gcfg_.heads, embedding_dim(), rng));
  dropout_seed_ = seed;
  set_freeze_backbone(gcfg_.freeze_backbone);
}

void GeoNet::set_freeze_backbone(bool frozen) {
  gcfg_.freeze_backbone = frozen;
  set_frozen(frozen);
  heads->set_frozen(false);
}

GeoOutput GeoNet::forward(const Tensor& x) {
  GeoOutput out;
  if (gcfg_.freeze_backbone) {
    NoGradGuard g;
    out.embedding = ResNet::forward(x, false);
  } else {
    out.embedding = ResNet::forward(x, is_training());
  }
  Tensor e = out.embedding;
  if (is_training() && gcfg_.dropout > 0.0f) e = ops::dropout(e, gcfg_.dropout, true, dropout_seed_++);
  for (size_t i = 0; i < heads->layers.size(); ++i) out.logits.emplace_back(heads->specs[i].name, heads->layers[i]->forward(e));
  return out;
}

}  // namespace geoloc::nn
