// Synchronised batch norm (ops::batch_norm_sync, SyncBatchNormGuard): processes simulated by threads that share
// an in-memory all-reduce. Splitting a batch between them, each running the op on its rows, must give what one
// process gives on the whole batch: the same outputs, running statistics, input gradients and (summed over the
// processes) parameter gradients. The real multi-process run is tests/distributed (mpirun -np 2 --sync-bn).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "geoloc/ops.hpp"
#include "test_inputs.hpp"

using namespace geoloc;

namespace {

// An all-reduce between `size` threads: each adds its tensor (in double), the last to arrive publishes the sum,
// every one copies it back. Rounds are counted, so a fast thread cannot overwrite a slow one's result.
class ThreadAllReduce {
 public:
  explicit ThreadAllReduce(int size) : size_(size) {}
  void sum(const Tensor& t) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t round = round_;
    if (arrived_ == 0) acc_.assign(static_cast<size_t>(t.numel()), 0.0);
    if (acc_.size() != static_cast<size_t>(t.numel())) throw std::runtime_error("all-reduce of different sizes");
    const float* p = t.data<float>();
    for (size_t i = 0; i < acc_.size(); ++i) acc_[i] += p[i];
    ++calls_;
    if (++arrived_ == size_) {
      result_.assign(acc_.begin(), acc_.end());
      arrived_ = 0;
      ++round_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return round_ != round; });
    }
    std::copy(result_.begin(), result_.end(), t.data<float>());
  }
  int calls() const { return calls_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int size_, arrived_ = 0, calls_ = 0;
  int64_t round_ = 0;
  std::vector<double> acc_;
  std::vector<float> result_;
};

// Rows [r0, r1) of x's first axis, as a new tensor.
Tensor rows_of(const Tensor& x, int64_t r0, int64_t r1) {
  const int64_t per = x.numel() / x.dim(0);
  const std::vector<float> v = x.to_vector();
  Shape s = x.shape();
  s[0] = r1 - r0;
  return Tensor::from_vector(s, std::vector<float>(v.begin() + r0 * per, v.begin() + r1 * per));
}

