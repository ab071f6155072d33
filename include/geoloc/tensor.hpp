#pragma once
// geoloc's Tensor: up to 4-D, float32 (bf16/f16 storage for the GPU), CPU or CUDA, shared storage,
// reverse-mode autograd. Activations are NHWC: a batch of images is [N, H, W, C].
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc {

// ---------------------------------------------------------------- devices and dtypes
enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const = default;
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  /// Parses "cpu", "cuda" or "cuda:N".
  static Device parse(const std::string& s);
};

enum class DType : uint8_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, U8 = 4 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

// ---------------------------------------------------------------- shape
/// A shape of 0 to 4 dimensions.
class Shape {
 public:
  static constexpr int kMaxDims = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);
  int ndim() const { return nd_; }
  int64_t operator[](int i) const;  // negative i counts from the back
  int64_t& operator[](int i);
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::vector<int64_t> vec() const { return {d_.begin(), d_.begin() + nd_}; }
  std::string str() const;  // "[2, 3, 4]"

 private:
  std::array<int64_t, kMaxDims> d_{};
  int nd_ = 0;
};

// ---------------------------------------------------------------- memory
/// Device memory provider. The CPU and CUDA allocators cache freed blocks by size, so that a
/// training step that repeats the same shapes allocates nothing from the system after its first run.
/// The cache holds at most cache_limit() bytes; past it the least recently freed blocks are released
/// (CPU: a quarter of the physical memory, at least 1 GiB, or GEOLOC_CPU_CACHE_MB; CUDA: no limit, and
/// the cache is given back when cudaMalloc fails).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual Device device() const = 0;
  /// Releases cached (free) blocks back to the system.
  virtual void empty_cache() {}
  /// At most this many bytes of freed blocks are kept (SIZE_MAX = no limit); blocks beyond it are released.
  virtual void set_cache_limit(size_t bytes) { (void)bytes; }
  struct Stats {
    uint64_t system_allocs = 0;  // blocks obtained from the system (malloc / cudaMalloc)
    uint64_t requests = 0;       // allocate() calls
    size_t bytes_in_use = 0;
    size_t bytes_cached = 0;
    size_t cache_limit = SIZE_MAX;
  };
  virtual Stats stats() const = 0;
};
Allocator& cpu_allocator();
/// The allocator of a device (CUDA's throws CudaError where geoloc was built without CUDA).
Allocator& allocator_for(Device d);

/// A block of memory on one device; freed (to its allocator) when the last Tensor using it goes.
///
/// Identity and version, for caches of data derived from the contents (the CPU convolution's packed
/// weights): `id` is never reused (unlike the address), and `version` is bumped by every access that can
/// write, i.e. by every Tensor::raw() / Tensor::data() of a tensor on this storage (views share it, as in
/// PyTorch). Reads that must not invalidate such caches go through Tensor::cdata(). A pointer obtained
/// before a cache was filled and written through afterwards is not seen: get the pointer again (which
/// bumps the version) for every new round of writes.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Allocator* alloc = nullptr;  // nullptr: memory owned by someone else (e.g. a memory-mapped file)
  std::shared_ptr<void> keep_alive;  // for borrowed memory
  Device device;
  const uint64_t id;
  std::atomic<uint64_t> version{0};
  /// Set by a cache that holds data derived from this storage: the destructor then tells the caches
  /// (detail::storage_released) so that they free it at once.
  std::atomic<bool> has_derived{false};
  Storage(size_t nbytes, Allocator& a);
  Storage(void* borrowed, size_t nbytes, Device dev, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// ---------------------------------------------------------------- tensor
class Tensor;
struct Node;  // autograd graph node, see autograd.hpp

struct TensorImpl {
  Shape shape;
  DType dtype = DType::F32;
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes into storage
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves)
  std::shared_ptr<Node> grad_fn;     // the op that produced this tensor (non-leaves)
  Device device() const { return storage ? storage->device : Device::cpu(); }
};

