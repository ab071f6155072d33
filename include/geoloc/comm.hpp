#pragma once
// Collective communication between the processes of a data-parallel run (docs/scaling.md, "Data-parallel
// training"): one Communicator interface, three back ends.
//   local  one process, size 1: every collective is a no-op (always built).
//   mpi    MPI (OpenMPI): CPU tensors directly; CUDA tensors staged through host memory.
//   nccl   NCCL for CUDA tensors (one rank per GPU), MPI for CPU tensors and to exchange NCCL's unique id.
// MPI and NCCL are optional at build time (CMake GEOLOC_MPI; NCCL with CUDA and MPI only): has_mpi() and
// has_nccl() say what this build has. No MPI or NCCL type appears here.
//
// Failure: every collective has a deadline (timeout()). One that does not complete in time (another rank
// crashed, was killed or stopped, or hangs) is a CommError naming this rank and the operation; the caller
// then ends the whole job with abort() (MPI_Abort), since a pending collective can neither be cancelled nor
// finished. Collectives are called from one thread per process, in the same order on every rank.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/tensor.hpp"

namespace geoloc {

/// A collective failed or did not complete before its deadline, or the distributed set-up is wrong.
class CommError : public Error {
  using Error::Error;
};

namespace comm {

enum class Kind : uint8_t { Local = 0, Mpi = 1, Nccl = 2 };
const char* kind_name(Kind k);

/// A started collective.
class Work {
 public:
  virtual ~Work() = default;
  /// Lets the operation progress; true once it has completed.
  virtual bool test() = 0;
  /// Returns once the operation has completed; CommError when the communicator's timeout passes first.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual Kind kind() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Rank among the processes on this machine (which GPU a rank takes).
  virtual int local_rank() const = 0;

  /// Seconds a collective may take before it is a CommError; 0 = no limit.
  double timeout() const { return timeout_s_; }
  void set_timeout(double seconds);

  /// Starts the in-place sum over all ranks of `t` (F32, on its own device). Every rank ends with the same
  /// values. `t` must stay alive and unchanged until the work completes.
  virtual std::unique_ptr<Work> all_reduce_sum_async(const Tensor& t) = 0;
  /// all_reduce_sum_async(t)->wait().
  void all_reduce_sum(const Tensor& t);
  /// Copies root's contents of `t` (any dtype, the same shape on every rank) into `t` on every rank.
  virtual void broadcast(const Tensor& t, int root) = 0;
  /// Returns once every rank has arrived. timeout_s < 0: timeout(); 0: no deadline.
  virtual void barrier(double timeout_s = -1) = 0;
  /// Ends every process of the job after an unrecoverable error on this one (MPI_Abort with `code`): the
  /// other ranks are stopped rather than left waiting in a collective. Returns only for a local communicator.
  virtual void abort(int code) noexcept;

  /// "rank 1 of 4", for messages.
  std::string where() const;

 protected:
  double timeout_s_ = 120.0;
};

struct Options {
  /// Deadline of every collective, seconds (0 = none).
  double timeout_s = 120.0;
  /// nccl: the CUDA device of this rank; -1 = local_rank() modulo the number of devices.
  int cuda_device = -1;
};

/// What this build has.
bool has_mpi();
bool has_nccl();
/// True when the environment shows a launch by an MPI starter (mpirun/mpiexec of OpenMPI, MPICH or Intel MPI,
/// srun with PMI/PMIx): OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE or PMI_RANK is set.
bool launched_by_mpi();
/// The world size the starter announced (OMPI_COMM_WORLD_SIZE or PMI_SIZE), 1 when none did.
int launched_world_size();

/// A single-process communicator (size 1).
std::unique_ptr<Communicator> make_local(Options o = {});
/// kind: "local"; "mpi"; "nccl" (CUDA devices only); "auto" = "mpi" when launched_by_mpi(), else "local".
/// Initialises MPI on first use (finalised at exit). CommError when the kind is not in this build, or
/// (auto) when the process was started by mpirun in a build without MPI.
std::unique_ptr<Communicator> create(const std::string& kind, Options o = {});

/// Data-parallel gradient averaging. The parameters (the same list, in the same order, on every rank) are
/// packed into flat F32 buckets of about `bucket_bytes`, in reverse order of the list (the order backward
/// produces their gradients). While armed, autograd's grad-ready hook (autograd.hpp) copies each gradient
/// into its bucket as soon as that gradient is final, and a full bucket's all-reduce starts at once, while
/// backward still runs; buckets start strictly in index order, so every rank issues its collectives in the
/// same order whatever its timing. finish() starts what no hook started, waits for every bucket and writes
/// scale * (sum over ranks) back into each gradient. A parameter without a gradient on a rank contributes
/// zeros there; it gets the reduced gradient where any rank had one, and stays without one where none had.
class GradReducer {
 public:
  GradReducer(Communicator& comm, std::vector<Tensor> params, size_t bucket_bytes = size_t{4} << 20);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// Installs the grad-ready hook on this thread until finish() (call right before the last backward() of
  /// the step; gradients of earlier backward() calls accumulate as usual).
  void arm();
  /// Completes the step's reduction (see above). With a communicator of size 1 it only scales.
  void finish(float scale);

  size_t buckets() const;
  /// Buckets whose all-reduce started inside backward() (before finish()) in the last step.
  size_t started_in_backward() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace comm
}  // namespace geoloc
