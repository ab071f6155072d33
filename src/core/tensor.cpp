// Tensor, Shape, Storage and the CPU caching allocator.
#include "geoloc/tensor.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <unistd.h>

#include "geoloc/backend.hpp"
#include "geoloc/detail/block_cache.hpp"
#include "geoloc/dispatch.hpp"

namespace geoloc {

// ---------------------------------------------------------------- device / dtype
Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    errno = 0;
    long i = std::strtol(s.c_str() + 5, &end, 10);
    GEOLOC_CHECK(end && *end == 0 && i >= 0 && i <= 1 << 20 && errno == 0 && s.size() > 5 &&
                     std::isdigit(static_cast<unsigned char>(s[5])),
                 ValueError, "bad device '", s, "' (expected cpu, cuda or cuda:N)");
    return cuda(static_cast<int>(i));
  }
  throw ValueError("bad device '" + s + "' (expected cpu, cuda or cuda:N)");
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

// ---------------------------------------------------------------- shape
Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  GEOLOC_CHECK(dims.size() <= kMaxDims, ShapeError, "a tensor has at most ", kMaxDims, " dimensions, got ",
               dims.size());
  nd_ = static_cast<int>(dims.size());
  for (int i = 0; i < nd_; ++i) {
    GEOLOC_CHECK(dims[i] >= 0, ShapeError, "negative dimension ", dims[i], " in a shape");
    d_[i] = dims[i];
  }
}

int64_t Shape::operator[](int i) const {
  int j = i < 0 ? i + nd_ : i;
  GEOLOC_CHECK(j >= 0 && j < nd_, ShapeError, "dimension ", i, " out of range for shape ", str());
  return d_[j];
}

int64_t& Shape::operator[](int i) {
  int j = i < 0 ? i + nd_ : i;
  GEOLOC_CHECK(j >= 0 && j < nd_, ShapeError, "dimension ", i, " out of range for shape ", str());
  return d_[j];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < nd_; ++i) n *= d_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (nd_ != o.nd_) return false;
  for (int i = 0; i < nd_; ++i)
    if (d_[i] != o.d_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < nd_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
  return s + "]";
}

// ---------------------------------------------------------------- CPU caching allocator
namespace {
// The default cache limit: GEOLOC_CPU_CACHE_MB, else a quarter of the physical memory (at least 1 GiB).
size_t default_cpu_cache_limit() {
  if (const char* e = std::getenv("GEOLOC_CPU_CACHE_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(e, &end, 10);
    if (end != e && *end == 0 && mb < (SIZE_MAX >> 20)) return static_cast<size_t>(mb) << 20;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  const size_t phys = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  return std::max<size_t>(size_t(1) << 30, phys / 4);
}

class CpuCachingAllocator final : public Allocator {
 public:
  static constexpr size_t kAlign = 64;
  CpuCachingAllocator() : cache_(default_cpu_cache_limit()) {}
  ~CpuCachingAllocator() override { empty_cache(); }
  void* allocate(size_t bytes) override {
    size_t sz = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    if (void* p = cache_.take(sz)) {
      stats_.bytes_in_use += sz;
      return p;
    }
    void* p = std::aligned_alloc(kAlign, sz);
    if (!p) {
      // Out of memory: give the cache back and try once more before failing.
      release(cache_.take_all());
      p = std::aligned_alloc(kAlign, sz);
    }
    GEOLOC_CHECK(p, Error, "out of host memory allocating ", sz, " bytes");
    ++stats_.system_allocs;
    stats_.bytes_in_use += sz;
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    if (!p) return;
    size_t sz = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_in_use -= sz;
    detail::BlockCache::Blocks out;
    cache_.put(p, sz, out);
    release(out);
  }
  Device device() const override { return Device::cpu(); }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release(cache_.take_all());
  }
  void set_cache_limit(size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    detail::BlockCache::Blocks out;
    cache_.set_limit(bytes, out);
    release(out);
  }
  Stats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = stats_;
    s.bytes_cached = cache_.bytes();
    s.cache_limit = cache_.limit();
    return s;
  }

 private:
  static size_t round(size_t bytes) { return std::max<size_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign); }
  static void release(const detail::BlockCache::Blocks& blocks) {
    for (const auto& b : blocks) std::free(b.first);
  }
  mutable std::mutex mu_;
  detail::BlockCache cache_;  // exact-size reuse keeps repeated steps allocation-free
  Stats stats_;
};
}  // namespace

Allocator& cpu_allocator() {
  static CpuCachingAllocator a;
  return a;
}

Allocator& allocator_for(Device d) {
  if (d.is_cpu()) return cpu_allocator();
  return cuda::allocator(d.index);
}

