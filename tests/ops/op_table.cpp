// The op table (op_table.hpp): junk, the backends present, the declared names, and the rows gathered from
// rows/<family>.cpp (one file per op family, as the backends). Tolerances against the CPU (|x - cpu| <= atol + rtol |cpu|):
//   exact (0)            : relu, add, add_relu, scale, mul_scalar, fill, dropout, max pool values and argmax,
//                          convert (bits), knn on quantised data (exact arithmetic in any order)
//   rtol 1e-5, atol 1e-6 : other elementwise, pooling averages, optimiser steps, softmax losses, haversine
//   rtol 1e-4, atol 1e-4 : convolutions, linear layers (fp32 FMA math, no TF32; only the order of the sums
//                          differs), batch norm (double-accumulated statistics on both sides)
// Shapes include odd sizes, sizes that are not multiples of 32 or 256, stride 2 and padding; the rows
// labelled "(bench)" are the larger ones bench_ops.cpp is mostly about (they are tested all the same).
#include "op_table.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <sstream>

#include "geoloc/backend.hpp"
#include "rows/rows.hpp"

namespace geoloc::optest {

// ---------------------------------------------------------------- junk, backends, names
float junk_f32(int junk) {
  static const float v[] = {std::numeric_limits<float>::quiet_NaN(), -7.7e29f, 3.3e38f, 1e30f};
  return v[static_cast<size_t>(junk) % 4];
}
uint8_t junk_byte(int junk) {
  static const uint8_t v[] = {0x7f, 0x55, 0xAB, 0x3c};
  return v[static_cast<size_t>(junk) % 4];
}
Tensor junk_tensor(const Shape& s, DType t, Device d, int junk) {
  Tensor h = Tensor::empty(s, t);
  if (h.numel() > 0) {
    if (t == DType::F32)
      std::fill_n(h.data<float>(), h.numel(), junk_f32(junk));
    else
      std::memset(h.raw(), junk_byte(junk), h.nbytes());
  }
  return h.to(d);
}

std::vector<Device> backends() {
  std::vector<Device> b{Device::cpu()};
  if (cuda::available()) b.push_back(Device::cuda(0));
  return b;
}

#define GEOLOC_OPTEST_STR_(...) #__VA_ARGS__
#define GEOLOC_OPTEST_STR(...) GEOLOC_OPTEST_STR_(__VA_ARGS__)

std::vector<std::string> backend_function_names() {
  // Comments are gone before macros expand, so the text is the declarations alone, ';'-separated; each
  // name is the identifier before the declaration's first '('.
  const std::string text = GEOLOC_OPTEST_STR(GEOLOC_BACKEND_DECLARATIONS);
  std::vector<std::string> names;
  std::istringstream decls(text);
  std::string decl;
  while (std::getline(decls, decl, ';')) {
    const size_t paren = decl.find('(');
    if (paren == std::string::npos) continue;
    size_t end = paren;
    while (end > 0 && decl[end - 1] == ' ') --end;
    size_t begin = end;
    while (begin > 0 && (std::isalnum(static_cast<unsigned char>(decl[begin - 1])) || decl[begin - 1] == '_')) --begin;
    if (end > begin) names.push_back(decl.substr(begin, end - begin));
  }
  return names;
}

std::vector<Tensor> run(const OpRow& row, const std::vector<Tensor>& in, Device d, int junk) {
  Launch l = row.prepare(in, d, junk);
  l.call();
  std::vector<Tensor> out;
  for (const Tensor& t : l.outs) out.push_back(t.to(Device::cpu()));
  return out;
}

namespace {
std::vector<OpRow> build() {
  rows::Table t;
  rows::conv_rows(t);
  rows::batch_norm_rows(t);
  rows::elementwise_rows(t);
  rows::pooling_rows(t);
  rows::linear_rows(t);
  rows::loss_rows(t);
  rows::optim_rows(t);
  rows::knn_rows(t);
  rows::convert_rows(t);
  rows::bf16_rows(t);
  return std::move(t.rows);
}
}  // namespace

const std::vector<OpRow>& op_table() {
  static const std::vector<OpRow> rows = build();
  return rows;
}

}  // namespace geoloc::optest
