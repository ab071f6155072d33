// The public API (geoloc.hpp) on top of the pipeline.
#include "geoloc/geoloc.hpp"


#include "geoloc/geo/countries.hpp"
#include "geoloc/image/image.hpp"
#include "geoloc/pipeline/eval.hpp"

namespace geoloc {

RgbImage read_image(const std::string& path) {
  image::Image img = image::decode_file(path);
  return {img.width, img.height, std::move(img.pixels)};
}

struct Locator::Impl {
  Options options;
  pipeline::GeoModel model;
  std::unique_ptr<geo::CountryIndex> countries;
  std::unique_ptr<pipeline::Predictor> predictor;
  pipeline::PredictOptions po;

  // The network input for a batch of images: one centre crop each, or five crops each.
  Tensor input(const std::vector<RgbImage>& images) const {
    std::vector<image::Image> imgs(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      const RgbImage& r = images[i];
      GEOLOC_CHECK(r.width > 0 && r.height > 0 && r.pixels.size() == static_cast<size_t>(r.width) * r.height * 3,
                   ValueError, "image ", i, ": ", r.width, "x", r.height, " with ", r.pixels.size(),
                   " bytes is not a valid RGB image");
      imgs[i].width = r.width;
      imgs[i].height = r.height;
      imgs[i].pixels = r.pixels;
    }
    return model.preprocess.eval_batch(imgs, options.five_crop).to(model.net->device());
  }

  Result result(const pipeline::HeadProbabilities& hp, int64_t i) const {
    const pipeline::Prediction p = predictor->decide(hp, i, po);
    Result r;
    r.latitude = p.coordinate.lat;
    r.longitude = p.coordinate.lng;
    r.confidence = p.confidence;
    for (const auto& c : p.top_cells) r.top_cells.push_back({c.cell, c.probability, c.center.lat, c.center.lng});
    if (p.scene >= 0 && p.scene < static_cast<int>(model.scene_names.size())) r.scene = model.scene_names[p.scene];
    r.scene_probability = p.scene_probability;
    r.country = p.country;
    r.country_name = countries->name_of(p.country);
    return r;
  }
};

Locator::Locator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Locator::Locator(Locator&&) noexcept = default;
Locator& Locator::operator=(Locator&&) noexcept = default;
Locator::~Locator() = default;

Locator Locator::load(const std::string& model_path, const Options& options, const std::string& knn_index_path) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->model = pipeline::GeoModel::load(model_path);
  const Device device = Device::parse(options.device);
  if (!knn_index_path.empty()) impl->model.knn = pipeline::KnnIndex::load(knn_index_path).to(device);
  impl->model.net->to(device);
  impl->model.net->set_frozen(true);  // inference only: the CPU convolutions may keep their packed weights
  impl->countries = std::make_unique<geo::CountryIndex>(geo::CountryIndex::load_default());
  impl->predictor = std::make_unique<pipeline::Predictor>(impl->model, impl->countries.get());
  impl->po.strategy = pipeline::parse_strategy(options.strategy);
  impl->po.top_cells = options.top_cells;
  impl->po.snap_to_land = options.snap_to_land;
  GEOLOC_CHECK(options.crop_aggregation == "mean" || options.crop_aggregation == "max", ValueError,
               "crop_aggregation '", options.crop_aggregation, "' is neither 'mean' nor 'max'");
  const pipeline::Strategy s = impl->po.strategy;
  GEOLOC_CHECK((s != pipeline::Strategy::Knn && s != pipeline::Strategy::Refine && s != pipeline::Strategy::Rank) ||
                   !impl->model.knn.empty(),
               ValueError, "strategy '", options.strategy, "' needs a k-NN index (geoloc index); none was given");
  GEOLOC_CHECK(s == pipeline::Strategy::Hierarchy || impl->predictor->supports(s), ValueError, "strategy '",
               options.strategy, "' is not available for this model");
  return Locator(std::move(impl));
}

std::vector<Result> Locator::predict(const std::vector<RgbImage>& images) const {
  if (images.empty()) return {};
  auto hp = impl_->predictor->probabilities(impl_->input(images));
  if (impl_->options.five_crop) hp = pipeline::Predictor::aggregate(hp, 5, impl_->options.crop_aggregation == "max");
  impl_->predictor->prepare(hp, impl_->po);  // the neighbour searches of knn and refine, batched
  std::vector<Result> out;
  for (int64_t i = 0; i < hp.n; ++i) out.push_back(impl_->result(hp, i));
  return out;
}

Result Locator::predict(const RgbImage& image) const { return predict(std::vector<RgbImage>{image}).front(); }

Result Locator::predict_place(const std::vector<RgbImage>& views) const {
  GEOLOC_CHECK(!views.empty(), ValueError, "predict_place needs at least one view");
  auto hp = impl_->predictor->probabilities(impl_->input(views));
  hp = pipeline::Predictor::aggregate(hp, hp.n);
  impl_->predictor->prepare(hp, impl_->po);
  return impl_->result(hp, 0);
}

const Options& Locator::options() const { return impl_->options; }
std::vector<std::string> Locator::scene_names() const { return impl_->model.scene_names; }

}  // namespace geoloc