namespace {
std::atomic<uint64_t> g_next_storage_id{1};
constexpr int kMaxReleasedHooks = 4;
std::atomic<detail::StorageReleasedHook> g_released_hooks[kMaxReleasedHooks];
std::atomic<int> g_released_hook_count{0};
}  // namespace

void detail::add_storage_released_hook(StorageReleasedHook hook) {
  const int i = g_released_hook_count.fetch_add(1);
  GEOLOC_CHECK(i < kMaxReleasedHooks, ValueError, "add_storage_released_hook: more than ", kMaxReleasedHooks,
               " hooks");
  g_released_hooks[i].store(hook, std::memory_order_release);
}

Storage::Storage(size_t nbytes, Allocator& a)
    : bytes(nbytes), alloc(&a), device(a.device()), id(g_next_storage_id.fetch_add(1, std::memory_order_relaxed)) {
  data = nbytes ? a.allocate(nbytes) : nullptr;
}

Storage::Storage(void* borrowed, size_t nbytes, Device dev, std::shared_ptr<void> owner)
    : data(borrowed),
      bytes(nbytes),
      keep_alive(std::move(owner)),
      device(dev),
      id(g_next_storage_id.fetch_add(1, std::memory_order_relaxed)) {}

Storage::~Storage() {
  if (has_derived.load(std::memory_order_acquire)) {
    const int n = std::min(g_released_hook_count.load(std::memory_order_acquire), kMaxReleasedHooks);
    for (int i = 0; i < n; ++i)
      if (auto hook = g_released_hooks[i].load(std::memory_order_acquire)) hook(id);
  }
  if (alloc && data) alloc->deallocate(data, bytes);
}

// ---------------------------------------------------------------- tensor
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype),
                                            allocator_for(device));
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  } else {
    Tensor h = zeros(shape, dtype, Device::cpu());
    t.copy_(h);
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::F32, Device::cpu());
  std::fill_n(t.data<float>(), t.numel(), value);
  return t.to(device);
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values, Device device) {
  GEOLOC_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), ShapeError, "from_vector: ", values.size(),
               " values do not fill shape ", shape.str());
  Tensor t = empty(shape, DType::F32, Device::cpu());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t.to(device);
}

Tensor Tensor::from_labels(const std::vector<int32_t>& labels, Device device) {
  Tensor t = empty({static_cast<int64_t>(labels.size())}, DType::I32, Device::cpu());
  if (!labels.empty()) std::memcpy(t.raw(), labels.data(), labels.size() * sizeof(int32_t));
  return t.to(device);
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(shape.numel()) * dtype_size(dtype), device,
                                            std::move(owner));
  return Tensor(std::move(impl));
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape().str() + " " + device().str();
}

const void* Tensor::craw() const {
  const auto& i = impl();
  if (!i.storage || !i.storage->data) return nullptr;
  return static_cast<const char*>(i.storage->data) + i.offset;
}

void* Tensor::raw() const {
  const auto& i = impl();
  if (!i.storage) return nullptr;
  i.storage->version.fetch_add(1, std::memory_order_acq_rel);  // the caller may write (see Storage)
  if (!i.storage->data) return nullptr;
  return static_cast<char*>(i.storage->data) + i.offset;
}

uint64_t Tensor::version() const {
  const auto& i = impl();
  return i.storage ? i.storage->version.load(std::memory_order_acquire) : 0;
}

namespace {
void check_typed(const Tensor& t, DType a, DType b, const char* tname) {
  GEOLOC_CHECK(t.dtype() == a || t.dtype() == b, ShapeError, "tensor ", t.str(), " accessed as ", tname);
}
template <class T>
T* typed(const Tensor& t, DType a, DType b, const char* tname) {
  check_typed(t, a, b, tname);
  return static_cast<T*>(t.raw());
}
template <class T>
const T* ctyped(const Tensor& t, DType a, DType b, const char* tname) {
  check_typed(t, a, b, tname);
  return static_cast<const T*>(t.craw());
}
}  // namespace
template <> float* Tensor::data<float>() const { return typed<float>(*this, DType::F32, DType::F32, "float"); }
template <> int32_t* Tensor::data<int32_t>() const { return typed<int32_t>(*this, DType::I32, DType::I32, "int32"); }
template <> uint8_t* Tensor::data<uint8_t>() const { return typed<uint8_t>(*this, DType::U8, DType::U8, "uint8"); }
template <> uint16_t* Tensor::data<uint16_t>() const {
  return typed<uint16_t>(*this, DType::BF16, DType::F16, "16-bit float");
}
template <> const float* Tensor::cdata<float>() const {
  return ctyped<float>(*this, DType::F32, DType::F32, "float");
}
template <> const int32_t* Tensor::cdata<int32_t>() const {
  return ctyped<int32_t>(*this, DType::I32, DType::I32, "int32");
}
template <> const uint8_t* Tensor::cdata<uint8_t>() const {
  return ctyped<uint8_t>(*this, DType::U8, DType::U8, "uint8");
}
template <> const uint16_t* Tensor::cdata<uint16_t>() const {
  return ctyped<uint16_t>(*this, DType::BF16, DType::F16, "16-bit float");
}

