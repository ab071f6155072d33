// cuda_emu: the grid scheduler (fibres, barriers, warp collectives, checks) and the runtime calls.
//
// A launch runs its blocks one after another on the calling OS thread. The threads of a block are
// ucontext fibres; a fibre runs until it reaches a synchronisation point (__syncthreads*, __syncwarp,
// a shuffle, a vote, __activemask), exits, or yields (failed atomicCAS, __nanosleep). The scheduler then
// completes what can complete, in this order:
//   1. every runnable fibre, in a fresh seeded pseudo-random order, runs to its next such point;
//   2. a warp collective completes when every non-exited lane named in its mask waits at a warp
//      collective of the same kind with the same mask (else: error);
//   3. with nothing runnable and no collective complete, the block barrier completes when every
//      non-exited thread waits at __syncthreads* at one call site (else: divergent barrier / deadlock).
// All per-block state lives in a Grid object and thread_locals, so blocks could later be spread over
// several OS threads (one Grid per worker); nothing here assumes a single process-wide runner.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#ifdef CUDA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Present when any sanitizer runtime is linked in (weak: absent otherwise).
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace cuda_emu {
namespace detail {

thread_local ThreadView* tl_thread = nullptr;
thread_local BlockView* tl_block = nullptr;

void outside_kernel(const char* what) {
  throw std::logic_error(std::string("cuda_emu: ") + what + " used outside a kernel");
}

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t hash_str(const char* s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 1099511628211ull;
  return h;
}

uint64_t& seed_ref() {
  static uint64_t s = [] {
    const char* v = std::getenv("CUDA_EMU_SEED");
    return v && *v ? std::strtoull(v, nullptr, 0) : 20261201ull;
  }();
  return s;
}

// ---- fibre stacks: mmap'd with a PROT_NONE guard page below, pooled per OS thread
struct Stack {
  char* map = nullptr;  // including the guard page
  size_t map_size = 0;
  char* base = nullptr;  // usable part
  size_t size = 0;
  bool dirty = false;  // abandoned mid-kernel: its frames may still be poisoned for ASan
};
size_t stack_bytes() {
  static const size_t b = [] {
    const char* v = std::getenv("CUDA_EMU_STACK_KB");
    const long kb = v && *v ? std::atol(v) : 128;
    return static_cast<size_t>(std::max(16L, kb)) * 1024;
  }();
  return b;
}
struct StackPool {
  std::vector<Stack> free;
  ~StackPool() {
    for (Stack& s : free) munmap(s.map, s.map_size);
  }
  Stack get() {
    if (!free.empty()) {
      Stack s = free.back();
      free.pop_back();
      if (s.dirty) {
#ifdef CUDA_EMU_ASAN
        ASAN_UNPOISON_MEMORY_REGION(s.base, s.size);
#endif
        s.dirty = false;
      }
      return s;
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    Stack s;
    s.size = (stack_bytes() + page - 1) / page * page;
    s.map_size = s.size + page;
    void* m = mmap(nullptr, s.map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    s.map = static_cast<char*>(m);
    mprotect(s.map, page, PROT_NONE);
    s.base = s.map + page;
    return s;
  }
  void put(Stack s) { free.push_back(s); }
};
thread_local StackPool tl_stacks;

enum class St : uint8_t { Runnable, Waiting, Exited, Failed };

struct Fibre {
  ThreadView view{};
  ucontext_t ctx{};
  Stack stack;
  St st = St::Runnable;
  bool started = false;
  Op op = Op::None;
  unsigned mask = 0;
  int arg = 0, width = 0;
  uint64_t value = 0, result = 0;
  const char* file = "";
  int line = 0;
};

bool is_block_barrier(Op op) { return op >= Op::SyncThreads && op <= Op::SyncOr; }
bool is_warp_collective(Op op) { return op >= Op::SyncWarp && op <= Op::All; }
const char* op_name(Op op) {
  switch (op) {
    case Op::SyncThreads: return "__syncthreads";
    case Op::SyncCount: return "__syncthreads_count";
    case Op::SyncAnd: return "__syncthreads_and";
    case Op::SyncOr: return "__syncthreads_or";
    case Op::SyncWarp: return "__syncwarp";
    case Op::ShflIdx: return "__shfl_sync";
    case Op::ShflUp: return "__shfl_up_sync";
    case Op::ShflDown: return "__shfl_down_sync";
    case Op::ShflXor: return "__shfl_xor_sync";
    case Op::Ballot: return "__ballot_sync";
    case Op::Any: return "__any_sync";
    case Op::All: return "__all_sync";
    case Op::ActiveMask: return "__activemask";
    case Op::None: break;
  }
  return "?";
}

std::string fmt3(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
std::string hex(unsigned m) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", m);
  return b;
}

struct Grid;
thread_local Grid* tl_grid = nullptr;
thread_local Fibre* tl_fibre = nullptr;

void fibre_entry();

struct Grid {
  const LaunchConfig& cfg;
  void (*body)(void*);
  void* body_ctx;
  unsigned n;  // threads per block
  std::vector<Fibre> f;
  BlockView view{};
  unsigned char* dyn = nullptr;
  ucontext_t sched{};
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
  std::exception_ptr fibre_error;
  uint64_t rng = 0;
  std::vector<unsigned> order;

  Grid(const LaunchConfig& c, void (*b)(void*), void* ctx) : cfg(c), body(b), body_ctx(ctx) {
    n = c.block.x * c.block.y * c.block.z;
    f.resize(n);
    for (unsigned i = 0; i < n; ++i) {
      Fibre& t = f[i];
      t.view.thread_idx = {i % c.block.x, (i / c.block.x) % c.block.y, i / (c.block.x * c.block.y)};
      t.view.linear = i;
      t.view.lane = i % 32;
      t.view.warp = i / 32;
      t.stack = tl_stacks.get();
    }
    dyn = new unsigned char[c.shmem > 0 ? c.shmem : 1];  // exact size: ASan sees overruns
    if (c.shmem == 0) {
#ifdef CUDA_EMU_ASAN
      ASAN_POISON_MEMORY_REGION(dyn, 1);  // no dynamic shared memory: any access is an overflow
#endif
    }
    view.block_dim = c.block;
    view.grid_dim = c.grid;
    view.dynamic_shared = dyn;
    view.dynamic_shared_bytes = c.shmem;
  }
  ~Grid() {
    for (Fibre& t : f) {
      if (t.started && t.st != St::Exited) t.stack.dirty = true;
      tl_stacks.put(t.stack);
    }
#ifdef CUDA_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(dyn, 1);
#endif
    delete[] dyn;
  }

  // ---- messages
  std::string where() const {
    std::ostringstream o;
    o << "cuda_emu: kernel " << cfg.kernel << " (launched at " << cfg.file << ":" << cfg.line << "), block "
      << fmt3(view.block_idx) << " of grid " << fmt3(cfg.grid) << ", block size " << fmt3(cfg.block)
      << ", CUDA_EMU_SEED=" << seed_ref() << ": ";
    return o.str();
  }
  std::string threads(const std::vector<unsigned>& ids) const {
    std::string s;
    const size_t show = std::min<size_t>(ids.size(), 8);
    for (size_t i = 0; i < show; ++i) s += (i ? " " : "") + fmt3(f[ids[i]].view.thread_idx);
    if (ids.size() > show) s += " ... (" + std::to_string(ids.size()) + " threads)";
    return s;
  }
  [[noreturn]] void fail(const std::string& msg) const { throw KernelError(where() + msg); }

  // ---- switching
  void resume(Fibre& t) {
    if (!t.started) {
      t.started = true;
      getcontext(&t.ctx);
      t.ctx.uc_stack.ss_sp = t.stack.base;
      t.ctx.uc_stack.ss_size = t.stack.size;
      t.ctx.uc_link = nullptr;
      makecontext(&t.ctx, &fibre_entry, 0);
    }
    tl_fibre = &t;
    tl_thread = &t.view;
#ifdef CUDA_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, t.stack.base, t.stack.size);
    swapcontext(&sched, &t.ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    swapcontext(&sched, &t.ctx);
#endif
    tl_fibre = nullptr;
    tl_thread = nullptr;
  }

  // ---- one block
  void run_block(uint3 bidx, uint64_t block_linear) {
    view.block_idx = bidx;
    if (cfg.shmem) std::memset(dyn, 0xff, cfg.shmem);
    for (Fibre& t : f) {
      t.st = St::Runnable;
      t.started = false;
      t.op = Op::None;
    }
    rng = seed_ref() ^ hash_str(cfg.kernel) ^ (block_linear * 0x9e3779b97f4a7c15ull);
    unsigned idle_rounds = 0;
    for (;;) {
      order.clear();
      for (unsigned i = 0; i < n; ++i)
        if (f[i].st == St::Runnable) order.push_back(i);
      if (!order.empty()) {
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[splitmix(rng) % i]);
        bool progress = false;
        for (unsigned i : order) {
          resume(f[i]);
          if (f[i].st == St::Failed) rethrow_fibre(i);
          progress |= f[i].st != St::Runnable;
        }
        progress |= resolve_warps();
        if (progress)
          idle_rounds = 0;
        else if (++idle_rounds > 100000)
          fail("livelock: threads " + threads(order) +
               " keep spinning (failed atomicCAS / __nanosleep) while every other thread waits");
        continue;
      }
      if (resolve_warps()) continue;
      if (!resolve_barrier()) return;  // all threads exited
    }
  }

  void rethrow_fibre(unsigned i) {
    try {
      std::rethrow_exception(fibre_error);
    } catch (const KernelError&) {
      throw;
    } catch (const std::exception& e) {
      fail("thread " + fmt3(f[i].view.thread_idx) + " threw: " + e.what());
    } catch (...) {
      fail("thread " + fmt3(f[i].view.thread_idx) + " threw a non-std exception");
    }
  }

  // Completes the warp collectives whose lanes have all arrived; returns whether any did.
  bool resolve_warps() {
    bool any = false;
    const unsigned nw = (n + 31) / 32;
    for (unsigned w = 0; w < nw; ++w) {
      const unsigned lo = w * 32, hi = std::min(n, lo + 32);
      for (unsigned j = lo; j < hi; ++j) {
        Fibre& t = f[j];
        if (t.st != St::Waiting) continue;
        if (t.op == Op::ActiveMask) {
          bool warp_runnable = false;
          for (unsigned k = lo; k < hi; ++k) warp_runnable |= f[k].st == St::Runnable;
          if (warp_runnable) continue;
          unsigned m = 0;  // the lanes at this same __activemask() call
          for (unsigned k = lo; k < hi; ++k)
            if (f[k].st == St::Waiting && f[k].op == Op::ActiveMask && f[k].line == t.line &&
                std::strcmp(f[k].file, t.file) == 0)
              m |= 1u << (k - lo);
          for (unsigned k = lo; k < hi; ++k)
            if (m >> (k - lo) & 1u) {
              f[k].result = m;
              f[k].st = St::Runnable;
            }
          any = true;
          continue;
        }
        if (!is_warp_collective(t.op)) continue;
        // participants: the non-exited lanes of the block named in the mask
        unsigned part = 0;
        bool ready = true;
        for (unsigned k = lo; k < hi; ++k) {
          if (!(t.mask >> (k - lo) & 1u) || f[k].st == St::Exited) continue;
          part |= 1u << (k - lo);
          const Fibre& o = f[k];
          if (o.st == St::Runnable || o.op == Op::ActiveMask || is_block_barrier(o.op)) {
            ready = false;  // not there yet, or stuck elsewhere (a deadlock, reported later)
            continue;
          }
          if (o.op != t.op || o.mask != t.mask) {
            if (!(o.mask >> (j - lo) & 1u)) {  // o's collective may still complete without t and move on
              ready = false;
              continue;
            }
            fail("warp " + std::to_string(w) + ": thread " + fmt3(t.view.thread_idx) + " waits at " +
                 op_name(t.op) + "(mask " + hex(t.mask) + ") at " + t.file + ":" + std::to_string(t.line) +
                 " but lane " + std::to_string(k - lo) + " " + fmt3(o.view.thread_idx) + ", named in that mask, is at " +
                 op_name(o.op) + "(mask " + hex(o.mask) + ") at " + o.file + ":" + std::to_string(o.line) +
                 " (all non-exited lanes in the mask must execute the same intrinsic with the same mask)");
          }
        }
        if (!ready) continue;
        complete(lo, part, t.op);
        any = true;
      }
    }
    return any;
  }

  void complete(unsigned lo, unsigned part, Op op) {
    uint64_t vote = 0;
    if (op == Op::Ballot || op == Op::Any || op == Op::All) {
      unsigned bits = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((part >> l & 1u) && f[lo + l].value) bits |= 1u << l;
      vote = op == Op::Ballot ? bits : op == Op::Any ? bits != 0 : bits == part;
    }
    for (unsigned l = 0; l < 32; ++l) {
      if (!(part >> l & 1u)) continue;
      Fibre& t = f[lo + l];
      if (op >= Op::ShflIdx && op <= Op::ShflXor) {
        const unsigned width = static_cast<unsigned>(t.width), base = l & ~(width - 1), sub = l - base;
        const unsigned a = static_cast<unsigned>(t.arg);
        unsigned src = l;
        if (op == Op::ShflIdx)
          src = base + (a & (width - 1));
        else if (op == Op::ShflUp)
          src = sub >= a ? l - a : l;  // the lowest delta lanes keep their value
        else if (op == Op::ShflDown)
          src = sub + a < width ? l + a : l;  // the highest delta lanes keep their value
        else {
          src = l ^ (a & 31u);
          if (src >= base + width) src = l;  // a later group: own value
        }
        if (src != l && !(part >> src & 1u)) {
          const unsigned s = lo + src;
          const std::string why = s >= n                       ? "which does not exist (partial warp)"
                                  : f[s].st == St::Exited       ? "which has exited"
                                                                : "which is not in the mask";
          fail(std::string(op_name(op)) + " at " + t.file + ":" + std::to_string(t.line) + ": thread " +
               fmt3(t.view.thread_idx) + " (lane " + std::to_string(l) + ", mask " + hex(t.mask) + ") reads lane " +
               std::to_string(src) + " " + why + "; the value would be undefined");
        }
        t.result = f[lo + src].value;
      } else {
        t.result = vote;
      }
      t.st = St::Runnable;
    }
  }

  // Nothing runnable and no warp collective complete: release the block barrier, finish the block
  // (returns false) or report why no thread can go on.
  bool resolve_barrier() {
    std::vector<unsigned> exited, at_barrier, elsewhere;
    for (unsigned i = 0; i < n; ++i) {
      if (f[i].st == St::Exited)
        exited.push_back(i);
      else if (is_block_barrier(f[i].op))
        at_barrier.push_back(i);
      else
        elsewhere.push_back(i);
    }
    if (exited.size() == n) return false;
    if (elsewhere.empty()) {
      const Fibre& a = f[at_barrier[0]];
      std::map<std::string, std::vector<unsigned>> sites;
      for (unsigned i : at_barrier)
        sites[std::string(op_name(f[i].op)) + " at " + f[i].file + ":" + std::to_string(f[i].line)].push_back(i);
      if (sites.size() > 1) {
        std::string m = "divergent barrier: the threads of the block wait at different barriers:";
        for (auto& [site, ids] : sites) m += "\n  " + site + ": threads " + threads(ids);
        if (!exited.empty()) m += "\n  exited: threads " + threads(exited);
        fail(m);
      }
      if (!exited.empty())
        fail(std::string("divergent barrier: ") + op_name(a.op) + " at " + a.file + ":" + std::to_string(a.line) +
             " is reached by " + std::to_string(at_barrier.size()) + " of " + std::to_string(n) +
             " threads; threads " + threads(exited) + " exited without reaching it");
      uint64_t count = 0;
      for (unsigned i : at_barrier) count += f[i].value != 0;
      const uint64_t r = a.op == Op::SyncCount ? count
                         : a.op == Op::SyncAnd ? count == at_barrier.size()
                         : a.op == Op::SyncOr  ? count != 0
                                               : 0;
      for (unsigned i : at_barrier) {
        f[i].result = r;
        f[i].st = St::Runnable;
      }
      return true;
    }
    std::map<std::string, std::vector<unsigned>> waits;
    for (unsigned i = 0; i < n; ++i) {
      const Fibre& t = f[i];
      if (t.st == St::Exited) continue;
      std::string k = op_name(t.op);
      if (is_warp_collective(t.op)) k += "(mask " + hex(t.mask) + ")";
      waits[k + " at " + t.file + ":" + std::to_string(t.line)].push_back(i);
    }
    std::string m = "deadlock: no thread can go on:";
    for (auto& [site, ids] : waits) m += "\n  waiting at " + site + ": threads " + threads(ids);
    if (!exited.empty()) m += "\n  exited: threads " + threads(exited);
    fail(m);
  }
};

void fibre_entry() {
  Grid* g = tl_grid;
  Fibre* t = tl_fibre;
#ifdef CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g->sched_bottom, &g->sched_size);
#endif
  try {
    g->body(g->body_ctx);
    t->st = St::Exited;
  } catch (...) {
    g->fibre_error = std::current_exception();
    t->st = St::Failed;
  }
#ifdef CUDA_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, g->sched_bottom, g->sched_size);  // this fibre is done
#endif
  setcontext(&g->sched);
}

void suspend(Fibre& t) {
  Grid* g = tl_grid;
#ifdef CUDA_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, g->sched_bottom, g->sched_size);
  swapcontext(&t.ctx, &g->sched);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  swapcontext(&t.ctx, &g->sched);
#endif
}

void on_sanitizer_death() {
  if (Grid* g = tl_grid)
    std::fprintf(stderr, "%sthe report above is from thread %s\n", g->where().c_str(),
                 tl_thread ? fmt3(tl_thread->thread_idx).c_str() : "(none: in the scheduler)");
}

thread_local cudaError_t tl_last_error = cudaSuccess;

}  // namespace

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) tl_last_error = e;
  return e;
}

uint64_t collective(Op op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line) {
  Fibre* t = tl_fibre;
  if (!t) outside_kernel(op_name(op));
  Grid* g = tl_grid;
  if (is_warp_collective(op) && !(mask >> t->view.lane & 1u))
    throw KernelError(g->where() + op_name(op) + " at " + file + ":" + std::to_string(line) + ": thread " +
                      fmt3(t->view.thread_idx) + " (lane " + std::to_string(t->view.lane) + ") passes mask " +
                      hex(mask) + ", which does not name its own lane");
  if (op >= Op::ShflIdx && op <= Op::ShflXor && (width < 1 || width > 32 || (width & (width - 1))))
    throw KernelError(g->where() + op_name(op) + " at " + file + ":" + std::to_string(line) + ": width " +
                      std::to_string(width) + " is not a power of two in [1, 32]");
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->arg = arg;
  t->width = width;
  t->file = file;
  t->line = line;
  t->st = St::Waiting;
  suspend(*t);
  t->op = Op::None;
  return t->result;
}

void yield() {
  if (Fibre* t = tl_fibre) suspend(*t);  // stays Runnable: runs again next round
}

namespace {
std::atomic<LaunchObserver> g_launch_observer{nullptr};
}
void set_launch_observer(LaunchObserver observer) { g_launch_observer.store(observer); }

void run_grid(const LaunchConfig& cfg, void (*body)(void*), void* ctx) {
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535 ||
      b.x > 1024 || b.y > 1024 || b.z > 64 || threads > unsigned(kMaxThreadsPerBlock)) {
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (cfg.shmem > kSharedPerBlockOptin) {
    set_error(cudaErrorInvalidValue);
    return;
  }
  if (tl_grid) throw KernelError(std::string("cuda_emu: launch of ") + cfg.kernel + " from inside kernel " +
                                 tl_grid->cfg.kernel + " (dynamic parallelism is not emulated)");
  static const bool hooked = [] {
    if (&__sanitizer_set_death_callback) __sanitizer_set_death_callback(&on_sanitizer_death);
    return true;
  }();
  (void)hooked;
  if (LaunchObserver obs = g_launch_observer.load()) obs(cfg);
  Grid grid(cfg, body, ctx);
  struct Reset {
    ~Reset() {
      tl_grid = nullptr;
      tl_block = nullptr;
      tl_fibre = nullptr;
      tl_thread = nullptr;
    }
  } reset;
  tl_grid = &grid;
  tl_block = &grid.view;
  // Blocks run in a seeded random order (the hardware promises none) when the grid is small enough.
  const uint64_t nblocks = uint64_t(g.x) * g.y * g.z;
  std::vector<uint64_t> ids;
  if (nblocks <= (1u << 20)) {
    ids.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; ++i) ids[i] = i;
    uint64_t r = seed_ref() ^ hash_str(cfg.kernel) ^ 0x5bd1e995ull;
    for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[splitmix(r) % i]);
  }
  for (uint64_t k = 0; k < nblocks; ++k) {
    const uint64_t id = ids.empty() ? k : ids[k];
    grid.run_block({unsigned(id % g.x), unsigned(id / g.x % g.y), unsigned(id / (uint64_t(g.x) * g.y))}, id);
  }
}

}  // namespace detail

