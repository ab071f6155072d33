// safetensors: round trips, dtype conversion, and rejection of every kind of malformed header.
#include <doctest/doctest.h>

#include <filesystem>

#include "geoloc/safetensors.hpp"
#include "nn_test_util.hpp"

using namespace geoloc;
using geoloc::test::scratch;
using geoloc::test::st_image;
using geoloc::test::write_bytes;
using Named = std::vector<std::pair<std::string, Tensor>>;

namespace {
// Opens an image written to disk and expects IoError whose message contains every needle.
void expect_rejected(const std::string& image, std::initializer_list<const char*> needles, const char* file) {
  const std::string path = scratch(file);
  write_bytes(path, image);
  std::string msg;
  try {
    safetensors::File::open(path);
  } catch (const IoError& e) {
    msg = e.what();
  }
  INFO("file ", file, " message: ", msg);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.find(path) != std::string::npos);
  for (const char* n : needles) CHECK(msg.find(n) != std::string::npos);
  // The in-memory reader (the fuzz target's entry point) must agree.
  CHECK_THROWS_AS(safetensors::File::from_bytes(reinterpret_cast<const uint8_t*>(image.data()), image.size(), "mem"),
                  IoError);
}
const std::string k8(8, '\0');
}  // namespace

TEST_CASE("safetensors: write then read round-trips tensors and metadata") {
  const std::string path = scratch("roundtrip.safetensors");
  Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6.5f});
  Tensor b = Tensor::from_labels({7, -1, 3});
  Tensor c = Tensor::from_vector({1, 1, 1, 1}, {-0.25f});
  safetensors::write(path, Named{{"a", a}, {"b.labels", b}, {"c", c}}, {{"arch", "resnet18"}, {"heads", "x:scene:3"}});
  const auto f = safetensors::File::open(path);
  REQUIRE(f.entries().size() == 3);
  CHECK(f.entries()[0].name == "a");  // file order is kept
  CHECK(f.metadata().at("arch") == "resnet18");
  CHECK(f.metadata().at("heads") == "x:scene:3");
  CHECK(f.tensor("a").shape() == Shape{2, 3});
  CHECK(f.tensor("a").to_vector() == a.to_vector());
  CHECK(f.tensor("b.labels").to_labels() == b.to_labels());
  CHECK(f.tensor("c").to_vector() == c.to_vector());
  // header length is a multiple of 8 so the data section is aligned
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  CHECK(len[0] % 8 == 0);
  CHECK_THROWS_AS(f.tensor("nope"), IoError);
  // and no temporary file is left behind
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(geoloc::test::scratch_dir()))
    files += e.path().string().find("roundtrip.safetensors") != std::string::npos;
  CHECK(files == 1);
}

TEST_CASE("safetensors: F16 and BF16 are converted to F32; I64 is listed but not loadable") {
  // F16: 1, -2, 0.5, 2^-24 (smallest subnormal), 65504 (max), inf; BF16: 1, -3
  const uint16_t h[] = {0x3C00, 0xC000, 0x3800, 0x0001, 0x7BFF, 0x7C00};
  const uint16_t bf[] = {0x3F80, 0xC040};
  std::string data(reinterpret_cast<const char*>(h), sizeof h);
  data += std::string(reinterpret_cast<const char*>(bf), sizeof bf);
  data += std::string(8, '\0');  // I64 scalar
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[6],"data_offsets":[0,12]},"bf":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},)"
      R"("nbt":{"dtype":"I64","shape":[],"data_offsets":[16,24]}})";
  const std::string path = scratch("f16.safetensors");
  write_bytes(path, st_image(header, data));
  const auto f = safetensors::File::open(path);
  const auto hv = f.tensor("h").to_vector();
  CHECK(hv[0] == 1.0f);
  CHECK(hv[1] == -2.0f);
  CHECK(hv[2] == 0.5f);
  CHECK(hv[3] == std::ldexp(1.0f, -24));
  CHECK(hv[4] == 65504.0f);
  CHECK(std::isinf(hv[5]));
  CHECK(f.tensor("bf").to_vector() == std::vector<float>{1.0f, -3.0f});
  CHECK(f.entry("nbt").shape.empty());
  CHECK(f.entry("nbt").dtype == safetensors::StDType::I64);
  CHECK_THROWS_WITH_AS(f.tensor("nbt"), doctest::Contains("'nbt'"), IoError);
}

