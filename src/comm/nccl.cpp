// The NCCL back end (comm.hpp): CUDA tensors are reduced with NCCL on a stream of its own, CPU tensors
// and barriers go through MPI, which also carries NCCL's unique id from rank 0 to the others.
//
// Ordering with geoloc's compute stream (cuda/context.hpp): a collective waits for an event recorded on the
// compute stream when it was started (the gradients copied into the bucket), runs on the communication
// stream, and the host polls its completion event against the deadline; so backward kernels queued after
// the start overlap with the all-reduce. The communicator is non-blocking (ncclConfig_t.blocking = 0): a
// collective that misses its deadline is ended with ncclCommAbort instead of waiting forever.
//
// NOT RUN: this file is compiled and linked on the build machine, which has no GPU; it has not run.
#if defined(GEOLOC_HAS_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <vector>

#include "comm/backends.hpp"
#include "geoloc/cuda/context.hpp"

namespace geoloc::comm::detail {
namespace {

#define GEOLOC_COMM_CUDA_CHECK(call)                                                                        \
  do {                                                                                                      \
    const cudaError_t e_ = (call);                                                                          \
    if (e_ != cudaSuccess) throw CommError(std::string("nccl back end: ") + #call + ": " + cudaGetErrorString(e_)); \
  } while (0)

// ncclInProgress is success-so-far for a non-blocking communicator.
void nccl_check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw CommError(what + ": " + ncclGetErrorString(r) + (r == ncclSystemError || r == ncclRemoteError
                                                                ? " (a remote rank failed or a network error)"
                                                                : ""));
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator& c, cudaEvent_t done, std::string what) : c_(c), done_(done), what_(std::move(what)) {}
  ~NcclWork() override {
    if (done_) cudaEventDestroy(done_);
  }
  bool test() override;
  void wait() override;

 private:
  NcclCommunicator& c_;
  cudaEvent_t done_;
  std::string what_;
  bool complete_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  explicit NcclCommunicator(const Options& o) : mpi_(make_mpi(o)) {
    set_timeout(o.timeout_s);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
    GEOLOC_CHECK(count > 0, CommError, "nccl back end on ", mpi_->where(),
                 ": no CUDA device (use the mpi back end for CPU training)");
    device_ = o.cuda_device >= 0 ? o.cuda_device : mpi_->local_rank() % count;
    GEOLOC_CHECK(device_ < count, CommError, "nccl back end: CUDA device ", device_, " requested on ", mpi_->where(),
                 " but the machine has ", count);
    cuda::Context& ctx = cuda::Context::get(device_);
    ctx.make_current();
    compute_ = ctx.stream();
    GEOLOC_COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (mpi_->rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    const Tensor id_bytes =
        Tensor::borrow(&id, {static_cast<int64_t>(sizeof id)}, DType::U8, Device::cpu(), nullptr);
    mpi_->broadcast(id_bytes, 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    nccl_check(ncclCommInitRankConfig(&comm_, mpi_->size(), id, mpi_->rank(), &config), "ncclCommInitRankConfig");
    settle("ncclCommInitRankConfig");
  }

  ~NcclCommunicator() override {
    if (comm_ && !aborted_) {
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream_);
      const ncclResult_t r = ncclCommFinalize(comm_);
      bool ok = r == ncclSuccess || r == ncclInProgress;
      if (ok) {
        try {
          settle("ncclCommFinalize");
        } catch (...) {
          ok = false;
        }
      }
      if (ok) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (stream_) cudaStreamDestroy(stream_);
  }

  Kind kind() const override { return Kind::Nccl; }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  int local_rank() const override { return mpi_->local_rank(); }

  std::unique_ptr<Work> all_reduce_sum_async(const Tensor& t) override {
    check_defined(t, "all_reduce_sum");
    check_f32(t, "all_reduce_sum");
    if (t.device().is_cpu()) {
      mpi_->set_timeout(timeout());
      return mpi_->all_reduce_sum_async(t);
    }
    check_device(t);
    const std::string what = "NCCL all-reduce of " + std::to_string(t.numel()) + " floats";
    cudaEvent_t done = enqueue(what, [&] {
      return ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), ncclFloat, ncclSum, comm_, stream_);
    });
    return std::make_unique<NcclWork>(*this, done, what);
  }

