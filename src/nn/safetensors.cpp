// safetensors reader (mmap + full header validation) and atomic writer.
#include "geoloc/safetensors.hpp"

#include "geoloc/detail/input_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "geoloc/atomic_file.hpp"

namespace geoloc::safetensors {

namespace {
using ojson = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we (it also bounds the JSON work).
constexpr uint64_t kMaxHeader = 100ull << 20;

struct DTypeInfo {
  const char* name;
  StDType type;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {"F64", StDType::F64, 8},         {"F32", StDType::F32, 4},    {"F16", StDType::F16, 2},
    {"BF16", StDType::BF16, 2},       {"I64", StDType::I64, 8},    {"I32", StDType::I32, 4},
    {"I16", StDType::I16, 2},         {"I8", StDType::I8, 1},      {"U8", StDType::U8, 1},
    {"BOOL", StDType::BOOL, 1},       {"U16", StDType::U16, 2},    {"U32", StDType::U32, 4},
    {"U64", StDType::U64, 8},         {"F8_E4M3", StDType::F8_E4M3, 1}, {"F8_E5M2", StDType::F8_E5M2, 1},
};

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads a non-negative integer from a JSON value (the header has no other number kind).
bool as_u64(const ojson& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    out = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};
}  // namespace

size_t st_dtype_size(StDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}
const char* st_dtype_name(StDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}

int64_t Entry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
std::string Entry::shape_str() const { return shape_string(shape); }

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---------------------------------------------------------------- reading
File File::open(const std::string& path) {
  File f;
  f.label_ = path;
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it is refused below instead.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  GEOLOC_CHECK(fd >= 0, IoError, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  const int stat_rc = fstat(fd, &st), stat_errno = errno;
  if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(stat_rc != 0 ? path + ": cannot stat: " + std::strerror(stat_errno)
                               : path + " is " + detail::file_kind(st.st_mode) + ", not a regular file");
  }
  auto map = std::make_shared<Mapping>();
  map->size = static_cast<size_t>(st.st_size);
  if (map->size > 0) {
    map->addr = mmap(nullptr, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (map->addr == MAP_FAILED) {
      map->addr = nullptr;
      throw IoError(path + ": cannot memory-map: " + std::strerror(err));
    }
  } else {
    ::close(fd);
  }
  f.base_ = static_cast<const uint8_t*>(map->addr);
  f.size_ = map->size;
  f.owner_ = map;
  f.parse();
  return f;
}

File File::from_bytes(const uint8_t* data, size_t size, const std::string& label) {
  File f;
  f.label_ = label;
  // Over-allocate by 8 so the buffer is suitably aligned for float access whatever the caller passed.
  auto buf = std::make_shared<std::vector<uint64_t>>((size + 7) / 8 + 1);
  if (size) std::memcpy(buf->data(), data, size);
  f.base_ = reinterpret_cast<const uint8_t*>(buf->data());
  f.size_ = size;
  f.owner_ = buf;
  f.parse();
  return f;
}

void File::parse() {
  const std::string& p = label_;
  GEOLOC_CHECK(size_ >= 8, IoError, p, ": truncated: ", size_, " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base_[i];  // little-endian whatever the host
  GEOLOC_CHECK(n <= size_ - 8, IoError, p, ": header length ", n, " runs past the end of the file (",
               size_, " bytes)");
  GEOLOC_CHECK(n <= kMaxHeader, IoError, p, ": header length ", n, " exceeds the 100 MB limit");
  GEOLOC_CHECK(n >= 2, IoError, p, ": header length ", n, " is too small for a JSON object");
  data_ = base_ + 8 + n;
  data_size_ = size_ - 8 - n;

  // Duplicate keys are legal JSON but ambiguous here: refuse them (the parser would keep one silently).
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, ojson::parse_event_t ev, ojson& parsed) {
    if (depth == 1 && ev == ojson::parse_event_t::key) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  ojson header;
  try {
    const char* h = reinterpret_cast<const char*>(base_ + 8);
    header = ojson::parse(h, h + n, on_event);
  } catch (const std::exception& e) {
    throw IoError(detail::cat(p, ": header is not valid JSON: ", e.what()));
  }
  GEOLOC_CHECK(header.is_object(), IoError, p, ": header must be a JSON object, got ", header.type_name());
  GEOLOC_CHECK(duplicate.empty(), IoError, p, ": tensor '", duplicate, "' appears twice in the header");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      GEOLOC_CHECK(v.is_object(), IoError, p, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        GEOLOC_CHECK(m.value().is_string(), IoError, p, ": __metadata__ entry '", m.key(), "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    GEOLOC_CHECK(v.is_object(), IoError, p, ": tensor '", name, "': entry is not an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      GEOLOC_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", IoError, p, ": tensor '",
                   name, "': unknown field '", f.key(), "'");
    Entry e;
    e.name = name;
    auto dt = v.find("dtype");
    GEOLOC_CHECK(dt != v.end() && dt->is_string(), IoError, p, ": tensor '", name, "': missing or non-string dtype");
    const std::string dts = dt->get<std::string>();
    const DTypeInfo* info = nullptr;
    for (const auto& d : kDTypes)
      if (dts == d.name) info = &d;
    GEOLOC_CHECK(info, IoError, p, ": tensor '", name, "': unknown dtype '", dts, "'");
    e.dtype = info->type;

    auto sh = v.find("shape");
    GEOLOC_CHECK(sh != v.end() && sh->is_array(), IoError, p, ": tensor '", name, "': missing or non-array shape");
    // The element count is bounded by the data section, so checking each step against it avoids overflow.
    uint64_t numel = 1;
    bool zero = false;
    for (const auto& d : *sh) {
      uint64_t u = 0;
      GEOLOC_CHECK(as_u64(d, u), IoError, p, ": tensor '", name, "': shape ", sh->dump(),
                   " must hold non-negative integers");
      GEOLOC_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), IoError, p, ": tensor '", name,
                   "': dimension ", u, " is too large");
      e.shape.push_back(static_cast<int64_t>(u));
      if (u == 0) zero = true;
      if (!zero) {
        GEOLOC_CHECK(u <= data_size_ && numel <= data_size_ / u, IoError, p, ": tensor '", name, "': shape ",
                     sh->dump(), " holds more elements than the data section has bytes (", data_size_, ")");
        numel *= u;
      }
    }
    if (zero) numel = 0;

    auto off = v.find("data_offsets");
    GEOLOC_CHECK(off != v.end() && off->is_array() && off->size() == 2, IoError, p, ": tensor '", name,
                 "': data_offsets must be an array [begin, end]");
    GEOLOC_CHECK(as_u64((*off)[0], e.begin) && as_u64((*off)[1], e.end), IoError, p, ": tensor '", name,
                 "': data_offsets ", off->dump(), " must be non-negative integers");
    GEOLOC_CHECK(e.begin <= e.end, IoError, p, ": tensor '", name, "': data_offsets ", off->dump(),
                 " end before begin");
    GEOLOC_CHECK(e.end <= data_size_, IoError, p, ": tensor '", name, "': data_offsets ", off->dump(),
                 " outside the data section of ", data_size_, " bytes");
    const uint64_t expected = numel * info->size;  // numel <= data_size_, so no overflow for size <= 8
    GEOLOC_CHECK(e.end - e.begin == expected, IoError, p, ": tensor '", name, "': ", dts, " ", e.shape_str(),
                 " needs ", expected, " bytes but data_offsets ", off->dump(), " span ", e.end - e.begin);
    entries_.push_back(std::move(e));
  }

  // No two tensors may share bytes (offsets may come in any order).
  std::vector<const Entry*> by_off;
  for (const auto& e : entries_)
    if (e.end > e.begin) by_off.push_back(&e);
  std::sort(by_off.begin(), by_off.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_off.size(); ++i)
    GEOLOC_CHECK(by_off[i]->begin >= by_off[i - 1]->end, IoError, p, ": tensors '", by_off[i - 1]->name, "' [",
                 by_off[i - 1]->begin, ", ", by_off[i - 1]->end, ") and '", by_off[i]->name, "' [", by_off[i]->begin,
                 ", ", by_off[i]->end, ") overlap");
}

bool File::has(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
}

const Entry& File::entry(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return e;
  throw IoError(detail::cat(label_, ": no tensor '", name, "'"));
}

Tensor File::tensor(const std::string& name) const {
  const Entry& e = entry(name);
  GEOLOC_CHECK(e.shape.size() <= static_cast<size_t>(Shape::kMaxDims), IoError, label_, ": tensor '", name, "': ",
               e.shape.size(), " dimensions ", e.shape_str(), ", geoloc tensors have at most 4");
  const Shape shape(e.shape);
  const int64_t n = e.numel();
  const uint8_t* src = bytes(e);
  switch (e.dtype) {
    case StDType::F32:
    case StDType::I32: {
      const DType dt = e.dtype == StDType::F32 ? DType::F32 : DType::I32;
      // Borrowing needs 4-byte alignment; the format does not promise it, so copy when it is missing.
      if (reinterpret_cast<uintptr_t>(src) % 4 == 0)
        return Tensor::borrow(const_cast<uint8_t*>(src), shape, dt, Device::cpu(), owner_);
      Tensor t = Tensor::empty(shape, dt);
      if (n) std::memcpy(t.raw(), src, static_cast<size_t>(n) * 4);
      return t;
    }
    case StDType::BF16: {  // widened by the backend's convert (exact)
      Tensor b = Tensor::empty(shape, DType::BF16);
      if (n) std::memcpy(b.raw(), src, static_cast<size_t>(n) * 2);
      return b.to_dtype(DType::F32);
    }
    case StDType::F16: {
      Tensor t = Tensor::empty(shape, DType::F32);
      float* d = t.data<float>();
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        d[i] = f16_to_f32(v);
      }
      return t;
    }
    default:
      throw IoError(detail::cat(label_, ": tensor '", name, "': dtype ", st_dtype_name(e.dtype),
                                " cannot be loaded (geoloc reads F32, F16, BF16 and I32)"));
  }
}

