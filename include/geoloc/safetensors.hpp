#pragma once
// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {string: string}}, then the data section, offsets relative to its start.
//
// The reader memory-maps the file and validates every header field before any tensor is touched
// (see docs/network.md for the full list of rules); every failure is an IoError that names the file
// and, where there is one, the tensor. The writer is atomic (write_file_atomic).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::safetensors {

/// The element types of the format. Only F32, F16, BF16 (loaded as F32) and I32 become Tensors;
/// the others are validated and can be listed, but not loaded.
enum class StDType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, U32, U64, F8_E4M3, F8_E5M2 };
/// Bytes per element.
size_t st_dtype_size(StDType t);
/// The format's spelling ("F32", "BF16", ...).
const char* st_dtype_name(StDType t);

/// One validated header entry.
struct Entry {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
  int64_t numel() const;
  std::string shape_str() const;  // "[2, 3]"
};

/// A parsed, validated safetensors file (memory-mapped, or a buffer owned by this object).
class File {
 public:
  /// Maps and validates `path`; IoError naming the file (and tensor) on any problem.
  static File open(const std::string& path);
  /// Validates an in-memory image of a file (copied); `label` names it in error messages.
  static File from_bytes(const uint8_t* data, size_t size, const std::string& label);

  const std::string& path() const { return label_; }
  /// Entries in header order (the JSON object's key order, which nlohmann sorts by name).
  const std::vector<Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  /// The entry of `name`; IoError naming the file and the tensor if absent.
  const Entry& entry(const std::string& name) const;
  /// The raw bytes of a tensor (inside the mapping; valid while this File or a Tensor from it lives).
  const uint8_t* bytes(const Entry& e) const { return data_ + e.begin; }
  /// The tensor as a CPU Tensor: F32 data is borrowed from the mapping without a copy (read-only:
  /// clone() before writing to it), F16/BF16 are converted to a new F32 tensor, I32 is borrowed.
  /// IoError for other dtypes or more than 4 dimensions.
  Tensor tensor(const std::string& name) const;

 private:
  void parse();
  std::string label_;
  std::shared_ptr<void> owner_;  // the mapping or the buffer
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: either a Tensor (F32, I32, BF16 as stored) or raw bytes of another dtype.
struct WriteItem {
  std::string name;
  Tensor tensor;                 // used when defined (any device; copied to the host)
  StDType raw_dtype = StDType::I64;  // otherwise: raw bytes of this dtype and shape
  std::vector<int64_t> raw_shape;
  std::vector<uint8_t> raw_bytes;
  /// Shape to record instead of the tensor's (same element count), e.g. a PyTorch layout; empty = tensor's.
  std::vector<int64_t> shape_override;
};

/// Writes `items` (names must be unique and not "__metadata__") with `metadata`, atomically.
/// The header is padded with spaces to a multiple of 8 bytes; tensors are laid out in the given order.
void write(const std::string& path, const std::vector<WriteItem>& items,
           const std::map<std::string, std::string>& metadata = {});
/// Convenience: tensors under their names. (With a braced list, name the type: the two overloads are
/// otherwise ambiguous: write(p, std::vector<std::pair<std::string, Tensor>>{{"a", a}}).)
void write(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata = {});

/// IEEE half and bfloat16 to float (exact).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);

}  // namespace geoloc::safetensors
