// The CPU backend's cache of packed weights (see weight_cache.hpp).
#include "weight_cache.hpp"

#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace geoloc::cpu::detail {
namespace {

struct Key {
  uint64_t storage_id;
  size_t offset;
  int64_t numel;
  const void* layout;
  int64_t layout_arg;
  bool operator==(const Key&) const = default;
};

struct Entry {
  Key key;
  uint64_t version;
  std::shared_ptr<float> data;  // 64-byte aligned
  size_t bytes;
};

std::shared_ptr<float> aligned_floats(size_t n) {
  const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  void* p = ::operator new(bytes, std::align_val_t(64));
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { ::operator delete(q, std::align_val_t(64)); });
}

size_t default_limit() {
  if (const char* e = std::getenv("GEOLOC_CPU_WEIGHT_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(e, &end, 10);
    if (end && end != e && *end == 0 && mb >= 0) return static_cast<size_t>(mb) << 20;
  }
  return size_t(512) << 20;
}

class Cache {
 public:
  static Cache& get() {
    // never destroyed: storages released during static destruction still call the hook
    static Cache* c = new Cache;
    return *c;
  }

  std::shared_ptr<const float> lookup_or_pack(const Tensor& w, const void* layout, int64_t layout_arg, size_t floats,
                                              float* scratch, const std::function<void(float*)>& pack) {
    TensorImpl& impl = w.impl();
    Storage* s = impl.storage.get();
    const size_t bytes = floats * sizeof(float);
    if (!eligible(w)) return in_scratch(scratch, pack, floats);
    const Key key{s->id, impl.offset, w.numel(), layout, layout_arg};
    std::shared_ptr<float> reuse;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (bytes > limit_) {
        lock.unlock();
        return in_scratch(scratch, pack, floats);
      }
      auto it = index_.find(key.storage_id);
      if (it != index_.end())
        for (auto e = it->second.begin(); e != it->second.end(); ++e) {
          if (!((*e)->key == key)) continue;
          if ((*e)->version == s->version.load(std::memory_order_acquire)) {
            ++hits_;
            lru_.splice(lru_.end(), lru_, *e);  // most recently used last
            return (*e)->data;
          }
          // stale: drop it, and pack again into its buffer unless a caller still reads that one
          if ((*e)->data.use_count() == 1) reuse = std::move((*e)->data);
          erase(it, e);
          break;
        }
      ++misses_;
    }
    // Read the version before packing: a write during the packing makes the entry stale at once.
    const uint64_t version = s->version.load(std::memory_order_acquire);
    std::shared_ptr<float> data = reuse ? std::move(reuse) : aligned_floats(floats);
    pack(data.get());
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes > limit_) return data;
    auto& list = index_[key.storage_id];
    for (auto e = list.begin(); e != list.end(); ++e)
      if ((*e)->key == key) {  // another thread cached it meanwhile: keep the newer version
        if ((*e)->version >= version) return data;
        erase(index_.find(key.storage_id), e);
        break;
      }
    while (bytes_ + bytes > limit_ && !lru_.empty()) {
      const Key victim = lru_.front().key;
      auto vit = index_.find(victim.storage_id);
      for (auto e = vit->second.begin(); e != vit->second.end(); ++e)
        if ((*e)->key == victim) {
          erase(vit, e);
          break;
        }
    }
    lru_.push_back(Entry{key, version, data, bytes});
    index_[key.storage_id].push_back(std::prev(lru_.end()));
    bytes_ += bytes;
    s->has_derived.store(true, std::memory_order_release);
    return data;
  }

  void release(uint64_t storage_id) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(storage_id);
    if (it == index_.end()) return;
    for (auto e : it->second) {
      bytes_ -= e->bytes;
      lru_.erase(e);
    }
    index_.erase(it);
  }

  static bool eligible(const Tensor& w) {
    const TensorImpl& impl = w.impl();
    const Storage* s = impl.storage.get();
    return s && s->alloc && s->device.is_cpu() && !impl.requires_grad;
  }

  bool cacheable(const Tensor& w, size_t floats) {
    if (!eligible(w)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return floats * sizeof(float) <= limit_;
  }

  WeightCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {hits_, misses_, lru_.size(), bytes_, limit_};
  }

  void reset(size_t limit) {
    std::lock_guard<std::mutex> lock(mu_);
    index_.clear();
    lru_.clear();
    bytes_ = 0;
    hits_ = misses_ = 0;
    if (limit != SIZE_MAX) limit_ = limit;
  }

 private:
  using Iter = std::list<Entry>::iterator;
  using Index = std::unordered_map<uint64_t, std::vector<Iter>>;

  Cache() : limit_(default_limit()) { geoloc::detail::add_storage_released_hook([](uint64_t id) { get().release(id); }); }

  static std::shared_ptr<const float> in_scratch(float* scratch, const std::function<void(float*)>& pack,
                                                 size_t floats) {
    if (!scratch) {  // the caller has no buffer: a new one, owned by the handle
      std::shared_ptr<float> data = aligned_floats(floats);
      pack(data.get());
      return data;
    }
    pack(scratch);
    return std::shared_ptr<const float>(scratch, [](const float*) {});  // the caller's buffer: not owned
  }

  void erase(Index::iterator it, std::vector<Iter>::iterator e) {
    bytes_ -= (*e)->bytes;
    lru_.erase(*e);
    it->second.erase(e);
    if (it->second.empty()) index_.erase(it);
  }

  std::mutex mu_;
  std::list<Entry> lru_;  // least recently used first
  Index index_;           // storage id -> its entries
  size_t bytes_ = 0, limit_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace

std::shared_ptr<const float> packed_weight(const Tensor& w, const void* layout, int64_t layout_arg, size_t floats,
                                           float* scratch, const std::function<void(float*)>& pack) {
  return Cache::get().lookup_or_pack(w, layout, layout_arg, floats, scratch, pack);
}

bool weight_cacheable(const Tensor& w, size_t floats) { return Cache::get().cacheable(w, floats); }

WeightCacheStats weight_cache_stats() { return Cache::get().stats(); }

void weight_cache_reset(size_t limit) { Cache::get().reset(limit); }

}  // namespace geoloc::cpu::detail
