// `geoloc forward`: runs a GeoNet from a weights file on a batch of images stored as safetensors.
#include <cstdio>

#include "cli.hpp"
#include "geoloc/nn/weights.hpp"

namespace {

int run_forward(int argc, char** argv) {
  using namespace geoloc;
  cli::Args args("forward", "--weights W.safetensors --input X.safetensors --output Y.safetensors",
                 {{"weights", "backbone + heads (torchvision names, PyTorch layouts)", false, ""},
                  {"input", "safetensors with one tensor 'input': float32 NCHW [N, 3, H, W], H, W >= 32, normalised",
                   false, ""},
                  {"output", "safetensors to write: 'embedding' [N, D] and 'heads.<name>' [N, C] per head", false, ""},
                  {"arch", "backbone architecture (default: the weights' __metadata__ 'arch')", false, ""},
                  {"device", "cpu or cuda[:N]", false, "cpu"}});
  if (!args.parse(argc, argv)) return 0;
  const std::string wpath = args.get("weights"), ipath = args.get("input");
  const Device dev = cli::usable_device(args.get("device"));
  cli::Outputs outputs;
  outputs.input(wpath, "--weights");
  outputs.input(ipath, "--input");
  const std::string opath = outputs.file(args.get("output"), "--output");

  const auto wfile = safetensors::File::open(wpath);
  std::optional<std::string> arch;
  if (args.has("arch")) arch = args.get("arch");
  nn::GeoNet net(nn::geonet_config_from(wfile, arch));
  nn::load_state(net, wfile);
  net.eval();

  const auto ifile = safetensors::File::open(ipath);
  const auto& e = ifile.entry("input");
  for (const auto& other : ifile.entries())
    GEOLOC_CHECK(other.name == "input", IoError, ipath, ": unexpected tensor '", other.name,
                 "' (only 'input' is read)");
  GEOLOC_CHECK(e.dtype == safetensors::StDType::F32, IoError, ipath, ": tensor 'input' has dtype ",
               safetensors::st_dtype_name(e.dtype), ", expected F32");
  const int64_t c = net.config().in_channels;
  GEOLOC_CHECK(e.shape.size() == 4 && e.shape[0] >= 1 && e.shape[1] == c && e.shape[2] >= 32 && e.shape[3] >= 32,
               ShapeError, ipath, ": tensor 'input' has shape ", e.shape_str(), ", expected NCHW [N, ", c,
               ", H, W] with N >= 1 and H, W >= 32");
  const Tensor x = nn::nchw_to_nhwc(ifile.tensor("input")).to(dev);
  net.to(dev);

  nn::GeoOutput out;
  {
    NoGradGuard g;
    out = net.forward(x);
  }
  std::vector<std::pair<std::string, Tensor>> result{{"embedding", out.embedding.to(Device::cpu())}};
  for (const auto& [name, t] : out.logits) result.emplace_back("heads." + name, t.to(Device::cpu()));
  safetensors::write(opath, result, {{"arch", net.config().name()}, {"heads", net.geo_config().heads_string()}});
  outputs.commit();
  return 0;
}

}  // namespace

GEOLOC_COMMAND("forward", "run the network on a batch of images (safetensors in and out)", run_forward);
