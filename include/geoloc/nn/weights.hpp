#pragma once
// Weights files: safetensors with torchvision names and PyTorch layouts, so a file round-trips to
// PyTorch (torch.load_state_dict after safetensors.torch.load_file). Conv weights are OIHW in the file
// and OHWI in memory; linear weights are [C, D] in both. BN `num_batches_tracked` (I64) is written as 0
// and ignored when read. __metadata__ carries "format" ("geoloc-geonet/1"), "arch" (ResNetConfig::name())
// and "heads" (GeoNetConfig::heads_string()).
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "geoloc/nn/heads.hpp"
#include "geoloc/safetensors.hpp"

namespace geoloc::nn {

/// Copies every parameter and buffer of `m` from `file`, converting layouts. Missing tensors, unexpected
/// keys (other than *.num_batches_tracked) and shape mismatches throw geoloc::Error naming the tensor and
/// both shapes (in PyTorch's layout); nothing is modified unless every check passes.
void load_state(Module& m, const safetensors::File& file);
void load_state(Module& m, const std::string& path);

/// Loads only the backbone of `m` (everything outside `heads.`) from `path`, e.g. ImageNet weights
/// converted by tools/convert_checkpoint.py: the file's `heads.*` and `fc.*` tensors are ignored; any
/// other missing, unexpected or mis-shaped tensor is an error as in load_state.
void load_backbone(Module& m, const std::string& path);

/// Writes every parameter and buffer of `m` in PyTorch layout (plus num_batches_tracked), atomically.
void save_state(const Module& m, const std::string& path, const std::map<std::string, std::string>& metadata = {});

/// Saves a GeoNet with its architecture and heads in the metadata.
void save_geonet(const GeoNet& net, const std::string& path);
/// The network configuration a weights file describes: `arch` overrides the file's "arch" entry (needed
/// when the file has none); heads come from the "heads" entry or, without one, from the file's
/// `heads.<name>.weight` tensors (kind Partition, except a head named "scene"/"country"/"coords").
/// ShapeError, before anything is allocated, when the network has more parameter and buffer values than
/// the file holds.
GeoNetConfig geonet_config_from(const safetensors::File& file, const std::optional<std::string>& arch = {});
/// Builds the network a weights file describes and loads it (in eval mode).
std::unique_ptr<GeoNet> load_geonet(const std::string& path, const std::optional<std::string>& arch = {});

/// The file-layout shape of an in-memory tensor: OHWI [O,H,W,I] -> OIHW [O,I,H,W] for 4-D, else unchanged.
std::vector<int64_t> pytorch_shape(const Shape& ours);

/// IoError naming `path`, the tensor and the first NaN or infinity of an F32 tensor (any device; other
/// dtypes pass): no weights file is written from, and no model takes, non-finite weights. `where` ends
/// the message ("in the file", "to be written").
void require_finite(const Tensor& t, const std::string& path, const std::string& name, const char* where);

}  // namespace geoloc::nn