Tensor with_grad(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

struct Result {
  std::vector<float> y, dx, dres, dgamma, dbeta, rm, rv;
};

// One process's share: its rows of x (and of the residual and the loss weights), the op through the guard, and
// a loss that is its share of the whole batch's (sum of w * y over its rows, / the whole batch's element count).
Result run_share(const Tensor& x, const Tensor& residual, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                 const Tensor& rm0, const Tensor& rv0, bool act, double total, const ops::CrossReplica* replicas) {
  Tensor xs = with_grad(x.clone()), g = with_grad(gamma.clone()), b = with_grad(beta.clone());
  Tensor res = residual.defined() ? with_grad(residual.clone()) : Tensor();
  Tensor rm = rm0.clone(), rv = rv0.clone();
  Tensor y;
  {
    std::unique_ptr<ops::SyncBatchNormGuard> guard;
    if (replicas) guard = std::make_unique<ops::SyncBatchNormGuard>(*replicas);
    y = act ? ops::batch_norm_act(xs, g, b, rm, rv, 0.1f, 1e-5f, res, true)
            : ops::batch_norm(xs, g, b, rm, rv, true, 0.1f, 1e-5f);
  }
  // sum(w * y) / total through the ops: mse_loss(y - w... ) would not be linear; use (y + w)^2 - (y - w)^2 = 4 w y
  const Tensor plus = ops::add(y, w), minus = ops::add(y, ops::scale(w, -1.0f));
  const double n = static_cast<double>(y.numel());
  Tensor loss = ops::weighted_sum({ops::mse_loss(plus, Tensor::zeros(y.shape())), ops::mse_loss(minus, Tensor::zeros(y.shape()))},
                                  {static_cast<float>(n / (4 * total)), static_cast<float>(-n / (4 * total))});
  loss.backward();
  Result r;
  r.y = y.to_vector();
  r.dx = xs.grad().to_vector();
  if (res.defined()) r.dres = res.grad().to_vector();
  r.dgamma = g.grad().to_vector();
  r.dbeta = b.grad().to_vector();
  r.rm = rm.to_vector();
  r.rv = rv.to_vector();
  return r;
}

void check_split(const Shape& shape, const std::vector<int64_t>& cuts, bool act) {
  CAPTURE(shape.str());
  CAPTURE(act);
  std::mt19937 rng(7);
  const int64_t c = shape[-1];
  const Tensor x = test::random_tensor(shape, rng, -1.0f, 3.0f), w = test::random_tensor(shape, rng);
  const Tensor residual = act ? test::random_tensor(shape, rng) : Tensor();
  const Tensor gamma = test::random_tensor({c}, rng, 0.5f, 1.5f), beta = test::random_tensor({c}, rng);
  const Tensor rm = test::random_tensor({c}, rng, -0.2f, 0.2f), rv = test::random_tensor({c}, rng, 0.5f, 2.0f);
  const double total = static_cast<double>(x.numel());
  const Result whole = run_share(x, residual, w, gamma, beta, rm, rv, act, total, nullptr);

  const int procs = static_cast<int>(cuts.size()) - 1;
  ThreadAllReduce reduce(procs);
  std::vector<Result> parts(procs);
  std::vector<std::exception_ptr> errors(procs);
  std::vector<std::thread> threads;
  for (int p = 0; p < procs; ++p)
    threads.emplace_back([&, p] {
      try {
        const ops::CrossReplica replicas{[&](const Tensor& t) { reduce.sum(t); }, procs, p};
        const int64_t r0 = cuts[p], r1 = cuts[p + 1];
        parts[p] = run_share(rows_of(x, r0, r1), act ? rows_of(residual, r0, r1) : Tensor(), rows_of(w, r0, r1), gamma,
                             beta, rm, rv, act, total, &replicas);
      } catch (...) {
        errors[p] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  CHECK(reduce.calls() == 2 * procs);  // one all-reduce in forward, one in backward, per process

  std::vector<float> y, dx, dres, dgamma(c, 0.0f), dbeta(c, 0.0f);
  for (const Result& r : parts) {
    y.insert(y.end(), r.y.begin(), r.y.end());
    dx.insert(dx.end(), r.dx.begin(), r.dx.end());
    dres.insert(dres.end(), r.dres.begin(), r.dres.end());
    for (int64_t j = 0; j < c; ++j) {
      dgamma[j] += r.dgamma[j];
      dbeta[j] += r.dbeta[j];
    }
    // every process ends with the whole batch's running statistics
    CHECK(max_abs_diff(r.rm, whole.rm) <= 1e-6);
    CHECK(max_abs_diff(r.rv, whole.rv) <= 1e-5);
  }
  CHECK(max_abs_diff(y, whole.y) <= 2e-5);
  CHECK(max_abs_diff(dx, whole.dx) <= 1e-6);
  if (act) CHECK(max_abs_diff(dres, whole.dres) <= 1e-7);
  CHECK(max_abs_diff(dgamma, whole.dgamma) <= 1e-6);
  CHECK(max_abs_diff(dbeta, whole.dbeta) <= 1e-6);

  // without the guard each process normalises with its own statistics: far from the whole batch (the test
  // above can fail)
  const Result local = run_share(rows_of(x, cuts[0], cuts[1]), act ? rows_of(residual, cuts[0], cuts[1]) : Tensor(),
                                 rows_of(w, cuts[0], cuts[1]), gamma, beta, rm, rv, act, total, nullptr);
  const std::vector<float> head(whole.y.begin(), whole.y.begin() + static_cast<int64_t>(local.y.size()));
  CHECK(max_abs_diff(local.y, head) > 1e-2);
}

}  // namespace

TEST_CASE("batch_norm_sync: processes that split a batch compute what one process computes on all of it") {
  check_split({6, 5, 4, 8}, {0, 2, 6}, false);       // NHWC, 2 and 4 images
  check_split({6, 5, 4, 8}, {0, 3, 6}, true);        // the fused op's sync path: + residual, ReLU
  check_split({10, 6}, {0, 3, 4, 10}, false);        // [N,C], three processes of 3, 1 and 6 rows
}

TEST_CASE("batch_norm_sync: one process is batch_norm; errors name the problem") {
  std::mt19937 rng(3);
  const Tensor x = test::random_tensor({4, 3, 3, 5}, rng), g = test::random_tensor({5}, rng, 0.5f, 1.5f),
               b = test::random_tensor({5}, rng);
  Tensor rm1 = Tensor::zeros({5}), rv1 = Tensor::full({5}, 1.0f), rm2 = Tensor::zeros({5}), rv2 = Tensor::full({5}, 1.0f);
  const ops::CrossReplica one{[](const Tensor&) {}, 1, 0};
  const Tensor a = ops::batch_norm(x, g, b, rm1, rv1, true), s = ops::batch_norm_sync(x, g, b, rm2, rv2, 0.1f, 1e-5f, one);
  CHECK(max_abs_diff(a.to_vector(), s.to_vector()) <= 1e-5);
  CHECK(max_abs_diff(rm1.to_vector(), rm2.to_vector()) <= 1e-7);
  CHECK(max_abs_diff(rv1.to_vector(), rv2.to_vector()) <= 1e-6);

  CHECK_THROWS_WITH_AS(ops::SyncBatchNormGuard(ops::CrossReplica{}), doctest::Contains("needs an all-reduce"),
                       ValueError);
  CHECK_THROWS_WITH_AS(ops::batch_norm_sync(x, g, b, rm2, rv2, 0.1f, 1e-5f, ops::CrossReplica{[](const Tensor&) {}, 2, 2}),
                       doctest::Contains("0 <= rank < size"), ValueError);
  // one row in all: no variance to normalise with
  const Tensor row = test::random_tensor({1, 5}, rng);
  CHECK_THROWS_WITH_AS(ops::batch_norm_sync(row, g, b, rm2, rv2, 0.1f, 1e-5f, one),
                       doctest::Contains("more than one value per channel over all 1 processes"), ValueError);
  // an all-reduce that fails leaves the running statistics as they were
  const std::vector<float> before = rm2.to_vector();
  const ops::CrossReplica broken{[](const Tensor&) { throw std::runtime_error("peer gone"); }, 2, 0};
  CHECK_THROWS_WITH(ops::batch_norm_sync(x, g, b, rm2, rv2, 0.1f, 1e-5f, broken), "peer gone");
  CHECK(rm2.to_vector() == before);
  // guards nest and restore: after the guard, batch_norm is per process again
  {
    ops::SyncBatchNormGuard outer(ops::CrossReplica{[](const Tensor&) { throw std::runtime_error("outer"); }, 1, 0});
    {
      ops::SyncBatchNormGuard inner(one);
      CHECK_NOTHROW(ops::batch_norm(x, g, b, rm2, rv2, true));
    }
    CHECK_THROWS_WITH(ops::batch_norm(x, g, b, rm2, rv2, true), "outer");
    CHECK_NOTHROW(ops::batch_norm(x, g, b, rm2, rv2, false));  // eval mode never synchronises
  }
  CHECK_NOTHROW(ops::batch_norm(x, g, b, rm2, rv2, true));
}