// ---------------------------------------------------------------- writing
void write(const std::string& path, const std::vector<WriteItem>& items,
           const std::map<std::string, std::string>& metadata) {
  struct Prepared {
    const WriteItem* item;
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> host;  // for tensors
    const std::vector<uint8_t>* bytes;
  };
  std::vector<Prepared> prep;
  std::set<std::string> names;
  for (const auto& it : items) {
    GEOLOC_CHECK(!it.name.empty() && it.name != "__metadata__", IoError, path, ": invalid tensor name '", it.name, "'");
    GEOLOC_CHECK(names.insert(it.name).second, IoError, path, ": tensor '", it.name, "' given twice");
    Prepared p{&it, it.raw_dtype, it.raw_shape, {}, &it.raw_bytes};
    if (it.tensor.defined()) {
      const Tensor h = it.tensor.to(Device::cpu());
      switch (h.dtype()) {
        case DType::F32: p.dtype = StDType::F32; break;
        case DType::I32: p.dtype = StDType::I32; break;
        case DType::BF16: p.dtype = StDType::BF16; break;
        case DType::F16: p.dtype = StDType::F16; break;
        case DType::U8: p.dtype = StDType::U8; break;
      }
      p.shape = h.shape().vec();
      p.host.resize(h.nbytes());
      if (h.nbytes()) std::memcpy(p.host.data(), h.raw(), h.nbytes());
      p.bytes = &p.host;
    }
    if (!it.shape_override.empty()) {
      int64_t a = 1, b = 1;
      for (auto d : it.shape_override) a *= d;
      for (auto d : p.shape) b *= d;
      GEOLOC_CHECK(a == b, ShapeError, path, ": tensor '", it.name, "': shape ", shape_string(it.shape_override),
                   " does not hold the ", b, " elements of ", shape_string(p.shape));
      p.shape = it.shape_override;
    }
    int64_t numel = 1;
    for (auto d : p.shape) {
      GEOLOC_CHECK(d >= 0, ShapeError, path, ": tensor '", it.name, "': negative dimension in ",
                   shape_string(p.shape));
      numel *= d;
    }
    GEOLOC_CHECK(static_cast<size_t>(numel) * st_dtype_size(p.dtype) == p.bytes->size(), ShapeError, path,
                 ": tensor '", it.name, "': ", p.bytes->size(), " bytes do not match ", st_dtype_name(p.dtype), " ",
                 shape_string(p.shape));
    prep.push_back(std::move(p));
  }
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (auto& p : prep) {
    p.bytes = p.item->tensor.defined() ? &p.host : p.bytes;
    const uint64_t end = off + p.bytes->size();
    header[p.item->name] = {{"dtype", st_dtype_name(p.dtype)}, {"shape", p.shape}, {"data_offsets", {off, end}}};
    off = end;
  }
  std::string h = header.dump();
  h.append((8 - (h.size() % 8)) % 8, ' ');  // the data section starts 8-byte aligned
  write_file_atomic(path, [&](std::ostream& out) {
    uint8_t len[8];
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& p : prep)
      out.write(reinterpret_cast<const char*>(p.bytes->data()), static_cast<std::streamsize>(p.bytes->size()));
  });
}

void write(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::vector<WriteItem> items;
  for (const auto& [n, t] : tensors) {
    WriteItem w;
    w.name = n;
    w.tensor = t;
    items.push_back(std::move(w));
  }
  write(path, items, metadata);
}

}  // namespace geoloc::safetensors
