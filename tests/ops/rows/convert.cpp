// The op table's rows of the f32 <-> bf16 conversion (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- convert
uint16_t bf16_rne_reference(float f) {  // independent of math::f32_to_bf16: nearest of the two neighbours
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  if ((u & 0xFFFFu) == 0) return lo;
  const uint16_t hi = static_cast<uint16_t>(lo + 1);  // magnitude step up (may become inf)
  auto val = [](uint16_t b) {
    const uint32_t x = static_cast<uint32_t>(b) << 16;
    float v;
    std::memcpy(&v, &x, 4);
    return static_cast<double>(v);
  };
  const double dl = std::fabs(double(f) - val(lo));
  // the value above the largest finite bf16 rounds to inf where it is at least halfway to 2^128
  const double vh = (hi & 0x7FFFu) == 0x7F80u ? std::ldexp(std::signbit(f) ? -1.0 : 1.0, 128) : val(hi);
  const double dh = std::fabs(double(f) - vh);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

void convert_rows(Table& t) {
  // special cases: ties to even (both directions), just above a tie, inf, -0, denormals, NaN, the largest
  // float (rounds to inf), the largest bf16
  const std::vector<float> special = {1.0f,
                                      1.0f + 1.0f / 256,                   // tie, even below: 0x3F80
                                      1.0f + 3.0f / 256,                   // tie, even above: 0x3F82
                                      1.0f + 1.0f / 256 + 1.0f / (1 << 20),  // just above the tie: 0x3F81
                                      -1.0f - 1.0f / 256,
                                      std::numeric_limits<float>::infinity(),
                                      -std::numeric_limits<float>::infinity(),
                                      -0.0f,
                                      0.0f,
                                      std::numeric_limits<float>::denorm_min(),
                                      1.5e-39f,
                                      std::numeric_limits<float>::quiet_NaN(),
                                      -std::numeric_limits<float>::quiet_NaN(),
                                      std::numeric_limits<float>::max(),
                                      3.3895314e38f,
                                      65504.0f,
                                      0.1f,
                                      -123.456f};
  const int64_t n_rand[] = {1000, 1000003};
  for (int64_t nr : n_rand) {
    const int64_t n = static_cast<int64_t>(special.size()) + nr;
    const uint32_t sd = t.seeds(1);
    const std::string sz = std::to_string(n) + (nr > 1000 ? " (bench)" : " (RNE ties, inf, NaN, denormals, max)");
    auto src_f32 = [=] {
      Tensor x = randn({n}, sd, 100.0f);
      std::copy(special.begin(), special.end(), x.data<float>());
      return x;
    };
    t.add(
         "convert", "f32 -> bf16 " + sz, {{"bf16", 0, 0, false}}, [=] { return V{src_f32()}; },
         [=](const V& in, Device d, int j) {
           Tensor x = on(in[0], d), y = J({n}, d, j, DType::BF16);
           return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
         },
         n, 6.0 * n)
        .reference = [=](const V& in, const V& out) -> std::string {
      const auto x = in[0].to_vector();
      const uint16_t* b = out[0].data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t want = bf16_rne_reference(x[i]);
        const bool nan_ok = std::isnan(x[i]) && (b[i] & 0x7F80u) == 0x7F80u && (b[i] & 0x7Fu) != 0;
        if (b[i] != want && !nan_ok) {
          std::ostringstream o;
          o << "element " << i << " (" << x[i] << "): bf16 0x" << std::hex << b[i] << ", round-to-nearest-even 0x" << want;
          return o.str();
        }
      }
      return "";
    };
    t.add(
         "convert", "bf16 -> f32 " + sz, {{"f32", 0, 0, false}},
         [=] {
           Tensor b = Tensor::empty({n}, DType::BF16);
           cpu::convert(src_f32(), b);
           return V{b};
         },
         [=](const V& in, Device d, int j) {
           Tensor x = on(in[0], d), y = J({n}, d, j);
           return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
         },
         n, 6.0 * n)
        .reference = [=](const V& in, const V& out) -> std::string {
      const uint16_t* b = in[0].data<uint16_t>();
      const auto y = out[0].to_vector();
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, &y[i], 4);
        if (u != static_cast<uint32_t>(b[i]) << 16) return "element " + std::to_string(i) + " is not the bf16 bits << 16";
      }
      return "";
    };
    if (nr > 1000) continue;
    for (DType dt : {DType::F32, DType::BF16})
      t.add(
          "convert", std::string(dtype_name(dt)) + " -> " + dtype_name(dt) + " copy " + std::to_string(n),
          {{"y", 0, 0, false}},
          [=] {
            if (dt == DType::F32) return V{src_f32()};
            Tensor b = Tensor::empty({n}, DType::BF16);
            cpu::convert(src_f32(), b);
            return V{b};
          },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), y = J({n}, d, j, dt);
            return Launch{{y}, [=] { GEOLOC_DISPATCH(d, convert, x, y); }};
          },
          0, 2.0 * n * dtype_size(dt));
  }
}

}  // namespace geoloc::optest::rows
