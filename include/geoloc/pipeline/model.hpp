#pragma once
// A complete geolocation model in one safetensors file: the network (backbone + heads), the
// partitionings its geo heads classify over (coarse to fine), the scene names, the preprocessing,
// and optionally a k-NN index of training embeddings. Everything that is not a tensor lives in
// the file's __metadata__ under "geoloc.model" as JSON. The k-NN index of training embeddings is a
// separate safetensors file (built by `geoloc index`), attached with `knn`.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "geoloc/geo/hierarchy.hpp"
#include "geoloc/geo/kmeans.hpp"
#include "geoloc/geo/partition.hpp"
#include "geoloc/nn/heads.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/pipeline/preprocess.hpp"

namespace geoloc::pipeline {

/// One geo head's classes: an S2 partitioning or k-means clusters.
struct GeoPartition {
  std::string name;  // the head is heads.<name>
  std::shared_ptr<const geo::Partition> partition;
  /// The S2 cells, when this is an S2 partitioning (nullptr for k-means).
  const geo::CellPartition* cells() const { return dynamic_cast<const geo::CellPartition*>(partition.get()); }
};

class GeoModel {
 public:
  std::shared_ptr<nn::GeoNet> net;
  std::vector<GeoPartition> partitions;  // coarse to fine, one per Partition head
  std::vector<std::string> scene_names;  // classes of the "scene" head (empty: no scene head)
  std::vector<int> country_codes;        // ISO numeric code of each class of the "country" head
  Preprocess preprocess;
  KnnIndex knn;                          // optional (empty); not part of save()/load() (pipeline/knn.hpp)

  /// The hierarchy over the S2 partitionings (present when all geo heads are S2 and there are >= 2).
  const geo::Hierarchy* hierarchy() const { return hierarchy_ ? &*hierarchy_ : nullptr; }
  /// Call after changing `partitions`: checks them against the heads and rebuilds the hierarchy.
  void finalise();
  /// The finest partitioning (the last).
  const GeoPartition& finest() const;
  /// The hybrid head (HeadKind::Offset) over the finest partitioning, or nullptr.
  const nn::HeadSpec* offset_head() const;
  /// The scale of each finest class's offsets (geo::class_scales_km), computed by finalise().
  const std::vector<double>& offset_scales_km() const { return offset_scales_; }

  /// The __metadata__ of the model's file: format, arch, heads and "geoloc.model" (JSON).
  std::map<std::string, std::string> metadata() const;
  /// Rebuilds everything but the weights from metadata() (the network freshly initialised). IoError
  /// naming `label` for malformed metadata, and, before anything is allocated, when the network it
  /// describes has more than `max_state_size` parameter and buffer values (load() passes the number of
  /// values in the file, which must hold them all).
  static GeoModel from_metadata(const std::map<std::string, std::string>& meta, const std::string& label,
                                int64_t max_state_size = INT64_MAX);
  /// One file: weights (PyTorch layout, torchvision names) + metadata; written atomically.
  void save(const std::string& path) const;
  /// Loads a file written by save(); IoError / ShapeError naming the file and the problem.
  static GeoModel load(const std::string& path);

 private:
  std::optional<geo::Hierarchy> hierarchy_;
  std::vector<double> offset_scales_;
};

/// What to build for training: the backbone, the partitionings (adaptive S2 cells from the training
/// coordinates, one per tau_max, coarse to fine; or k-means clusters), and the optional heads.
struct ModelSpec {
  nn::ResNetConfig backbone = nn::ResNetConfig::small();
  geo::AdaptiveOptions cells;     // used when kmeans_k == 0
  int kmeans_k = 0;               // > 0: one k-means partitioning instead of S2 cells
  /// Given partitionings (coarse to fine, e.g. read from ECCV 2018 CSVs) used instead of building
  /// any: the heads are named after them and have their class counts.
  std::vector<GeoPartition> partitions;
  std::vector<std::string> scene_names;  // empty: no scene head
  bool country_head = false;      // classes = the countries present in the training set
  bool coords_head = false;       // unit 3-vector regression trained with the haversine loss
  /// A hybrid head "offset" (HeadKind::Offset) over the finest partitioning: the photo's offset from its
  /// cell's centre, trained jointly; the hybrid strategy adds it to the chosen cell's centre.
  bool hybrid_head = false;
  float dropout = 0.0f;
  bool freeze_backbone = false;
  Preprocess preprocess;
  uint64_t seed = 1;
};

/// Reads partition CSVs (coarse to fine) as given partitionings, named coarse/middle/fine for three
/// and cells0, cells1, ... otherwise. IoError naming the file and line for a malformed one.
std::vector<GeoPartition> read_partitions(const std::vector<std::string>& csv_paths);

/// How many training points lie outside every cell of each partitioning (first: per partitioning,
/// coarse to fine) and outside every cell of all of them (`outside_all`, their rows in `rows`).
struct Coverage {
  std::vector<size_t> outside;
  std::vector<size_t> outside_all_rows;
};
Coverage coverage(const std::vector<GeoPartition>& partitions, std::span<const geo::LatLng> coords);

/// Builds an initialised model for `spec` from the training coordinates (and countries).
GeoModel build_model(const ModelSpec& spec, std::span<const geo::LatLng> train_coords,
                     std::span<const int> train_countries = {});

}  // namespace geoloc::pipeline
