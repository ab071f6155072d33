// The library's thread pool (geoloc/thread_pool.hpp): every task runs once, exceptions reach the caller,
// nested and concurrent calls run inline, and the pool can shrink and grow between runs. These cases are
// also what ThreadSanitizer runs over the pool (scripts/sanitize.sh tsan: --test-case="thread pool*").
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/thread_pool.hpp"

using namespace geoloc;

namespace {
struct PoolSize {  // restores the pool size on scope exit
  int saved = num_threads();
  ~PoolSize() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("thread pool: every task runs exactly once, for any pool size") {
  PoolSize keep;
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    CHECK(num_threads() == threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      run_tasks(n, [&](int64_t t) { seen[static_cast<size_t>(t)].fetch_add(1); });
      for (const auto& s : seen) CHECK(s.load() == 1);
    }
  }
}

// Fewer threads than before leaves workers that wake for every run but take no part in it; they must
// never act on a later run's state (a run of 2 threads, then one of 4, many times over).
TEST_CASE("thread pool: shrinking and growing between runs") {
  PoolSize keep;
  set_num_threads(4);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 400; ++round) {
    set_num_threads(round % 3 == 0 ? 4 : round % 3 == 1 ? 2 : 3);
    run_tasks(16, [&](int64_t t) { sum.fetch_add(t); });
  }
  CHECK(sum.load() == 400 * (15 * 16 / 2));
}

TEST_CASE("thread pool: the first exception reaches the caller after every task has finished") {
  PoolSize keep;
  set_num_threads(3);
  std::atomic<int> finished{0};
  CHECK_THROWS_WITH_AS(run_tasks(64,
                                 [&](int64_t t) {
                                   if (t == 5) throw ValueError("task 5 failed");
                                   finished.fetch_add(1);
                                 }),
                       "task 5 failed", ValueError);
  CHECK(finished.load() == 63);
  // The pool is usable afterwards.
  std::atomic<int> after{0};
  run_tasks(10, [&](int64_t) { after.fetch_add(1); });
  CHECK(after.load() == 10);
}

TEST_CASE("thread pool: nested calls and calls from other threads run, inline where the pool is busy") {
  PoolSize keep;
  set_num_threads(3);
  std::atomic<int> inner{0};
  run_tasks(6, [&](int64_t) { run_tasks(5, [&](int64_t) { inner.fetch_add(1); }); });
  CHECK(inner.load() == 30);
  std::atomic<int> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) run_tasks(8, [&](int64_t) { total.fetch_add(1); });
    });
  for (auto& t : callers) t.join();
  CHECK(total.load() == 3 * 50 * 8);
  std::vector<int> out(1000, 0);
  parallel_for(out.size(), 37, [&](size_t i) { out[i] = static_cast<int>(i) * 2; });
  for (size_t i = 0; i < out.size(); ++i) CHECK(out[i] == static_cast<int>(i) * 2);
}
