#pragma once
// The free-block cache behind the CPU and CUDA caching allocators: freed blocks are kept for reuse by
// exact size, at most `limit` bytes; past the limit the least recently freed blocks are handed back to
// be released. A training step that repeats its shapes reuses its blocks every step (they are the most
// recently freed), while sizes that never come back (a tensor growing with the input count) age out
// instead of staying cached forever. Not thread-safe: the allocators hold their lock around it.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <map>
#include <utility>
#include <vector>

namespace geoloc::detail {

class BlockCache {
 public:
  using Blocks = std::vector<std::pair<void*, size_t>>;  // (pointer, size) to release

  explicit BlockCache(size_t limit = SIZE_MAX) : limit_(limit) {}

  /// The most recently freed block of exactly `size` bytes, or nullptr.
  void* take(size_t size) {
    auto [lo, hi] = by_size_.equal_range(size);
    if (lo == hi) return nullptr;
    const auto it = std::prev(hi);
    void* p = it->second->p;
    lru_.erase(it->second);
    by_size_.erase(it);
    bytes_ -= size;
    return p;
  }

  /// Caches a freed block; appends to `release` the blocks that no longer fit under the limit
  /// (possibly this one, when it alone exceeds it).
  void put(void* p, size_t size, Blocks& release) {
    lru_.push_back({p, size});
    by_size_.emplace(size, std::prev(lru_.end()));
    bytes_ += size;
    trim(release);
  }

  /// Sets the limit (bytes; SIZE_MAX = none) and appends what no longer fits to `release`.
  void set_limit(size_t limit, Blocks& release) {
    limit_ = limit;
    trim(release);
  }

  /// Every cached block, emptying the cache.
  Blocks take_all() {
    Blocks all;
    all.reserve(lru_.size());
    for (const Block& b : lru_) all.emplace_back(b.p, b.size);
    lru_.clear();
    by_size_.clear();
    bytes_ = 0;
    return all;
  }

  size_t bytes() const { return bytes_; }
  size_t limit() const { return limit_; }
  size_t blocks() const { return lru_.size(); }

 private:
  struct Block {
    void* p;
    size_t size;
  };
  void trim(Blocks& release) {
    while (bytes_ > limit_ && !lru_.empty()) {
      const auto oldest = lru_.begin();
      auto [lo, hi] = by_size_.equal_range(oldest->size);
      for (auto it = lo; it != hi; ++it)
        if (it->second == oldest) {
          by_size_.erase(it);
          break;
        }
      release.emplace_back(oldest->p, oldest->size);
      bytes_ -= oldest->size;
      lru_.erase(oldest);
    }
  }

  std::list<Block> lru_;  // front: least recently freed
  std::multimap<size_t, std::list<Block>::iterator> by_size_;
  size_t bytes_ = 0;
  size_t limit_;
};

}  // namespace geoloc::detail
