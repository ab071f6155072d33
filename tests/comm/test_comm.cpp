// The communicator interface without MPI: the local back end, the factory, autograd's grad-ready hook, and
// the gradient reducer's bucketing against an in-process stand-in for a second rank.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <vector>

#include "geoloc/autograd.hpp"
#include "geoloc/comm.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;

namespace {
Tensor param(const Shape& s, float v) {
  Tensor t = Tensor::full(s, v);
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("local communicator: one rank, collectives leave the data as it is") {
  auto c = comm::make_local();
  CHECK(c->size() == 1);
  CHECK(c->rank() == 0);
  CHECK(c->kind() == comm::Kind::Local);
  CHECK(c->where() == "rank 0 of 1");
  Tensor t = Tensor::from_vector({3}, {1.5f, -2.0f, 3.25f});
  c->all_reduce_sum(t);
  CHECK(t.to_vector() == std::vector<float>{1.5f, -2.0f, 3.25f});
  c->broadcast(t, 0);
  c->barrier();
  CHECK_THROWS_AS(c->broadcast(t, 1), ValueError);
  Tensor labels = Tensor::from_labels({1, 2});
  CHECK_THROWS_AS(c->all_reduce_sum(labels), ShapeError);  // F32 only
  CHECK_THROWS_AS(c->set_timeout(-1), ValueError);
}

TEST_CASE("create: auto is local outside an MPI launch; unknown kinds are errors") {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"}) ::unsetenv(v);
  CHECK_FALSE(comm::launched_by_mpi());
  CHECK(comm::launched_world_size() == 1);
  CHECK(comm::create("auto")->kind() == comm::Kind::Local);
  CHECK(comm::create("local")->size() == 1);
  CHECK_THROWS_AS(comm::create("gloo"), ValueError);
  if (!comm::has_nccl()) CHECK_THROWS_AS(comm::create("nccl"), CommError);
  if (!comm::has_mpi()) {
    CHECK_THROWS_AS(comm::create("mpi"), CommError);
    ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CHECK(comm::launched_by_mpi());
    CHECK(comm::launched_world_size() == 2);
    // started by mpirun without MPI in the build: two processes would each train alone
    CHECK_THROWS_WITH_AS(comm::create("auto"), doctest::Contains("built without MPI"), CommError);
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
  }
}

TEST_CASE("grad-ready hook: once per reached leaf, when its gradient is final") {
  Tensor w1 = param({2, 3}, 0.5f), b1 = param({2}, 0.1f), w2 = param({1, 2}, -0.25f), unused = param({4}, 1.0f);
  const Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  std::map<const TensorImpl*, int> calls;
  std::map<const TensorImpl*, std::vector<float>> at_call;
  {
    GradReadyHookGuard guard([&](const Tensor& leaf) {
      ++calls[&leaf.impl()];
      at_call[&leaf.impl()] = leaf.grad().to_vector();
    });
    // w2 is used twice (two linear layers): its hook comes after both contributions
    const Tensor h = ops::relu(ops::linear(x, w1, b1));
    const Tensor y = ops::add(ops::linear(h, w2), ops::linear(h, w2));
    ops::scale(y, 1.0f).backward(Tensor::full(y.shape(), 1.0f));
  }
  CHECK(calls.size() == 3);
  for (const Tensor* p : {&w1, &b1, &w2}) {
    CHECK(calls[&p->impl()] == 1);
    CHECK(at_call[&p->impl()] == p->grad().to_vector());  // nothing was added after the hook
  }
  CHECK(calls.count(&unused.impl()) == 0);
  // without a guard, no hook
  calls.clear();
  ops::linear(x, w1, b1).backward(Tensor::full({2, 2}, 1.0f));
  CHECK(calls.empty());
}

namespace {
// A stand-in for two ranks in one process: the "other rank" holds `other_factor` times this rank's data,
// so the sum is (1 + other_factor) x. Records the size of every all-reduce, in the order started, and
// whether backward was still running (hook_depth > 0 while the test's backward runs).
class TwoRanks : public comm::Communicator {
 public:
  struct Op {
    int64_t numel;
    bool during_backward;
  };
  std::vector<Op> ops;
  bool in_backward = false;
  float other_factor = 3.0f;
  bool other_all_ones = false;  // instead: the other rank holds 1 everywhere (a gradient of ones for every parameter)
  comm::Kind kind() const override { return comm::Kind::Mpi; }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  int local_rank() const override { return 0; }
  std::unique_ptr<comm::Work> all_reduce_sum_async(const Tensor& t) override {
    ops.push_back({t.numel(), in_backward});
    struct W : comm::Work {
      Tensor t;
      float f;
      bool ones;
      bool done = false;
      bool test() override {
        if (!done) {
          float* p = t.data<float>();
          for (int64_t i = 0; i < t.numel(); ++i) p[i] += ones ? 1.0f : f * p[i];
          done = true;
        }
        return true;
      }
      void wait() override { test(); }
    };
    auto w = std::make_unique<W>();
    w->t = t;
    w->f = other_factor;
    w->ones = other_all_ones;
    return w;
  }
  void broadcast(const Tensor&, int) override {}
  void barrier(double) override {}
};
}  // namespace

TEST_CASE("GradReducer: buckets in reverse order, started during backward, averaged back into the gradients") {
  // a chain of four layers: backward produces the gradients of layer 3 first
  std::vector<Tensor> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(param({8, 8}, 0.01f * static_cast<float>(i + 1)));  // 256 bytes each
  const Tensor x = Tensor::full({2, 8}, 0.5f);
  auto forward = [&] {
    Tensor h = x;
    for (const Tensor& w : ws) h = ops::linear(h, w);
    return h;
  };
  // expected gradients: one process, same data
  forward().backward(Tensor::full({2, 8}, 1.0f));
  std::vector<std::vector<float>> expected;
  for (Tensor& w : ws) {
    expected.push_back(w.grad().to_vector());
    w.zero_grad();
  }

  TwoRanks two;
  comm::GradReducer r(two, ws, 512);  // two layers per bucket
  CHECK(r.buckets() == 2);
  for (int step = 0; step < 2; ++step) {
    two.ops.clear();
    for (Tensor& w : ws) w.zero_grad();
    r.arm();
    two.in_backward = true;
    forward().backward(Tensor::full({2, 8}, 1.0f));
    two.in_backward = false;
    r.finish(0.25f);  // (1 + 3) x / 4 = x
    REQUIRE(two.ops.size() == 2);
    CHECK(two.ops[0].numel == 128 + 2);  // two layers' gradients and a flag for each
    CHECK(two.ops[1].numel == 128 + 2);
    // the bucket of the last layers started while backward still had the first layers to do; the last
    // bucket completes as backward ends (its last gradient is the very last one produced)
    CHECK(two.ops[0].during_backward);
    CHECK(r.started_in_backward() == 2);
    for (size_t i = 0; i < ws.size(); ++i) CHECK(ws[i].grad().to_vector() == expected[i]);
  }
}

TEST_CASE("GradReducer: parameters without a gradient; one process only scales") {
  Tensor used = param({4}, 1.0f), idle = param({4}, 1.0f);
  TwoRanks two;
  two.other_factor = 1.0f;  // the other rank: the same gradients, and the same lack of one
  comm::GradReducer r(two, {used, idle}, 1 << 20);
  CHECK(r.buckets() == 1);
  r.arm();
  ops::scale(used, 2.0f).backward(Tensor::full({4}, 1.0f));
  r.finish(0.5f);
  CHECK(used.grad().to_vector() == std::vector<float>(4, 2.0f));  // (2 + 2) / 2
  CHECK_FALSE(idle.grad().defined());  // no rank had one: none, as in one process
  REQUIRE(two.ops.size() == 1);
  CHECK(two.ops[0].numel == 8 + 2);  // the gradients and one flag per parameter
  // the other rank had a gradient for `idle`: every rank then writes the reduced one
  two.other_all_ones = true;
  used.zero_grad();
  r.arm();
  ops::scale(used, 2.0f).backward(Tensor::full({4}, 1.0f));
  r.finish(0.5f);
  CHECK(used.grad().to_vector() == std::vector<float>(4, 1.5f));  // (2 + 1) / 2
  REQUIRE(idle.grad().defined());
  CHECK(idle.grad().to_vector() == std::vector<float>(4, 0.5f));  // (0 + 1) / 2

  auto local = comm::make_local();
  comm::GradReducer one(*local, {used}, 1 << 20);
  CHECK(one.buckets() == 0);
  one.arm();
  one.finish(0.5f);
  CHECK(used.grad().to_vector() == std::vector<float>(4, 0.75f));  // 1.5 x 0.5
  CHECK_THROWS_AS(comm::GradReducer(two, {used, used}, 64), ValueError);
}
