#pragma once
// The CPU backend's cache of weights in a kernel's packed layout (the convolutions' k-major panels), so
// that inference does not repack every weight on every call. Internal to the CPU backend; not installed.
//
// Only weights that do not require a gradient are cached: frozen ones, as the inference entry points
// (Locator::load, geoloc predict / eval / index) leave them. A weight being trained, or perturbed in
// place (a finite-difference check holds one data pointer and writes through it between forwards), is
// packed on every call as before.
//
// An entry is keyed on the weight's storage identity (Storage::id, never reused), its byte offset and
// element count, and the layout (a tag, e.g. the kernel table, and one integer); it is valid only for
// the storage version it was packed from. Every access that can write a tensor's data (Tensor::raw /
// data, hence optimizer steps, copy_, fill_, weight loading) bumps that version, so a mutated weight is
// packed again on its next use; the kernels read weights through Tensor::cdata, which does not bump it.
// What no version can see is a write through a pointer obtained before the entry was made: a frozen
// weight must be written only through a freshly obtained pointer (data(), copy_, fill_).
// Entries are freed when their storage is destroyed, and the least recently used ones go when the cache
// would exceed its limit (GEOLOC_CPU_WEIGHT_CACHE_MB, default 512; 0 turns the cache off). Weights on
// borrowed memory (Tensor::borrow: another storage may alias it, and writes through that one would not
// bump this one's version) are never cached.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "geoloc/tensor.hpp"

namespace geoloc::cpu::detail {

/// The packed form of w (floats: its size, 64-byte aligned), from the cache when its entry is current,
/// otherwise made by pack(destination) and cached where the weight and the limit allow; where they do
/// not, it is packed into scratch (the caller's buffer of `floats`, 64-byte aligned; null: a new buffer that
/// the handle owns). The pointer stays
/// valid while the returned handle lives, even if the entry is evicted or replaced meanwhile.
std::shared_ptr<const float> packed_weight(const Tensor& w, const void* layout, int64_t layout_arg, size_t floats,
                                           float* scratch, const std::function<void(float*)>& pack);

/// Whether packed_weight would keep a packed form of `floats` floats of w (rather than pack it into the
/// caller's scratch on every call): a weight of its own CPU memory that does not require a gradient, and
/// within the limit.
bool weight_cacheable(const Tensor& w, size_t floats);

struct WeightCacheStats {
  uint64_t hits = 0, misses = 0;  // lookups served from the cache / packed again (cacheable weights only)
  size_t entries = 0, bytes = 0, limit = 0;
};
WeightCacheStats weight_cache_stats();
/// Frees every entry; sets the limit in bytes when limit != SIZE_MAX (0: caching off).
void weight_cache_reset(size_t limit = SIZE_MAX);

}  // namespace geoloc::cpu::detail
