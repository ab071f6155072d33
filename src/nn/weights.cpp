// Weights files: PyTorch layouts at the boundary, strict name and shape checks.
#include "geoloc/nn/weights.hpp"

#include <cmath>
#include <set>

namespace geoloc::nn {

namespace {
constexpr const char* kFormat = "geoloc-geonet/1";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// OIHW (file) -> OHWI (memory), host tensors.
Tensor oihw_to_ohwi(const Tensor& src, const Shape& ours) {
  const int64_t o = ours[0], kh = ours[1], kw = ours[2], ci = ours[3];
  Tensor out = Tensor::empty(ours);
  const float* s = src.data<float>();
  float* d = out.data<float>();
  for (int64_t a = 0; a < o; ++a)
    for (int64_t i = 0; i < ci; ++i)
      for (int64_t h = 0; h < kh; ++h)
        for (int64_t w = 0; w < kw; ++w) d[((a * kh + h) * kw + w) * ci + i] = s[((a * ci + i) * kh + h) * kw + w];
  return out;
}

Tensor ohwi_to_oihw(const Tensor& src) {
  const Shape& sh = src.shape();
  const int64_t o = sh[0], kh = sh[1], kw = sh[2], ci = sh[3];
  Tensor out = Tensor::empty({o, ci, kh, kw});
  const float* s = src.data<float>();
  float* d = out.data<float>();
  for (int64_t a = 0; a < o; ++a)
    for (int64_t h = 0; h < kh; ++h)
      for (int64_t w = 0; w < kw; ++w)
        for (int64_t i = 0; i < ci; ++i) d[((a * ci + i) * kh + h) * kw + w] = s[((a * kh + h) * kw + w) * ci + i];
  return out;
}
}  // namespace

void require_finite(const Tensor& t, const std::string& path, const std::string& name, const char* where) {
  if (t.dtype() != DType::F32) return;  // what files and modules hold (F16 / BF16 files are widened on reading)
  const Tensor host = t.to(Device::cpu());
  const float* p = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i)
    GEOLOC_CHECK(std::isfinite(p[i]), IoError, path, ": tensor '", name, "' holds a non-finite value (", p[i],
                 " at element ", i, ") ", where, "; a model with NaN or infinite weights is refused");
}

std::vector<int64_t> pytorch_shape(const Shape& s) {
  if (s.ndim() == 4) return {s[0], s[3], s[1], s[2]};
  return s.vec();
}

namespace {
bool is_head(const std::string& name) { return name.rfind("heads.", 0) == 0; }


void load_impl(Module& m, const safetensors::File& file, bool backbone_only) {
  const std::string& path = file.path();
  NamedTensors state;
  for (auto& nt : m.state())
    if (!backbone_only || !is_head(nt.first)) state.push_back(nt);
  std::set<std::string> expected;
  std::vector<std::pair<Tensor, Tensor>> staged;  // (destination, converted host source)
  for (const auto& [name, dst] : state) {
    expected.insert(name);
    GEOLOC_CHECK(file.has(name), IoError, path, ": missing tensor '", name, "' (the model expects ",
                 shape_str(pytorch_shape(dst.shape())), ")");
    const auto& e = file.entry(name);
    const auto want = pytorch_shape(dst.shape());
    GEOLOC_CHECK(e.shape == want, ShapeError, path, ": tensor '", name, "' has shape ", e.shape_str(),
                 " in the file but the model expects ", shape_str(want));
    GEOLOC_CHECK(e.dtype == safetensors::StDType::F32 || e.dtype == safetensors::StDType::F16 ||
                     e.dtype == safetensors::StDType::BF16,
                 IoError, path, ": tensor '", name, "' has dtype ", safetensors::st_dtype_name(e.dtype),
                 ", expected F32, F16 or BF16");
    Tensor src = file.tensor(name);
    require_finite(src, path, name, "in the file");
    staged.emplace_back(dst, dst.ndim() == 4 ? oihw_to_ohwi(src, dst.shape()) : src.view(dst.shape()));
  }
  for (const auto& e : file.entries()) {
    if (expected.count(e.name) || ends_with(e.name, ".num_batches_tracked") || e.name == "num_batches_tracked") continue;
    if (backbone_only && (is_head(e.name) || e.name.rfind("fc.", 0) == 0)) continue;
    throw IoError(detail::cat(path, ": unexpected tensor '", e.name, "' ", e.shape_str(),
                              " (the model has no parameter or buffer of that name)"));
  }
  // Every check passed: now copy (grad-free, in place, so Module pointers and optimisers stay valid).
  for (auto& [dst, src] : staged) Tensor(dst).copy_(src);
}
}  // namespace