TEST_CASE("safetensors: unsorted offsets and unaligned data are accepted") {
  std::string data(12, '\0');
  const float v[3] = {1.5f, 2.5f, 3.5f};
  std::memcpy(&data[0], &v[2], 4);
  std::memcpy(&data[4], &v[0], 8);
  // header length 61 (not a multiple of 8): F32 data is then unaligned and must be copied
  std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  const std::string path = scratch("unsorted.safetensors");
  write_bytes(path, st_image(header, data));
  const auto f = safetensors::File::open(path);
  CHECK(f.tensor("a").to_vector() == std::vector<float>{1.5f, 2.5f});
  CHECK(f.tensor("b").to_vector() == std::vector<float>{3.5f});
}

TEST_CASE("safetensors: malformed files are rejected with IoError naming the file and tensor") {
  const std::string d8(8, '\0');
  expect_rejected("", {"truncated"}, "empty.st");
  expect_rejected(std::string(5, '\x01'), {"truncated"}, "short.st");
  expect_rejected(st_image("{}", "", 1000), {"header length 1000"}, "hdrlen.st");
  expect_rejected(st_image("{}", "", 0x7FFFFFFFFFFFFFFFll), {"header length"}, "hdrhuge.st");
  expect_rejected(st_image("{\"a\":", ""), {"not valid JSON"}, "badjson.st");
  expect_rejected(st_image("[1,2]", ""), {"JSON object"}, "array.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", d8), {"'t'", "F33"},
                  "dtype.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8), {"'t'", "non-negative"},
                  "negshape.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", d8), {"'t'"}, "fshape.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", d8), {"'t'", "outside"},
                  "range.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8), {"'t'", "end before"},
                  "reversed.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8), {"'t'", "data_offsets"},
                  "offsets1.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", d8), {"'t'"}, "negoff.st");
  // wrong dtype size: F16 [2] needs 4 bytes, not 8
  expect_rejected(st_image(R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", d8), {"'t'", "needs 4 bytes"},
                  "size.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", d8), {"'t'", "needs 16 bytes"},
                  "size64.st");
  // overflowing element count
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}})", d8),
                  {"'t'"}, "overflow.st");
  expect_rejected(st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           d8),
                  {"'a'", "'b'", "overlap"}, "overlap.st");
  expect_rejected(st_image(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                           d8),
                  {"overlap"}, "overlap2.st");
  expect_rejected(st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           d8),
                  {"'a'", "twice"}, "dup.st");
  expect_rejected(st_image(R"({"__metadata__":{"arch":5}})", ""), {"arch"}, "meta.st");
  expect_rejected(st_image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", d8), {"'t'", "extra"},
                  "extra.st");
  expect_rejected(st_image(R"({"t":[1]})", d8), {"'t'"}, "notobj.st");

  // truncating a valid file puts its last tensor out of range
  const std::string path = scratch("valid.st");
  safetensors::write(path, Named{{"w", Tensor::from_vector({4}, {1, 2, 3, 4})}});
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  expect_rejected(all.substr(0, all.size() - 3), {"'w'", "outside"}, "truncated.st");
}

TEST_CASE("safetensors: tensors of more than 4 dimensions are listed but refused as Tensors") {
  const std::string path = scratch("5d.st");
  write_bytes(path, st_image(R"({"t":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  const auto f = safetensors::File::open(path);
  CHECK(f.entry("t").shape.size() == 5);
  CHECK_THROWS_WITH_AS(f.tensor("t"), doctest::Contains("'t'"), IoError);
}

TEST_CASE("safetensors: a failed write leaves nothing behind") {
  CHECK_THROWS_AS(safetensors::write(scratch("no/such/dir/x.st"), Named{{"a", Tensor::zeros({1})}}), IoError);
  CHECK_THROWS_AS(safetensors::write(scratch("dupwrite.st"), Named{{"a", Tensor::zeros({1})}, {"a", Tensor::zeros({1})}}), IoError);
  CHECK_FALSE(std::filesystem::exists(scratch("dupwrite.st")));
}
