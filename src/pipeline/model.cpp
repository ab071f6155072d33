#include "geoloc/pipeline/model.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "geoloc/geo/predict.hpp"
#include "geoloc/nn/weights.hpp"
#include "geoloc/safetensors.hpp"

namespace geoloc::pipeline {

namespace {
constexpr const char* kMetaKey = "geoloc.model";

nlohmann::json partition_json(const GeoPartition& gp) {
  nlohmann::json j;
  j["name"] = gp.name;
  if (const auto* cells = gp.cells()) {
    j["type"] = "s2";
    auto& rows = j["cells"] = nlohmann::json::array();
    for (const auto& c : cells->cells()) rows.push_back({geo::cell_token(c.id), c.count, c.mean.lat, c.mean.lng});
  } else {
    j["type"] = "centroids";
    auto& rows = j["centroids"] = nlohmann::json::array();
    for (size_t c = 0; c < gp.partition->size(); ++c) {
      const auto p = gp.partition->center(c);
      rows.push_back({gp.partition->count(c), p.lat, p.lng});
    }
  }
  return j;
}

// Numbers from the metadata, type- and range-checked: nlohmann's get<int>() of 1e300 or of 3.5 would be
// an out-of-range float-to-integer conversion (undefined behaviour) or a silent truncation.
int64_t json_int(const nlohmann::json& v, const char* what, int64_t lo, int64_t hi) {
  GEOLOC_CHECK(v.is_number_integer(), IoError, what, " must be an integer, got ", v.dump());
  GEOLOC_CHECK(v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                                      : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi,
               IoError, what, " ", v.dump(), " is outside [", lo, ", ", hi, "]");
  return v.get<int64_t>();
}
double json_number(const nlohmann::json& v, const char* what) {
  GEOLOC_CHECK(v.is_number(), IoError, what, " must be a number, got ", v.dump());
  const double d = v.get<double>();
  GEOLOC_CHECK(std::isfinite(d), IoError, what, " ", v.dump(), " is not finite");
  return d;
}
geo::LatLng json_latlng(const nlohmann::json& lat, const nlohmann::json& lng, const std::string& where) {
  const geo::LatLng p{json_number(lat, "latitude"), json_number(lng, "longitude")};
  try {
    geo::validate(p, where);
  } catch (const ValueError& e) {
    throw IoError(e.what());
  }
  return p;
}

GeoPartition partition_from_json(const nlohmann::json& j) {
  GeoPartition gp;
  gp.name = j.at("name").get<std::string>();
  const std::string type = j.at("type").get<std::string>();
  const std::string where = "partition '" + gp.name + "'";
  if (type == "s2") {
    std::vector<geo::Cell> cells;
    for (const auto& r : j.at("cells")) {
      geo::Cell c;
      c.id = geo::cell_from_token(r.at(0).get<std::string>());
      c.count = json_int(r.at(1), "cell count", 0, INT64_MAX);
      c.mean = json_latlng(r.at(2), r.at(3), where + " cell " + std::to_string(cells.size()) + " mean");
      cells.push_back(c);
    }
    gp.partition = std::make_shared<geo::CellPartition>(std::move(cells));
  } else if (type == "centroids") {
    std::vector<geo::LatLng> centres;
    std::vector<int64_t> counts;
    for (const auto& r : j.at("centroids")) {
      counts.push_back(json_int(r.at(0), "centroid count", 0, INT64_MAX));
      centres.push_back(json_latlng(r.at(1), r.at(2), where + " centroid " + std::to_string(centres.size())));
    }
    gp.partition = std::make_shared<geo::KMeansPartition>(std::move(centres), std::move(counts));
  } else {
    throw IoError("partition '" + gp.name + "' has unknown type '" + type + "'");
  }
  return gp;
}
}  // namespace

// ---------------------------------------------------------------- model
const GeoPartition& GeoModel::finest() const {
  GEOLOC_CHECK(!partitions.empty(), ValueError, "the model has no geo partitioning");
  return partitions.back();
}

const nn::HeadSpec* GeoModel::offset_head() const {
  if (!net) return nullptr;
  for (const auto& h : net->geo_config().heads)
    if (h.kind == nn::HeadKind::Offset) return &h;
  return nullptr;
}

void GeoModel::finalise() {
  GEOLOC_CHECK(net, ValueError, "the model has no network");
  const auto& heads = net->geo_config().heads;
  size_t geo_heads = 0;
  for (const auto& h : heads) {
    if (h.kind == nn::HeadKind::Scene) {
      GEOLOC_CHECK(scene_names.empty() || static_cast<int64_t>(scene_names.size()) == h.classes, ValueError,
                   "scene head has ", h.classes, " classes but ", scene_names.size(), " scene names are given");
    }
    if (h.kind == nn::HeadKind::Country) {
      GEOLOC_CHECK(static_cast<int64_t>(country_codes.size()) == h.classes, ValueError, "country head has ",
                   h.classes, " classes but ", country_codes.size(), " country codes are given");
    }
    if (h.kind != nn::HeadKind::Partition) continue;
    ++geo_heads;
    auto it = std::find_if(partitions.begin(), partitions.end(), [&](const auto& p) { return p.name == h.name; });
    GEOLOC_CHECK(it != partitions.end(), ValueError, "geo head '", h.name, "' has no partitioning");
    GEOLOC_CHECK(static_cast<int64_t>(it->partition->size()) == h.classes, ShapeError, "geo head '", h.name, "' has ",
                 h.classes, " classes but its partitioning has ", it->partition->size());
  }
  GEOLOC_CHECK(geo_heads == partitions.size(), ValueError, "the model has ", partitions.size(),
               " partitionings but ", geo_heads, " geo heads");
  offset_scales_.clear();
  if (const nn::HeadSpec* h = offset_head()) {
    GEOLOC_CHECK(!partitions.empty() && h->classes == 2 * static_cast<int64_t>(finest().partition->size()), ShapeError,
                 "offset head '", h->name, "' has ", h->classes, " outputs but the finest partitioning has ",
                 partitions.empty() ? 0 : finest().partition->size(), " cells (2 outputs a cell)");
    offset_scales_ = geo::class_scales_km(*finest().partition);
  }
  hierarchy_.reset();
  std::vector<geo::CellPartition> s2;
  for (const auto& p : partitions)
    if (p.cells()) s2.push_back(*p.cells());
  if (s2.size() >= 2 && s2.size() == partitions.size()) hierarchy_.emplace(s2);
}

std::map<std::string, std::string> GeoModel::metadata() const {
  GEOLOC_CHECK(net, ValueError, "a model without a network has no metadata");
  nlohmann::json j;
  j["version"] = 1;
  j["partitions"] = nlohmann::json::array();
  for (const auto& p : partitions) j["partitions"].push_back(partition_json(p));
  j["scenes"] = scene_names;
  j["countries"] = country_codes;
  j["preprocess"] = {{"resize", preprocess.resize},
                     {"crop", preprocess.crop},
                     {"mean", {preprocess.mean[0], preprocess.mean[1], preprocess.mean[2]}},
                     {"std", {preprocess.std[0], preprocess.std[1], preprocess.std[2]}}};
  j["dropout"] = net->geo_config().dropout;
  return {{"format", "geoloc-geonet/1"},
          {"arch", net->config().name()},
          {"heads", net->geo_config().heads_string()},
          {kMetaKey, j.dump()}};
}

GeoModel GeoModel::from_metadata(const std::map<std::string, std::string>& meta, const std::string& label,
                                 int64_t max_state_size) {
  auto it = meta.find(kMetaKey);
  GEOLOC_CHECK(it != meta.end(), IoError, label, ": not a geoloc model file (no '", kMetaKey,
               "' in __metadata__); plain weights go to `geoloc forward`");
  GeoModel m;
  try {
    const auto j = nlohmann::json::parse(it->second);
    for (const auto& p : j.at("partitions")) m.partitions.push_back(partition_from_json(p));
    m.scene_names = j.value("scenes", std::vector<std::string>{});
    if (j.contains("countries"))
      for (const auto& c : j.at("countries")) m.country_codes.push_back(static_cast<int>(json_int(c, "country code", 0, 999)));
    const auto& pp = j.at("preprocess");
    m.preprocess.resize = static_cast<int>(json_int(pp.at("resize"), "preprocess resize", 1, INT32_MAX));
    m.preprocess.crop = static_cast<int>(json_int(pp.at("crop"), "preprocess crop", 1, INT32_MAX));
    for (int c = 0; c < 3; ++c) {
      m.preprocess.mean[c] = static_cast<float>(json_number(pp.at("mean").at(c), "preprocess mean"));
      m.preprocess.std[c] = static_cast<float>(json_number(pp.at("std").at(c), "preprocess std"));
    }
    nn::GeoNetConfig cfg;
    auto arch = meta.find("arch"), heads = meta.find("heads");
    GEOLOC_CHECK(arch != meta.end() && heads != meta.end(), IoError, "no 'arch' or 'heads' entry");
    cfg.backbone = nn::ResNetConfig::parse(arch->second);
    cfg.heads = nn::GeoNetConfig::parse_heads(heads->second);
    cfg.dropout = j.contains("dropout") ? static_cast<float>(json_number(j.at("dropout"), "dropout")) : 0.0f;
    m.preprocess.validate();
    cfg.validate();
    // Checked before the network is allocated: a few bytes of metadata can describe a network of
    // terabytes ("resnet:bottleneck:64-64-64-64:w4096:..."), which a file of this size cannot hold.
    const int64_t need = cfg.state_size();
    GEOLOC_CHECK(need <= max_state_size, IoError, "the network '", arch->second, "' with heads '", heads->second,
                 "' has ", need, " parameter and buffer values but the file holds only ", max_state_size);
    m.net = std::make_shared<nn::GeoNet>(cfg);
    m.finalise();
  } catch (const nlohmann::json::exception& e) {
    throw IoError(label + ": malformed '" + kMetaKey + "' metadata: " + e.what());
  } catch (const Error& e) {
    throw IoError(label + ": " + e.what());
  }
  return m;
}

void GeoModel::save(const std::string& path) const { nn::save_state(*net, path, metadata()); }

GeoModel GeoModel::load(const std::string& path) {
  const auto file = safetensors::File::open(path);
  int64_t values = 0;  // every tensor's element count (each fits the file: validated by File)
  for (const auto& e : file.entries()) values += e.numel();
  GeoModel m = from_metadata(file.metadata(), path, values);
  nn::load_state(*m.net, file);
  m.net->eval();
  return m;
}

std::vector<GeoPartition> read_partitions(const std::vector<std::string>& csv_paths) {
  GEOLOC_CHECK(!csv_paths.empty(), ValueError, "no partition CSV given");
  static const char* kNames3[] = {"coarse", "middle", "fine"};
  std::vector<GeoPartition> out;
  for (size_t i = 0; i < csv_paths.size(); ++i) {
    auto cells = std::make_shared<geo::CellPartition>(geo::CellPartition::read_csv(csv_paths[i]));
    GEOLOC_CHECK(cells->size() >= 1, IoError, csv_paths[i], ": no cells");
    out.push_back({csv_paths.size() == 3 ? kNames3[i] : "cells" + std::to_string(i), std::move(cells)});
  }
  return out;
}

Coverage coverage(const std::vector<GeoPartition>& partitions, std::span<const geo::LatLng> coords) {
  Coverage c;
  std::vector<size_t> inside(coords.size(), 0);
  for (const auto& gp : partitions) {
    const std::vector<int> a = gp.partition->assign_all(coords);
    size_t n = 0;
    for (size_t i = 0; i < a.size(); ++i) (a[i] < 0 ? n : inside[i]) += 1;
    c.outside.push_back(n);
  }
  for (size_t i = 0; i < coords.size(); ++i)
    if (inside[i] == 0) c.outside_all_rows.push_back(i);
  return c;
}

GeoModel build_model(const ModelSpec& spec, std::span<const geo::LatLng> train_coords,
                     std::span<const int> train_countries) {
  GEOLOC_CHECK(!train_coords.empty(), ValueError, "cannot build a model from an empty training set");
  spec.preprocess.validate();
  GeoModel m;
  m.preprocess = spec.preprocess;
  nn::GeoNetConfig cfg;
  cfg.backbone = spec.backbone;
  cfg.dropout = spec.dropout;
  cfg.freeze_backbone = spec.freeze_backbone;
  if (!spec.partitions.empty()) {
    GEOLOC_CHECK(spec.kmeans_k == 0, ValueError, "give partitionings or k-means clusters, not both");
    m.partitions = spec.partitions;
  } else if (spec.kmeans_k > 0) {
    auto km = std::make_shared<geo::KMeansPartition>(
        geo::KMeansPartition::fit(train_coords, {.k = spec.kmeans_k, .seed = spec.seed}));
    m.partitions.push_back({"clusters", km});
  } else {
    // Coarse to fine: the largest tau_max gives the fewest cells.
    geo::AdaptiveOptions cells = spec.cells;
    std::sort(cells.tau_max.begin(), cells.tau_max.end(), std::greater<>());
    auto parts = geo::build_adaptive_partitions(train_coords, cells);
    static const char* kNames3[] = {"coarse", "middle", "fine"};
    for (size_t i = 0; i < parts.size(); ++i) {
      GEOLOC_CHECK(parts[i].size() >= 2, ValueError, "partitioning with tau_max ", cells.tau_max[i], " has ",
                   parts[i].size(), " cell(s) for ", train_coords.size(),
                   " training points; lower tau_max or tau_min");
      std::string name = parts.size() == 3 ? kNames3[i] : "cells" + std::to_string(i);
      m.partitions.push_back({name, std::make_shared<geo::CellPartition>(std::move(parts[i]))});
    }
  }
  for (const auto& p : m.partitions)
    cfg.heads.push_back({p.name, nn::HeadKind::Partition, static_cast<int64_t>(p.partition->size())});
  if (!spec.scene_names.empty()) {
    m.scene_names = spec.scene_names;
    cfg.heads.push_back({"scene", nn::HeadKind::Scene, static_cast<int64_t>(spec.scene_names.size())});
  }
  if (spec.country_head) {
    std::vector<int> codes;
    for (int c : train_countries)
      if (c >= 0) codes.push_back(c);
    std::sort(codes.begin(), codes.end());
    codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
    GEOLOC_CHECK(codes.size() >= 2, ValueError, "a country head needs at least two countries in the training set, got ",
                 codes.size());
    m.country_codes = codes;
    cfg.heads.push_back({"country", nn::HeadKind::Country, static_cast<int64_t>(codes.size())});
  }
  if (spec.coords_head) cfg.heads.push_back({"coords", nn::HeadKind::Coordinates, 3});
  if (spec.hybrid_head)
    cfg.heads.push_back({"offset", nn::HeadKind::Offset, 2 * static_cast<int64_t>(m.partitions.back().partition->size())});
  m.net = std::make_shared<nn::GeoNet>(cfg, spec.seed);
  m.finalise();
  return m;
}

}  // namespace geoloc::pipeline
