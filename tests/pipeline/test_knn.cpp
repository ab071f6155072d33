// The k-NN index and the k-NN coordinate (pipeline/knn.hpp).
#include <doctest/doctest.h>

#include <vector>

#include "geoloc/geo/coords.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/pipeline/predict.hpp"

using namespace geoloc;

TEST_CASE("k-NN coordinates: weighted spherical mean, and mean shift towards the densest neighbours") {
  // Five identical embeddings: three photos near Paris, two near Tokyo. Every neighbour weighs the same.
  const Tensor emb = Tensor::full({5, 4}, 1.0f);
  const std::vector<geo::LatLng> at = {{48.8, 2.3}, {48.9, 2.4}, {48.7, 2.2}, {35.7, 139.7}, {35.6, 139.6}};
  const pipeline::KnnIndex index = pipeline::KnnIndex::build(emb, at);
  const std::vector<float> q = {2.0f, 2.0f, 2.0f, 2.0f};  // any length: normalised inside
  pipeline::PredictOptions o;
  o.knn_k = 5;
  const geo::LatLng mean = pipeline::knn_coordinate(index, q.data(), 4, o);
  CHECK(geo::haversine_km(mean, {48.8, 2.3}) > 1500.0);  // the mean falls between the two groups
  o.knn_mode = pipeline::KnnMode::MeanShift;
  const geo::LatLng mode = pipeline::knn_coordinate(index, q.data(), 4, o);
  CHECK(geo::haversine_km(mode, {48.8, 2.3}) < 50.0);  // the mode is the larger group
  CHECK(pipeline::parse_knn_mode("mean-shift") == pipeline::KnnMode::MeanShift);
  CHECK_THROWS_AS(pipeline::parse_knn_mode("median"), ValueError);
  CHECK_THROWS_AS(index.search(q.data(), 3, 2), ShapeError);
  o.knn_temperature = 0.0f;
  CHECK_THROWS_AS(pipeline::knn_coordinate(index, q.data(), 4, o), ValueError);
}
