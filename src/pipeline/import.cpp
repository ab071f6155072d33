#include "geoloc/pipeline/import.hpp"

#include <algorithm>
#include <array>
#include <fstream>

#include "geoloc/detail/input_file.hpp"

#include "geoloc/nn/weights.hpp"

namespace geoloc::pipeline {

namespace {
// PyTorch's files are a zip archive (torch >= 1.6) or a bare pickle (protocol 2+ starts with 0x80).
void refuse_pickle(const std::string& path) {
  // (a directory, FIFO or device is refused here, before anything is read: a FIFO must not block)
  const detail::InputFile f(path, "weights file", UINT64_MAX);
  std::array<char, 4> magic{};
  ssize_t got = 0;
  do got = ::read(f.fd(), magic.data(), magic.size()); while (got < 0 && errno == EINTR);
  const bool zip = got == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
  const bool pickle = got >= 1 && static_cast<unsigned char>(magic[0]) == 0x80;
  GEOLOC_CHECK(!zip && !pickle, IoError, "'", path,
               "' is a PyTorch checkpoint (pickle); convert it first: python3 tools/convert_checkpoint.py ", path,
               " weights.safetensors --heads coarse,middle,fine (see docs/import.md)");
}
}  // namespace

GeoModel import_model(const ImportSpec& spec, ImportReport* report) {
  GEOLOC_CHECK(!spec.partitions.empty(), ValueError, "import: no partition CSV given (one per classifier head)");
  spec.preprocess.validate();
  refuse_pickle(spec.weights);
  GeoModel m;
  m.net = std::shared_ptr<nn::GeoNet>(nn::load_geonet(spec.weights, spec.arch));
  m.preprocess = spec.preprocess;

  std::vector<const nn::HeadSpec*> geo_heads;
  const nn::HeadSpec* scene = nullptr;
  for (const auto& h : m.net->geo_config().heads) {
    if (h.kind == nn::HeadKind::Partition) geo_heads.push_back(&h);
    if (h.kind == nn::HeadKind::Scene) scene = &h;
  }
  std::string names;
  for (const auto* h : geo_heads) names += (names.empty() ? "" : ", ") + h->name;
  GEOLOC_CHECK(geo_heads.size() == spec.partitions.size(), ValueError, "'", spec.weights, "' has ",
               geo_heads.size(), " partition heads (", names, ") but ", spec.partitions.size(),
               " partition CSVs were given");
  for (size_t i = 0; i < geo_heads.size(); ++i) {
    auto cells = std::make_shared<geo::CellPartition>(geo::CellPartition::read_csv(spec.partitions[i]));
    GEOLOC_CHECK(static_cast<int64_t>(cells->size()) == geo_heads[i]->classes, ShapeError, "'", spec.partitions[i],
                 "' has ", cells->size(), " classes but head '", geo_heads[i]->name, "' (classifier ", i, " of '",
                 spec.weights, "') has ", geo_heads[i]->classes, " outputs");
    m.partitions.push_back({geo_heads[i]->name, std::move(cells)});
  }
  if (!spec.scene_names.empty()) {
    GEOLOC_CHECK(scene, ValueError, "scene names given but '", spec.weights, "' has no scene head");
    GEOLOC_CHECK(static_cast<int64_t>(spec.scene_names.size()) == scene->classes, ShapeError,
                 spec.scene_names.size(), " scene names given but the scene head of '", spec.weights, "' has ",
                 scene->classes, " outputs");
    m.scene_names = spec.scene_names;
  }
  GEOLOC_CHECK(std::none_of(m.net->geo_config().heads.begin(), m.net->geo_config().heads.end(),
                            [](const auto& h) { return h.kind == nn::HeadKind::Country; }),
               ValueError, "'", spec.weights, "' has a country head, which import cannot label (no country codes)");
  m.finalise();
  if (report) {
    *report = {};
    for (const auto& gp : m.partitions) {
      report->head_names.push_back(gp.name);
      report->classes.push_back(gp.partition->size());
    }
    if (const auto* h = m.hierarchy())
      for (size_t f = 0; f < h->size(); ++f)
        for (size_t p = 0; p + 1 < h->num_partitions(); ++p)
          if (h->ancestor(f, p) < 0) {
            ++report->missing_ancestors;
            break;
          }
  }
  return m;
}

}  // namespace geoloc::pipeline
