#pragma once
// The geolocation network: a ResNet backbone and ordered linear heads on its embedding.
// Heads are named `heads.<name>` (`heads.<name>.weight` [C, D], `heads.<name>.bias` [C]); backbone
// names are torchvision's, at the top level (conv1.weight, layer1.0.bn1.running_var, ...).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "geoloc/nn/resnet.hpp"

namespace geoloc::nn {

enum class HeadKind {
  Partition,    // classification over the cells of one geo partitioning (one head per partitioning)
  Scene,        // scene classification (indoor / natural / urban, or finer)
  Country,      // country classification
  Coordinates,  // regression: 3 outputs = a point on the unit sphere (haversine loss, normalised inside),
                //             2 outputs = (latitude / 90, longitude / 180) (mean squared error, Sy & Day)
  Offset,       // hybrid head: per cell of the finest partitioning, the photo's (east, north) offset from
                // the cell's centre in its tangent plane, in units of the cell's size (2 outputs a cell;
                // mean squared error on the true cell's pair only)
};
const char* head_kind_name(HeadKind k);  // "partition", "scene", "country", "coords", "offset"
HeadKind parse_head_kind(const std::string& s);  // ValueError on anything else

struct HeadSpec {
  std::string name;  // [A-Za-z0-9_-]+, unique
  HeadKind kind = HeadKind::Partition;
  int64_t classes = 0;  // outputs; must be 3 for Coordinates
  bool operator==(const HeadSpec& o) const = default;
};

struct GeoNetConfig {
  ResNetConfig backbone = ResNetConfig::resnet50();
  std::vector<HeadSpec> heads;
  float dropout = 0.0f;          // on the embedding, before every head (training only)
  bool freeze_backbone = false;  // only heads train; the backbone runs with BN in eval mode, no graph
  /// ValueError naming the offending head.
  void validate() const;
  /// Values in the network's parameters and buffers (backbone and heads), computed without building it:
  /// a weights file must hold at least this many, so a reader can refuse metadata that describes a
  /// network larger than its file before allocating it. Saturates at INT64_MAX.
  int64_t state_size() const;
  /// "name:kind:classes,..." (the `heads` entry of a weights file's metadata) and its inverse.
  std::string heads_string() const;
  static std::vector<HeadSpec> parse_heads(const std::string& s);
};

/// Ordered head outputs: (name, logits [N, C]) in the configuration's order.
struct GeoOutput {
  Tensor embedding;  // [N, D]
  std::vector<std::pair<std::string, Tensor>> logits;
  /// The logits of head `name`; Error naming it if absent.
  const Tensor& at(const std::string& name) const;
};

/// The linear heads, as children named by head.
class Heads : public Module {
 public:
  Heads(const std::vector<HeadSpec>& specs, int64_t dim, random::Rng& rng);
  std::vector<HeadSpec> specs;
  std::vector<std::shared_ptr<Linear>> layers;
};

/// Backbone + heads. It *is* the backbone (derives from ResNet) so that backbone names carry no prefix.
class GeoNet : public ResNet {
 public:
  explicit GeoNet(const GeoNetConfig& cfg, uint64_t seed = 0);
  /// x NHWC [N, H, W, C] -> embedding and the logits of every head. Training mode (train()) uses batch
  /// statistics and dropout, unless the backbone is frozen, whose BN then stays in eval mode.
  GeoOutput forward(const Tensor& x);
  const GeoNetConfig& geo_config() const { return gcfg_; }
  /// Freezes the backbone (requires_grad off, BN eval, no graph through it) or unfreezes it.
  void set_freeze_backbone(bool frozen);
  /// Seed of the next dropout mask (each training forward advances it).
  void set_dropout_seed(uint64_t s) { dropout_seed_ = s; }
  std::shared_ptr<Heads> heads;

 private:
  GeoNetConfig gcfg_;
  uint64_t dropout_seed_ = 0;
};

}  // namespace geoloc::nn
