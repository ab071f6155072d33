// The MPI back end (comm.hpp): non-blocking MPI collectives (MPI-3) polled against a deadline, so that a
// rank that died or hangs makes the others fail with a CommError instead of waiting forever.
#if defined(GEOLOC_HAS_MPI)
#include <mpi.h>

#include <climits>
#include <cstring>
#include <vector>

#include "comm/backends.hpp"

namespace geoloc::comm::detail {
namespace {

std::string mpi_error(int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(msg, static_cast<size_t>(len));
}

#define GEOLOC_MPI_CHECK(call, what)                                                       \
  do {                                                                                     \
    const int rc_ = (call);                                                                \
    if (rc_ != MPI_SUCCESS) throw CommError(std::string(what) + ": " + mpi_error(rc_));    \
  } while (0)

// MPI is initialised once per process (on the first communicator) and finalised at exit when geoloc
// initialised it; a program that initialised MPI itself keeps that job.
void ensure_mpi() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) return;
  int provided = 0;
  // Only the thread that runs training calls MPI (the grad-ready hook runs inside backward() on it).
  GEOLOC_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  struct Finalizer {
    ~Finalizer() {
      int done = 0;
      MPI_Finalized(&done);
      if (!done) MPI_Finalize();
    }
  };
  static Finalizer finalizer;
}

constexpr int64_t kMaxCount = int64_t{1} << 30;  // elements per MPI call (MPI counts are int)

class MpiWork : public Work {
 public:
  MpiWork(std::vector<MPI_Request> reqs, double timeout_s, std::string what, std::string where,
          Tensor staged = {}, Tensor target = {})
      : reqs_(std::move(reqs)), timeout_s_(timeout_s), what_(std::move(what)), where_(std::move(where)),
        staged_(std::move(staged)), target_(std::move(target)) {}
  bool test() override {
    if (!done_) {
      int flag = 0;
      GEOLOC_MPI_CHECK(MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE),
                       what_ + " on " + where_);
      if (flag) {
        done_ = true;
        if (target_.defined()) target_.copy_(staged_);  // a CUDA tensor: back from its host copy
      }
    }
    return done_;
  }
  void wait() override { poll_until([this] { return test(); }, timeout_s_, what_, where_); }

 private:
  std::vector<MPI_Request> reqs_;
  double timeout_s_;
  std::string what_, where_;
  Tensor staged_, target_;
  bool done_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(const Options& o) {
    set_timeout(o.timeout_s);
    ensure_mpi();
    int wr = 0, ws = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    rank_ = wr;
    size_ = ws;
    // A communicator of our own (a program's other MPI traffic cannot interleave with ours); duplicated
    // without blocking, so that a rank that never arrives is a timeout here too.
    MPI_Request req;
    GEOLOC_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &comm_, &req), "MPI_Comm_idup");
    poll_until(
        [&] {
          int flag = 0;
          GEOLOC_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Comm_idup");
          return flag != 0;
        },
        timeout(), "setting up the MPI communicator", where());
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm local;
    GEOLOC_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
                     "MPI_Comm_split_type");
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  Kind kind() const override { return Kind::Mpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }

  std::unique_ptr<Work> all_reduce_sum_async(const Tensor& t) override {
    check_defined(t, "all_reduce_sum");
    check_f32(t, "all_reduce_sum");
    const std::string what = "all-reduce of " + std::to_string(t.numel()) + " floats";
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    float* p = host.data<float>();
    std::vector<MPI_Request> reqs;
    for (int64_t i = 0; i < t.numel(); i += kMaxCount) {
      MPI_Request r;
      const int n = static_cast<int>(std::min(kMaxCount, t.numel() - i));
      GEOLOC_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + i, n, MPI_FLOAT, MPI_SUM, comm_, &r), what + " on " + where());
      reqs.push_back(r);
    }
    if (t.device().is_cpu()) return std::make_unique<MpiWork>(std::move(reqs), timeout(), what, where());
    return std::make_unique<MpiWork>(std::move(reqs), timeout(), what, where(), host, t);
  }

  void broadcast(const Tensor& t, int root) override {
    check_defined(t, "broadcast");
    GEOLOC_CHECK(root >= 0 && root < size_, ValueError, "broadcast: root ", root, " outside ", size_, " ranks");
    const std::string what = "broadcast of " + std::to_string(t.nbytes()) + " bytes from rank " + std::to_string(root);
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    auto* p = static_cast<char*>(host.raw());
    std::vector<MPI_Request> reqs;
    const int64_t bytes = static_cast<int64_t>(t.nbytes());
    for (int64_t i = 0; i < bytes; i += kMaxCount) {
      MPI_Request r;
      const int n = static_cast<int>(std::min(kMaxCount, bytes - i));
      GEOLOC_MPI_CHECK(MPI_Ibcast(p + i, n, MPI_BYTE, root, comm_, &r), what + " on " + where());
      reqs.push_back(r);
    }
    MpiWork w(std::move(reqs), timeout(), what, where(), t.device().is_cpu() ? Tensor() : host,
              t.device().is_cpu() ? Tensor() : t);
    w.wait();
  }

  void barrier(double timeout_s) override {
    MPI_Request r;
    GEOLOC_MPI_CHECK(MPI_Ibarrier(comm_, &r), "barrier on " + where());
    MpiWork w({r}, timeout_s < 0 ? timeout() : timeout_s, "barrier", where());
    w.wait();
  }

  void abort(int code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi(const Options& o) { return std::make_unique<MpiCommunicator>(o); }

}  // namespace geoloc::comm::detail
#endif  // GEOLOC_HAS_MPI
