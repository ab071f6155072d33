// The MPI communicator, run as `mpirun -np 2` (tests/scripts/with_mpi.sh; CTest entry comm_mpi): exact sums
// for fixed inputs, broadcast, barrier, the gradient reducer across real processes, and a collective that
// misses its deadline.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "geoloc/autograd.hpp"
#include "geoloc/comm.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;
using Clock = std::chrono::steady_clock;

namespace {
comm::Communicator& world() {
  static std::unique_ptr<comm::Communicator> c = comm::create("mpi", {.timeout_s = 60});
  return *c;
}
}  // namespace

TEST_CASE("mpi: every rank sees the launch") {
  comm::Communicator& c = world();
  CHECK(c.kind() == comm::Kind::Mpi);
  CHECK(c.size() == comm::launched_world_size());
  CHECK(c.size() >= 2);
  CHECK(c.rank() < c.size());
  CHECK(c.local_rank() == c.rank());  // one machine
}

TEST_CASE("mpi: all_reduce_sum is exact for fixed inputs and the same on every rank") {
  comm::Communicator& c = world();
  const int r = c.rank(), n = c.size();
  // dyadic values: every partial sum is exact in float, whatever the reduction order
  for (int64_t len : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{1} << 18}) {
    std::vector<float> v(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i % 97) * 0.25 + r * 1024.0 - 3.5);
    Tensor t = Tensor::from_vector({len}, v);
    c.all_reduce_sum(t);
    const std::vector<float> got = t.to_vector();
    bool all = true;
    for (int64_t i = 0; i < len; ++i) {
      double want = 0;
      for (int q = 0; q < n; ++q) want += (i % 97) * 0.25 + q * 1024.0 - 3.5;
      all = all && got[static_cast<size_t>(i)] == static_cast<float>(want);
    }
    CHECK_MESSAGE(all, "length ", len);
  }
  // non-dyadic values: with two ranks a + b == b + a, so both ranks hold the same bits
  Tensor t = Tensor::from_vector({3}, {0.1f * static_cast<float>(r + 1), 1.0f / 3.0f, -2.7f});
  c.all_reduce_sum(t);
  Tensor copy = t.clone();
  c.broadcast(copy, 0);
  CHECK(copy.to_vector() == t.to_vector());
}

TEST_CASE("mpi: broadcast of any dtype, async reduce of several buffers in order") {
  comm::Communicator& c = world();
  Tensor labels = Tensor::from_labels({c.rank() == 0 ? 42 : -1, 7});
  c.broadcast(labels, 0);
  CHECK(labels.to_labels() == std::vector<int32_t>{42, 7});
  std::vector<Tensor> ts;
  std::vector<std::unique_ptr<comm::Work>> works;
  for (int k = 0; k < 5; ++k) {
    ts.push_back(Tensor::full({100}, static_cast<float>(k + c.rank())));
    works.push_back(c.all_reduce_sum_async(ts.back()));
  }
  for (auto& w : works) w->wait();
  for (int k = 0; k < 5; ++k) {
    float want = 0;
    for (int q = 0; q < c.size(); ++q) want += static_cast<float>(k + q);
    CHECK(ts[static_cast<size_t>(k)].to_vector() == std::vector<float>(100, want));
  }
  c.barrier();
}

TEST_CASE("mpi: GradReducer gives every rank the mean gradient") {
  comm::Communicator& c = world();
  std::vector<Tensor> ws;
  for (int i = 0; i < 3; ++i) {
    Tensor w = Tensor::full({16, 16}, 0.125f * static_cast<float>(i + 1));
    w.set_requires_grad(true);
    ws.push_back(w);
  }
  comm::GradReducer reducer(c, ws, 1024);  // one layer per bucket
  CHECK(reducer.buckets() == 3);
  // each rank's own input: the mean over ranks of the per-rank gradients is what finish(1/n) leaves
  const Tensor x = Tensor::full({4, 16}, 0.5f + 0.25f * static_cast<float>(c.rank()));
  reducer.arm();
  Tensor h = x;
  for (const Tensor& w : ws) h = ops::linear(h, w);
  h.backward(Tensor::full(h.shape(), 1.0f));
  reducer.finish(1.0f / static_cast<float>(c.size()));
  CHECK(reducer.started_in_backward() == 3);
  // every rank holds the same gradients
  for (const Tensor& w : ws) {
    Tensor g = w.grad().clone();
    c.broadcast(g, 0);
    CHECK(g.to_vector() == w.grad().to_vector());
  }
}

TEST_CASE("mpi: a collective that misses its deadline is a CommError naming the rank") {
  comm::Communicator& c = world();
  c.barrier();
  if (c.rank() == 0) {
    c.set_timeout(0.5);
    const auto t0 = Clock::now();
    CHECK_THROWS_WITH_AS(c.barrier(), doctest::Contains("barrier did not complete within 0.5 s on rank 0 of"),
                         CommError);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    CHECK(s >= 0.5);
    CHECK(s < 5.0);
    c.set_timeout(60);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // late: rank 0 has given up waiting
    c.barrier();  // matches rank 0's abandoned barrier, which completes in the background
  }
  c.barrier();  // everyone in step again
  Tensor t = Tensor::full({4}, 1.0f);
  c.all_reduce_sum(t);
  CHECK(t.to_vector() == std::vector<float>(4, static_cast<float>(c.size())));
}
