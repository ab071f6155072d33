// The CPU backend's thread pool: the one set of threads of the library.
//
// Threading: one level, geoloc's own pool, not OpenMP. Each op is cut into tasks that the threads take
// dynamically; Eigen always runs single-threaded inside a task. Idle threads block on a futex
// (std::atomic::wait) instead of spinning: libgomp's default spin-wait (and Eigen's own parallel GEMM,
// which busy-waits on its threads once per depth block) made a training step 2-4x slower whenever the
// cores were shared with other processes, and the wake-up latency of a blocked thread (tens of
// microseconds) is negligible against the milliseconds of one conv. It is not against inference at
// batch 1, where a forward is ~45 runs of 0.1-1 ms each: so a thread that runs out of work first spins
// for a short, bounded time (kSpinMicros, with the CPU's pause hint) before it blocks, and a run that
// follows within that time starts without a wake-up. The spin is bounded so that on shared cores an idle
// thread gives its core back after at most that long.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common.hpp"
#include "geoloc/thread_pool.hpp"
namespace geoloc::cpu {
using namespace detail;

namespace {
constexpr int64_t kSpinMicros = 50;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins while a.load() == old, for at most kSpinMicros; returns whether it changed.
template <class T>
bool spin_while_equal(const std::atomic<T>& a, T old) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (a.load(std::memory_order_acquire) != old) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= until) return false;
  }
}

// ---- the thread pool
// run(n, fn) calls fn(task, thread) for every task in [0, n), spread over the caller (thread 0) and the
// workers (1..threads-1), each taking the next task from a shared counter. A call made from inside a
// task, or while another thread of the program is using the pool, runs inline on the calling thread.
class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
    return *p;
  }

  int threads() const { return threads_.load(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    n = std::clamp(n, 1, kMaxThreads);
    while (static_cast<int>(workers_.size()) < n - 1) {
      const int id = static_cast<int>(workers_.size()) + 1;
      // the generation is read here, not in the new thread: a run() that starts before the thread
      // does must still wake it
      workers_.emplace_back([this, id, seen = gen_.load()] { worker(id, seen); });
      workers_.back().detach();
    }
    threads_.store(n);
  }

  void run(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
    const int nt = threads();
    if (ntasks <= 0) return;
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (ntasks == 1 || nt == 1 || in_task_ || !lock.try_lock()) {
      for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
      return;
    }
    fn_ = &fn;
    ntasks_ = ntasks;
    next_.store(0);
    error_ = nullptr;
    active_.store(nt - 1);
    // A new generation with its number of participants, in one store (only run() changes gen_, under mu_)
    gen_.store((((gen_.load() >> 16) + 1) << 16) | static_cast<uint32_t>(nt));
    gen_.notify_all();
    work(0);
    for (int a = active_.load(); a != 0; a = active_.load())
      if (!spin_while_equal(active_, a)) active_.wait(a);
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  Pool() {
    Eigen::setNbThreads(1);  // Eigen runs inside the tasks; its own OpenMP threading must stay off
    const unsigned hw = std::thread::hardware_concurrency();
    set_threads(hw ? static_cast<int>(hw) : 1);
  }

  void work(int id) {
    in_task_ = true;
    try {
      for (int64_t t = next_.fetch_add(1); t < ntasks_; t = next_.fetch_add(1)) (*fn_)(t, id);
    } catch (...) {
      std::lock_guard<std::mutex> lock(err_mu_);
      if (!error_) error_ = std::current_exception();
    }
    in_task_ = false;
  }

  void worker(int id, uint32_t seen) {
    while (true) {
      if (!spin_while_equal(gen_, seen)) gen_.wait(seen);
      seen = gen_.load();
      // Whether this thread takes part comes from the same load as the generation: read separately,
      // a thread left out of one run could read the next run's count (a data race, ThreadSanitizer),
      // join that run while still counting the old generation, and join it once more after waking
      // again at once, counting itself out twice so that run() returned with tasks still running.
      if (id < static_cast<int>(seen & 0xFFFF)) {
        work(id);
        if (active_.fetch_sub(1) == 1) active_.notify_all();
      }
    }
  }

  std::mutex mu_, err_mu_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  // the generation of the current run (high 16 bits) and how many threads take part in it (low 16 bits)
  static constexpr int kMaxThreads = 0xFFFF;
  std::atomic<uint32_t> gen_{0};
  std::atomic<int> active_{0};
  std::atomic<int64_t> next_{0};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t ntasks_ = 0;
  std::exception_ptr error_;
  static thread_local bool in_task_;
};
thread_local bool Pool::in_task_ = false;
}  // namespace

namespace detail {
int pool_threads() { return cpu::Pool::get().threads(); }
void pool_run(int64_t ntasks, const std::function<void(int64_t, int)>& fn) { cpu::Pool::get().run(ntasks, fn); }
}  // namespace detail

}  // namespace geoloc::cpu

namespace geoloc {
void set_num_threads(int n) {
  const unsigned hw = std::thread::hardware_concurrency();
  cpu::Pool::get().set_threads(n > 0 ? n : (hw ? static_cast<int>(hw) : 1));
}
int num_threads() { return cpu::detail::pool_threads(); }
void run_tasks(int64_t n, const std::function<void(int64_t)>& fn) {
  cpu::Pool::get().run(n, [&](int64_t t, int) { fn(t); });
}

}  // namespace geoloc
