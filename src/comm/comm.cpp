// The communicator interface, the single-process back end and the factory (comm.hpp).
#include "geoloc/comm.hpp"

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/backends.hpp"

namespace geoloc::comm {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Local: return "local";
    case Kind::Mpi: return "mpi";
    case Kind::Nccl: return "nccl";
  }
  return "?";
}

void Communicator::set_timeout(double seconds) {
  GEOLOC_CHECK(seconds >= 0.0, ValueError, "communicator timeout must be >= 0 seconds, got ", seconds);
  timeout_s_ = seconds;
}

void Communicator::all_reduce_sum(const Tensor& t) { all_reduce_sum_async(t)->wait(); }

void Communicator::abort(int) noexcept {}

std::string Communicator::where() const {
  return "rank " + std::to_string(rank()) + " of " + std::to_string(size());
}

bool has_mpi() {
#if defined(GEOLOC_HAS_MPI)
  return true;
#else
  return false;
#endif
}

bool has_nccl() {
#if defined(GEOLOC_HAS_NCCL)
  return true;
#else
  return false;
#endif
}

namespace {
const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}
}  // namespace

bool launched_by_mpi() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_SIZE") || env("PMI_RANK");
}

int launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = env(name)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  return 1;
}

namespace {
class DoneWork : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(const Options& o) { set_timeout(o.timeout_s); }
  Kind kind() const override { return Kind::Local; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::unique_ptr<Work> all_reduce_sum_async(const Tensor& t) override {
    check_defined(t, "all_reduce_sum");
    check_f32(t, "all_reduce_sum");
    return std::make_unique<DoneWork>();
  }
  void broadcast(const Tensor& t, int root) override {
    check_defined(t, "broadcast");
    GEOLOC_CHECK(root == 0, ValueError, "broadcast: root ", root, " outside the 1 rank of a local communicator");
  }
  void barrier(double) override {}
};
}  // namespace

std::unique_ptr<Communicator> make_local(Options o) { return std::make_unique<LocalCommunicator>(o); }

std::unique_ptr<Communicator> create(const std::string& kind, Options o) {
  if (kind == "local") return make_local(o);
  if (kind == "mpi") return detail::make_mpi(o);
  if (kind == "nccl") return detail::make_nccl(o);
  GEOLOC_CHECK(kind == "auto", ValueError, "unknown communicator '", kind, "' (expected auto, local, mpi or nccl)");
  if (!launched_by_mpi()) return make_local(o);
  GEOLOC_CHECK(has_mpi(), CommError, "this process was started by an MPI launcher (", launched_world_size(),
               " processes) but geoloc was built without MPI (GEOLOC_MPI=OFF or no MPI found): every process "
               "would train alone and write the same outputs; rebuild with MPI (libopenmpi-dev) or run without mpirun");
  return detail::make_mpi(o);
}

namespace detail {

std::string timeout_message(const std::string& what, double timeout_s, const std::string& where) {
  char t[32];
  std::snprintf(t, sizeof t, "%g", timeout_s);
  return what + " did not complete within " + t + " s on " + where +
         ": another rank has failed, been stopped or hangs (or is slower than the timeout allows: --comm-timeout)";
}

void poll_until(const std::function<bool()>& done, double timeout_s, const std::string& what, const std::string& where) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto nap = std::chrono::microseconds(20);
  for (int i = 0; !done(); ++i) {
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (timeout_s > 0 && waited > timeout_s) throw CommError(timeout_message(what, timeout_s, where));
    if (i < 100) continue;  // spin: most collectives of a step complete within microseconds of the last rank
    if (waited < 1e-3) {
      std::this_thread::yield();
    } else {  // a long wait: leave the core to the loader's threads
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(200));
    }
  }
}

#if !defined(GEOLOC_HAS_MPI)
std::unique_ptr<Communicator> make_mpi(const Options&) {
  throw CommError("geoloc was built without MPI (configure with GEOLOC_MPI=ON and libopenmpi-dev installed)");
}
#endif
#if !defined(GEOLOC_HAS_NCCL)
std::unique_ptr<Communicator> make_nccl(const Options&) {
  throw CommError(
      "geoloc was built without NCCL (it needs the CUDA backend, MPI for the unique-id exchange, and libnccl "
      "in the CUDA toolkit)");
}
#endif

}  // namespace detail
}  // namespace geoloc::comm