  void broadcast(const Tensor& t, int root) override {
    check_defined(t, "broadcast");
    if (t.device().is_cpu()) {
      mpi_->set_timeout(timeout());
      mpi_->broadcast(t, root);
      return;
    }
    check_device(t);
    GEOLOC_CHECK(root >= 0 && root < size(), ValueError, "broadcast: root ", root, " outside ", size(), " ranks");
    const std::string what = "NCCL broadcast of " + std::to_string(t.nbytes()) + " bytes";
    cudaEvent_t done = enqueue(what, [&] {
      return ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclUint8, root, comm_, stream_);
    });
    NcclWork(*this, done, what).wait();
  }

  void barrier(double timeout_s) override { mpi_->barrier(timeout_s < 0 ? timeout() : timeout_s); }

  void abort(int code) noexcept override {
    if (comm_ && !aborted_) {
      ncclCommAbort(comm_);
      aborted_ = true;
    }
    mpi_->abort(code);
  }

  // Polls the communicator's asynchronous state until the pending NCCL call is no longer in progress.
  void settle(const std::string& what) {
    poll_until(
        [&] {
          ncclResult_t state = ncclSuccess;
          nccl_check(ncclCommGetAsyncError(comm_, &state), what);
          nccl_check(state, what + " on " + where());
          return state != ncclInProgress;
        },
        timeout(), what, where());
  }

  // The NCCL error of the communicator, if any (a failed peer), as a CommError.
  void check_async(const std::string& what) {
    ncclResult_t state = ncclSuccess;
    nccl_check(ncclCommGetAsyncError(comm_, &state), what);
    nccl_check(state, what + " on " + where());
  }

  void on_timeout() noexcept {
    if (comm_ && !aborted_) {
      ncclCommAbort(comm_);  // ends the kernels waiting for the missing rank
      aborted_ = true;
    }
  }

 private:
  void check_device(const Tensor& t) const {
    GEOLOC_CHECK(t.device().index == device_, CommError, "nccl back end on ", where(), " owns cuda:", device_,
                 " but was given a tensor on ", t.device().str());
    GEOLOC_CHECK(!aborted_, CommError, "nccl back end on ", where(), ": the communicator was aborted after an error");
  }

  template <class F>
  cudaEvent_t enqueue(const std::string& what, F&& call) {
    GEOLOC_COMM_CUDA_CHECK(cudaSetDevice(device_));
    cudaEvent_t ready = nullptr, done = nullptr;
    GEOLOC_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    GEOLOC_COMM_CUDA_CHECK(cudaEventRecord(ready, compute_));         // the producers of the buffer
    GEOLOC_COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);  // released once recorded work completes
    nccl_check(call(), what + " on " + where());
    settle(what);  // a non-blocking communicator may still be enqueuing
    GEOLOC_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    GEOLOC_COMM_CUDA_CHECK(cudaEventRecord(done, stream_));
    return done;
  }

  std::unique_ptr<Communicator> mpi_;
  int device_ = 0;
  cudaStream_t compute_ = nullptr, stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
};

bool NcclWork::test() {
  if (complete_) return true;
  const cudaError_t e = cudaEventQuery(done_);
  if (e == cudaSuccess) {
    complete_ = true;
    return true;
  }
  if (e != cudaErrorNotReady) throw CommError(what_ + " on " + c_.where() + ": " + cudaGetErrorString(e));
  c_.check_async(what_);
  return false;
}

void NcclWork::wait() {
  try {
    poll_until([this] { return test(); }, c_.timeout(), what_, c_.where());
  } catch (const CommError&) {
    c_.on_timeout();
    throw;
  }
}

}  // namespace

std::unique_ptr<Communicator> make_nccl(const Options& o) { return std::make_unique<NcclCommunicator>(o); }

}  // namespace geoloc::comm::detail
#endif  // GEOLOC_HAS_NCCL