void Tensor::copy_(const Tensor& src) {
  GEOLOC_CHECK(src.shape() == shape() && src.dtype() == dtype(), ShapeError, "copy_: source ", src.str(),
               " does not match destination ", str());
  if (!nbytes()) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    std::memmove(raw(), src.raw(), nbytes());
  } else {
    cuda::copy_bytes(raw(), device(), src.raw(), src.device(), nbytes());
  }
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_(*this);
  return t;
}

Tensor Tensor::to_dtype(DType t) const {
  check_defined(*this, "to_dtype");
  if (dtype() == t) return *this;
  const bool ok = (dtype() == DType::F32 && t == DType::BF16) || (dtype() == DType::BF16 && t == DType::F32);
  GEOLOC_CHECK(ok, ShapeError, "to_dtype: ", str(), " to ", dtype_name(t), " is not supported (f32 <-> bf16 only)");
  Tensor out = empty(shape(), t, device());
  GEOLOC_DISPATCH(device(), convert, *this, out);
  return out;
}

void synchronize(Device device) {
  if (device.is_cuda()) cuda::synchronize();
}

Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  Tensor t = empty(shape(), dtype(), d);
  t.copy_(*this);
  return t;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape();
  impl->dtype = dtype();
  impl->storage = this->impl().storage;
  impl->offset = this->impl().offset;
  return Tensor(std::move(impl));
}

Tensor Tensor::view(const Shape& s) const {
  GEOLOC_CHECK(s.numel() == numel(), ShapeError, "cannot view ", shape().str(), " (", numel(), " elements) as ",
               s.str(), " (", s.numel(), " elements)");
  Tensor t = detach();
  t.impl().shape = s;
  return t;
}

void Tensor::fill_(float value) {
  check_f32(*this, "fill_");
  if (device().is_cpu()) {
    std::fill_n(data<float>(), numel(), value);
  } else {
    copy_(full(shape(), value));
  }
}

std::vector<float> Tensor::to_vector() const {
  check_f32(*this, "to_vector");
  Tensor h = to(Device::cpu());
  return std::vector<float>(h.data<float>(), h.data<float>() + numel());
}

std::vector<int32_t> Tensor::to_labels() const {
  Tensor h = to(Device::cpu());
  return std::vector<int32_t>(h.data<int32_t>(), h.data<int32_t>() + numel());
}

float Tensor::item() const {
  GEOLOC_CHECK(numel() == 1, ShapeError, "item() needs a one-element tensor, got ", shape().str());
  return to_vector()[0];
}

float Tensor::sum_all() const {
  double s = 0;
  for (float v : to_vector()) s += v;
  return static_cast<float>(s);
}

Tensor& Tensor::set_requires_grad(bool r) {
  GEOLOC_CHECK(!r || dtype() == DType::F32 || dtype() == DType::BF16 || dtype() == DType::F16, ShapeError,
               "only floating-point tensors can require gradients, got ", str());
  impl().requires_grad = r;
  return *this;
}

void Tensor::zero_grad() {
  if (impl().grad) Tensor(impl().grad).fill_(0.0f);
}

// ---------------------------------------------------------------- checks
void check_defined(const Tensor& t, const char* what) {
  GEOLOC_CHECK(t.defined(), ShapeError, what, ": tensor is undefined");
}
void check_f32(const Tensor& t, const char* what) {
  check_defined(t, what);
  GEOLOC_CHECK(t.dtype() == DType::F32, ShapeError, what, ": expected f32, got ", t.str());
}
void check_ndim(const Tensor& t, int nd, const char* what) {
  check_defined(t, what);
  GEOLOC_CHECK(t.ndim() == nd, ShapeError, what, ": expected ", nd, " dimensions, got shape ", t.shape().str());
}
void check_same_shape(const Tensor& a, const Tensor& b, const char* wa, const char* wb) {
  check_defined(a, wa);
  check_defined(b, wb);
  GEOLOC_CHECK(a.shape() == b.shape(), ShapeError, "shape mismatch: ", wa, " is ", a.shape().str(), " but ", wb,
               " is ", b.shape().str());
}
void check_same_device(const Tensor& a, const Tensor& b, const char* wa, const char* wb) {
  GEOLOC_CHECK(a.device() == b.device(), ShapeError, "device mismatch: ", wa, " is on ", a.device().str(), " but ",
               wb, " is on ", b.device().str());
}

}  // namespace geoloc