void load_state(Module& m, const safetensors::File& file) { load_impl(m, file, false); }
void load_backbone(Module& m, const std::string& path) { load_impl(m, safetensors::File::open(path), true); }

void load_state(Module& m, const std::string& path) { load_state(m, safetensors::File::open(path)); }

void save_state(const Module& m, const std::string& path, const std::map<std::string, std::string>& metadata) {
  std::vector<safetensors::WriteItem> items;
  std::set<std::string> names;
  for (const auto& [name, t] : m.state()) {
    safetensors::WriteItem w;
    w.name = name;
    const Tensor h = t.to(Device::cpu());
    require_finite(h, path, name, "to be written");
    w.tensor = h.ndim() == 4 ? ohwi_to_oihw(h) : h;
    items.push_back(std::move(w));
    names.insert(name);
  }
  // torch's BatchNorm2d has an I64 scalar num_batches_tracked; write it so strict load_state_dict works.
  for (const auto& [name, t] : m.named_buffers()) {
    if (!ends_with(name, "running_var")) continue;
    const std::string nbt = name.substr(0, name.size() - 11) + "num_batches_tracked";
    if (names.count(nbt)) continue;
    safetensors::WriteItem w;
    w.name = nbt;
    w.raw_dtype = safetensors::StDType::I64;
    w.raw_bytes.assign(8, 0);
    items.push_back(std::move(w));
  }
  safetensors::write(path, items, metadata);
}

void save_geonet(const GeoNet& net, const std::string& path) {
  save_state(net, path,
             {{"format", kFormat}, {"arch", net.config().name()}, {"heads", net.geo_config().heads_string()}});
}

GeoNetConfig geonet_config_from(const safetensors::File& file, const std::optional<std::string>& arch) {
  GeoNetConfig cfg;
  const auto& meta = file.metadata();
  std::string a;
  if (arch && !arch->empty()) {
    a = *arch;
  } else {
    auto it = meta.find("arch");
    GEOLOC_CHECK(it != meta.end(), IoError, file.path(),
                 ": no 'arch' in __metadata__; give the architecture (e.g. --arch resnet50)");
    a = it->second;
  }
  cfg.backbone = ResNetConfig::parse(a);
  if (auto it = meta.find("heads"); it != meta.end()) {
    try {
      cfg.heads = GeoNetConfig::parse_heads(it->second);
    } catch (const Error& e) {
      throw IoError(file.path() + ": __metadata__ 'heads': " + e.what());
    }
  } else {
    for (const auto& e : file.entries()) {
      if (e.name.rfind("heads.", 0) != 0 || !ends_with(e.name, ".weight")) continue;
      const std::string hn = e.name.substr(6, e.name.size() - 6 - 7);
      GEOLOC_CHECK(e.shape.size() == 2, ShapeError, file.path(), ": tensor '", e.name, "' has shape ", e.shape_str(),
                   ", a head weight must be [C, D]");
      HeadSpec h{hn, HeadKind::Partition, e.shape[0]};
      if (hn == "scene") h.kind = HeadKind::Scene;
      if (hn == "country") h.kind = HeadKind::Country;
      if (hn == "coords") h.kind = HeadKind::Coordinates;
      cfg.heads.push_back(h);
    }
  }
  try {
    cfg.validate();
  } catch (const Error& e) {
    throw IoError(file.path() + ": " + e.what());
  }
  // A few bytes of metadata (or --arch) can describe a network of terabytes: refused here, before anyone
  // allocates it, when the file cannot hold its parameters (load_state would refuse the file anyway).
  int64_t values = 0;
  for (const auto& e : file.entries()) values += e.numel();
  const int64_t need = cfg.state_size();
  GEOLOC_CHECK(need <= values, ShapeError, file.path(), ": the network '", a, "' with heads '", cfg.heads_string(),
               "' has ", need, " parameter and buffer values but the file holds only ", values);
  return cfg;
}

std::unique_ptr<GeoNet> load_geonet(const std::string& path, const std::optional<std::string>& arch) {
  const auto file = safetensors::File::open(path);
  auto net = std::make_unique<GeoNet>(geonet_config_from(file, arch));
  load_state(*net, file);
  net->eval();
  return net;
}

}  // namespace geoloc::nn