/// A view of n-dimensional data. Copying a Tensor shares its storage (like PyTorch).
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- creation (contents of empty() are unspecified)
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values, Device device = Device::cpu());
  static Tensor from_labels(const std::vector<int32_t>& labels, Device device = Device::cpu());
  /// Wraps memory owned elsewhere (kept alive through `owner`), e.g. a memory-mapped file.
  static Tensor borrow(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner);

  // --- description
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int ndim() const { return impl().shape.ndim(); }
  int64_t dim(int i) const { return impl().shape[i]; }
  int64_t numel() const { return impl().shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device(); }
  std::string str() const;  // "f32[2, 3] cpu"

  // --- raw data (on the tensor's device)
  /// Pointers through which the data may be written: each call bumps the storage's version (see Storage).
  void* raw() const;
  template <class T> T* data() const;  // checks the dtype: float, int32_t, uint8_t, uint16_t (bf16/f16)
  /// Read-only access that leaves the version as it is (for kernels whose caches key on it).
  const void* craw() const;
  template <class T> const T* cdata() const;  // same dtype checks as data()
  /// The storage's version (0 for a tensor without storage); see Storage.
  uint64_t version() const;

  // --- copies
  Tensor clone() const;                // same device, new storage, no autograd history
  Tensor to(Device d) const;           // copy to a device (self if already there)
  Tensor to_dtype(DType t) const;      // f32 <-> bf16 on the tensor's device (backend convert); self if t
  Tensor detach() const;               // shares storage, no history, no requires_grad
  void copy_(const Tensor& src);       // same shape; any devices; no autograd
  void fill_(float value);             // F32 only; no autograd
  std::vector<float> to_vector() const;      // F32 -> host vector
  std::vector<int32_t> to_labels() const;    // I32 -> host vector
  float item() const;                  // one-element F32 tensor
  float sum_all() const;               // sum of an F32 tensor (host-side, double accumulation)

  /// A view with another shape of the same number of elements (no copy, no autograd; see ops::reshape).
  Tensor view(const Shape& shape) const;

  // --- autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  /// Sets the accumulated gradient to zero, keeping its buffer (no allocation).
  void zero_grad();
  /// Reverse-mode differentiation of a one-element tensor; gradients accumulate into the leaves.
  void backward() const;
  /// Reverse-mode with an explicit seed gradient of this tensor's shape.
  void backward(const Tensor& seed) const;
  bool is_leaf() const { return impl().grad_fn == nullptr; }

  TensorImpl& impl() const {
    GEOLOC_CHECK(impl_, ShapeError, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Checking helpers; messages name the argument and the shape seen.
void check_defined(const Tensor& t, const char* what);
void check_f32(const Tensor& t, const char* what);
void check_ndim(const Tensor& t, int nd, const char* what);
void check_same_shape(const Tensor& a, const Tensor& b, const char* what_a, const char* what_b);
void check_same_device(const Tensor& a, const Tensor& b, const char* what_a, const char* what_b);

template <> float* Tensor::data<float>() const;
template <> int32_t* Tensor::data<int32_t>() const;
template <> uint8_t* Tensor::data<uint8_t>() const;
template <> uint16_t* Tensor::data<uint16_t>() const;
template <> const float* Tensor::cdata<float>() const;
template <> const int32_t* Tensor::cdata<int32_t>() const;
template <> const uint8_t* Tensor::cdata<uint8_t>() const;
template <> const uint16_t* Tensor::cdata<uint16_t>() const;

namespace detail {
/// Called with a storage's id when a storage with has_derived set is destroyed; caches of derived data
/// register here (at most 4 hooks; the hooks must not throw and must not touch the storage).
using StorageReleasedHook = void (*)(uint64_t id);
void add_storage_released_hook(StorageReleasedHook hook);
}  // namespace detail

/// Blocks until `device` has finished the work queued so far (a no-op on the CPU): for timing, and
/// before the host reads memory that a device kernel writes asynchronously.
void synchronize(Device device);

}  // namespace geoloc
