// The caching allocators' free-block cache: exact-size reuse, a byte limit, least recently freed first out.
#include <doctest/doctest.h>

#include <vector>

#include "geoloc/detail/block_cache.hpp"
#include "geoloc/tensor.hpp"

using geoloc::detail::BlockCache;

TEST_CASE("BlockCache: exact-size reuse, most recent first; the limit releases the least recently freed") {
  char a[1], b[1], c[1], d[1];
  BlockCache cache(300);
  BlockCache::Blocks out;
  cache.put(a, 100, out);
  cache.put(b, 100, out);
  cache.put(c, 50, out);
  CHECK(out.empty());
  CHECK(cache.bytes() == 250);
  CHECK(cache.take(70) == nullptr);
  CHECK(cache.take(100) == b);  // the most recently freed of that size
  CHECK(cache.bytes() == 150);
  cache.put(b, 100, out);
  cache.put(d, 100, out);  // 350 > 300: the least recently freed (a) goes
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == a);
  CHECK(out[0].second == 100);
  CHECK(cache.bytes() == 250);
  out.clear();
  char big[1];
  cache.put(big, 1000, out);  // alone above the limit: released at once, after the older ones
  CHECK(cache.bytes() == 0);
  CHECK(out.size() == 4);
  CHECK(out.back().first == big);
  out.clear();
  cache.put(a, 10, out);
  cache.set_limit(5, out);
  CHECK(out.size() == 1);
  CHECK(cache.blocks() == 0);
  cache.set_limit(SIZE_MAX, out);
  cache.put(a, 10, out);
  cache.put(b, 20, out);
  CHECK(cache.take_all().size() == 2);
  CHECK(cache.bytes() == 0);
}

TEST_CASE("the CPU allocator's cache stays under its limit while tensors of ever new sizes come and go") {
  geoloc::Allocator& a = geoloc::cpu_allocator();
  const size_t old_limit = a.stats().cache_limit;
  CHECK(old_limit >= (size_t(1) << 30));  // default: a quarter of the memory, at least 1 GiB (or GEOLOC_CPU_CACHE_MB)
  a.empty_cache();
  a.set_cache_limit(size_t(8) << 20);
  // the pattern that made eval's memory quadratic: a buffer re-made one row larger for every batch
  for (int64_t rows = 1; rows <= 400; ++rows) {
    geoloc::Tensor t = geoloc::Tensor::empty({rows * 64, 64});
    CHECK(a.stats().bytes_cached <= (size_t(8) << 20));
  }
  CHECK(a.stats().bytes_cached <= (size_t(8) << 20));
  a.set_cache_limit(old_limit);
  a.empty_cache();
  CHECK(a.stats().bytes_cached == 0);
}
