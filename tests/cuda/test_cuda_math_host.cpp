// Runs everywhere (no GPU needed): the per-sample haversine math that the CUDA kernel executes
// (cuda::hav::, GEOLOC_HD functions) evaluated on the host against the double-precision reference and
// against central finite differences of that reference. The GPU test then only has to check launches.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "geoloc/cuda/haversine.hpp"

using namespace geoloc;

namespace {
double ref_loss(const Tensor& p, const Tensor& t, cuda::CoordFormat f) {
  Tensor l = Tensor::empty({p.dim(0)});
  cuda::ref::haversine_loss(p, t, f, 1.0f, l, Tensor());
  return l.data<float>()[0];
}
}  // namespace

TEST_CASE("haversine per-sample math: float kernel code vs double reference and finite differences") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> lat(-85.0f, 85.0f), lng(-179.0f, 179.0f), off(-3.0f, 3.0f),
      u(-1.5f, 1.5f);
  int checked = 0;
  for (int i = 0; i < 300; ++i) {
    const float tl = lat(rng), tg = lng(rng);
    const bool near = i % 2 == 0;
    const float pl = near ? std::clamp(tl + off(rng), -89.0f, 89.0f) : lat(rng),
                pg = near ? tg + off(rng) : lng(rng);
    Tensor t = Tensor::from_vector({1, 2}, {tl, tg});
    // lat/lng
    {
      float ga = 0, gb = 0;
      const float d = cuda::hav::latlng_loss(pl, pg, tl, tg, ga, gb);
      Tensor p = Tensor::from_vector({1, 2}, {pl, pg}), l = Tensor::empty({1}), g = Tensor::empty({1, 2});
      cuda::ref::haversine_loss(p, t, cuda::CoordFormat::LatLngDeg, 1.0f, l, g);
      CHECK(d == doctest::Approx(l.data<float>()[0]).epsilon(1e-5).scale(1.0));
      CHECK(ga == doctest::Approx(g.data<float>()[0]).epsilon(1e-3).scale(1.0));
      CHECK(gb == doctest::Approx(g.data<float>()[1]).epsilon(1e-3).scale(1.0));
      // finite differences of the reference (step 0.05 degrees; away from the kink at the target and the
      // antipode, where the gradient is not defined, and far enough that the cone's curvature is negligible)
      const float h = 0.05f;
      for (int j = 0; j < 2 && d > 500.0f && d < 19500.0f; ++j) {
        std::vector<float> a{pl, pg}, b{pl, pg};
        a[j] += h;
        b[j] -= h;
        const double fd = (ref_loss(Tensor::from_vector({1, 2}, a), t, cuda::CoordFormat::LatLngDeg) -
                           ref_loss(Tensor::from_vector({1, 2}, b), t, cuda::CoordFormat::LatLngDeg)) /
                          (2.0 * h);
        CHECK(g.data<float>()[j] == doctest::Approx(fd).epsilon(1e-2).scale(10.0));
      }
    }
    // unit vector
    {
      const float x = u(rng), y = u(rng), z = u(rng);
      float gx = 0, gy = 0, gz = 0;
      const float d = cuda::hav::unitvec_loss(x, y, z, tl, tg, gx, gy, gz);
      Tensor p = Tensor::from_vector({1, 3}, {x, y, z}), l = Tensor::empty({1}), g = Tensor::empty({1, 3});
      cuda::ref::haversine_loss(p, t, cuda::CoordFormat::UnitVector, 1.0f, l, g);
      CHECK(d == doctest::Approx(l.data<float>()[0]).epsilon(1e-5).scale(1.0));
      const float gk[3] = {gx, gy, gz};
      for (int j = 0; j < 3; ++j) {
        CHECK(gk[j] == doctest::Approx(g.data<float>()[j]).epsilon(1e-3).scale(1.0));
        if (!(d > 500.0f && d < 19500.0f)) continue;
        std::vector<float> a{x, y, z}, b{x, y, z};
        const float h = 1e-3f;
        a[j] += h;
        b[j] -= h;
        const double fd = (ref_loss(Tensor::from_vector({1, 3}, a), t, cuda::CoordFormat::UnitVector) -
                           ref_loss(Tensor::from_vector({1, 3}, b), t, cuda::CoordFormat::UnitVector)) /
                          (2.0 * h);
        CHECK(g.data<float>()[j] == doctest::Approx(fd).epsilon(1e-2).scale(100.0));
      }
    }
    ++checked;
  }
  // coincident points: zero loss, zero gradient
  float ga = 1, gb = 1;
  CHECK(cuda::hav::latlng_loss(12.5f, -40.0f, 12.5f, -40.0f, ga, gb) == 0.0f);
  CHECK(ga == 0.0f);
  CHECK(gb == 0.0f);
  // one degree of latitude is ~111.2 km
  CHECK(cuda::hav::latlng_loss(1.0f, 0.0f, 0.0f, 0.0f, ga, gb) == doctest::Approx(111.195).epsilon(1e-3));
  MESSAGE(checked << " random sample pairs checked");
}
