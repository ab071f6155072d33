// Embedding geoloc in another program: load a model, locate photos, print the answers.
//   example_embed MODEL.safetensors PHOTO.jpg [PHOTO.jpg ...]
// (a model comes from `geoloc train` or `geoloc demo`, which writes demo-out/model.safetensors)
#include <cstdio>

#include "geoloc/geoloc.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors PHOTO...\n", argv[0]);
    return 2;
  }
  try {
    geoloc::Options options;
    options.strategy = "hierarchy";  // or "cell", "centroid", "knn" (with an index), "regression"
    options.top_cells = 3;
    const geoloc::Locator locator = geoloc::Locator::load(argv[1], options);
    for (int i = 2; i < argc; ++i) {
      const geoloc::Result r = locator.predict(geoloc::read_image(argv[i]));
      std::printf("%s: %.4f, %.4f  country %s  scene %s (%.0f %%)\n", argv[i], r.latitude, r.longitude,
                  r.country_name.empty() ? "-" : r.country_name.c_str(), r.scene.c_str(), 100 * r.scene_probability);
      for (const geoloc::Cell& c : r.top_cells)
        std::printf("    cell %d  p=%.3f  centre %.2f, %.2f\n", c.id, c.probability, c.latitude, c.longitude);
    }
  } catch (const geoloc::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