void set_seed(uint64_t s) { detail::seed_ref() = s; }
uint64_t seed() { return detail::seed_ref(); }

}  // namespace cuda_emu

void __trap() {
  using namespace cuda_emu::detail;
  if (!tl_grid) outside_kernel("__trap");
  throw cuda_emu::KernelError(tl_grid->where() + "__trap() in thread " + fmt3(tl_thread->thread_idx));
}

// ======================================================================= runtime API
using cuda_emu::detail::set_error;
using cuda_emu::detail::tl_last_error;

namespace {
std::mutex g_mu;
std::map<const char*, size_t> g_allocs;  // device allocations: start -> bytes
std::set<const void*> g_streams, g_host_allocs;
struct Event {
  std::chrono::steady_clock::time_point t{};
  bool recorded = false;
};

// Whether [p, p + n) lies inside one device allocation.
bool in_device(const void* p, size_t n) {
  std::lock_guard<std::mutex> l(g_mu);
  const char* c = static_cast<const char*>(p);
  auto it = g_allocs.upper_bound(c);
  if (it == g_allocs.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + it->second;
}
bool overlaps_device(const void* p, size_t n) {
  std::lock_guard<std::mutex> l(g_mu);
  const char* c = static_cast<const char*>(p);
  auto it = g_allocs.upper_bound(c + (n ? n - 1 : 0));
  if (it == g_allocs.begin()) return false;
  --it;
  return c < it->first + it->second;
}
bool valid_stream(cudaStream_t s) {
  if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  std::lock_guard<std::mutex> l(g_mu);
  return g_streams.count(s) != 0;
}
}  // namespace

cudaError_t cudaGetLastError() {
  const cudaError_t e = tl_last_error;
  tl_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return tl_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define CUDA_EMU_NAME(x) \
  case x: return #x;
    CUDA_EMU_NAME(cudaSuccess)
    CUDA_EMU_NAME(cudaErrorInvalidValue)
    CUDA_EMU_NAME(cudaErrorMemoryAllocation)
    CUDA_EMU_NAME(cudaErrorInitializationError)
    CUDA_EMU_NAME(cudaErrorInvalidConfiguration)
    CUDA_EMU_NAME(cudaErrorInvalidDevicePointer)
    CUDA_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    CUDA_EMU_NAME(cudaErrorInvalidDeviceFunction)
    CUDA_EMU_NAME(cudaErrorNoDevice)
    CUDA_EMU_NAME(cudaErrorInvalidDevice)
    CUDA_EMU_NAME(cudaErrorInvalidResourceHandle)
    CUDA_EMU_NAME(cudaErrorNotReady)
    CUDA_EMU_NAME(cudaErrorIllegalAddress)
    CUDA_EMU_NAME(cudaErrorLaunchOutOfResources)
    CUDA_EMU_NAME(cudaErrorAssert)
    CUDA_EMU_NAME(cudaErrorLaunchFailure)
    CUDA_EMU_NAME(cudaErrorUnknown)
#undef CUDA_EMU_NAME
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetDeviceCount(int* n) {
  if (!n) return set_error(cudaErrorInvalidValue);
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  if (!d) return set_error(cudaErrorInvalidValue);
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device) {
  if (!v) return set_error(cudaErrorInvalidValue);
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = cuda_emu::kMaxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *v = 1024; break;
    case cudaDevAttrMaxBlockDimY: *v = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *v = 64; break;
    case cudaDevAttrMaxGridDimX: *v = 0x7fffffff; break;
    case cudaDevAttrMaxGridDimY: *v = 65535; break;
    case cudaDevAttrMaxGridDimZ: *v = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = int(cuda_emu::kSharedPerBlock); break;
    case cudaDevAttrTotalConstantMemory: *v = 65536; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *v = 65536; break;
    case cudaDevAttrClockRate: *v = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *v = cuda_emu::kSmCount; break;
    case cudaDevAttrL2CacheSize: *v = 50 * 1024 * 1024; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = 2048; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = 228 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(cuda_emu::kSharedPerBlockOptin); break;
    default: return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "cuda_emu (H200-like)");
  p->totalGlobalMem = size_t(141) << 30;
  p->sharedMemPerBlock = cuda_emu::kSharedPerBlock;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = cuda_emu::kMaxThreadsPerBlock;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = cuda_emu::kSmCount;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->sharedMemPerBlockOptin = cuda_emu::kSharedPerBlockOptin;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaDeviceReset() {
  tl_last_error = cudaSuccess;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (!free || !total) return set_error(cudaErrorInvalidValue);
  *total = size_t(141) << 30;
  *free = *total - (size_t(1) << 30);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (!p) return set_error(cudaErrorInvalidValue);
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  void* m = nullptr;
  if (posix_memalign(&m, 256, bytes) != 0) return set_error(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> l(g_mu);
  g_allocs[static_cast<const char*>(m)] = bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> l(g_mu);
    auto it = g_allocs.find(static_cast<const char*>(p));
    if (it == g_allocs.end()) return set_error(cudaErrorInvalidValue);
    g_allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  if (!valid_stream(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (!valid_stream(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaFree(p);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  if (!p) return set_error(cudaErrorInvalidValue);
  void* m = nullptr;
  if (posix_memalign(&m, 256, bytes ? bytes : 1) != 0) return set_error(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> l(g_mu);
  g_host_allocs.insert(m);
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!g_host_allocs.erase(p)) return set_error(cudaErrorInvalidValue);
  }
  std::free(p);
  return cudaSuccess;
}

// The copy's direction must match where the pointers are (undefined behaviour on the device).
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return set_error(cudaErrorInvalidMemcpyDirection);
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src) return set_error(cudaErrorInvalidValue);
  const bool dd = in_device(dst, bytes), sd = in_device(src, bytes);
  const bool dpart = !dd && overlaps_device(dst, bytes), spart = !sd && overlaps_device(src, bytes);
  if (dpart || spart) return set_error(cudaErrorInvalidValue);  // runs past the end of an allocation
  const bool ok = kind == cudaMemcpyDefault || (kind == cudaMemcpyHostToHost && !dd && !sd) ||
                  (kind == cudaMemcpyHostToDevice && dd && !sd) || (kind == cudaMemcpyDeviceToHost && !dd && sd) ||
                  (kind == cudaMemcpyDeviceToDevice && dd && sd);
  if (!ok) return set_error(cudaErrorInvalidValue);
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (!valid_stream(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!p || !in_device(p, bytes)) return set_error(cudaErrorInvalidValue);
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  if (!valid_stream(s)) return set_error(cudaErrorInvalidResourceHandle);
  return cudaMemset(p, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  if (!s) return set_error(cudaErrorInvalidValue);
  *s = reinterpret_cast<cudaStream_t>(new char(0));
  std::lock_guard<std::mutex> l(g_mu);
  g_streams.insert(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!s || !g_streams.erase(s)) return set_error(cudaErrorInvalidResourceHandle);
  }
  delete reinterpret_cast<char*>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return valid_stream(s) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  return valid_stream(s) && e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  if (!e) return set_error(cudaErrorInvalidValue);
  *e = reinterpret_cast<cudaEvent_t>(new Event);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e || !valid_stream(s)) return set_error(cudaErrorInvalidResourceHandle);
  auto* ev = reinterpret_cast<Event*>(e);
  ev->t = std::chrono::steady_clock::now();
  ev->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms) return set_error(cudaErrorInvalidValue);
  if (!a || !b) return set_error(cudaErrorInvalidResourceHandle);
  auto *ea = reinterpret_cast<Event*>(a), *eb = reinterpret_cast<Event*>(b);
  if (!ea->recorded || !eb->recorded) return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(eb->t - ea->t).count();
  return cudaSuccess;
}
