// GradReducer (comm.hpp): bucketed all-reduce of gradients, started from autograd's grad-ready hook.
#include <optional>
#include <unordered_map>

#include "geoloc/autograd.hpp"
#include "geoloc/comm.hpp"
#include "geoloc/dispatch.hpp"

namespace geoloc::comm {

struct GradReducer::Impl {
  struct Slot {
    Tensor param;
    size_t bucket = 0;
    Tensor view;  // the parameter's place in its bucket
    Tensor flag;  // one float after the bucket's gradients: 1 where this rank had a gradient, summed over ranks
    bool packed = false;
    bool had_grad = false;
  };
  struct Bucket {
    Tensor flat;
    std::vector<size_t> slots;
    size_t ready = 0;
    std::unique_ptr<Work> work;
  };
  Communicator& comm;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::unordered_map<const TensorImpl*, size_t> slot_of;
  size_t next_start = 0, started_in_backward = 0;
  std::optional<GradReadyHookGuard> hook;

  explicit Impl(Communicator& c) : comm(c) {}

  void pack(Slot& s) {
    const Tensor g = s.param.grad();
    s.had_grad = g.defined();
    if (s.had_grad) {
      GEOLOC_DISPATCH(g.device(), convert, g, s.view);  // a copy (or bf16 -> f32), queued on the device
    } else {
      GEOLOC_DISPATCH(s.view.device(), fill, s.view, 0.0f);  // no gradient here: contributes zeros
    }
    GEOLOC_DISPATCH(s.flag.device(), fill, s.flag, s.had_grad ? 1.0f : 0.0f);
    s.packed = true;
    ++buckets[s.bucket].ready;
  }

  // Starts every complete bucket, in index order only: all ranks issue the same collectives in the same order.
  void start_ready() {
    while (next_start < buckets.size() && buckets[next_start].ready == buckets[next_start].slots.size()) {
      buckets[next_start].work = comm.all_reduce_sum_async(buckets[next_start].flat);
      ++next_start;
    }
  }

  void on_ready(const Tensor& leaf) {
    auto it = slot_of.find(&leaf.impl());
    if (it == slot_of.end() || slots[it->second].packed) return;
    pack(slots[it->second]);
    const size_t before = next_start;
    start_ready();
    started_in_backward += next_start - before;
    for (size_t b = 0; b < before; ++b) buckets[b].work->test();  // MPI progresses inside its calls
  }
};

GradReducer::GradReducer(Communicator& comm, std::vector<Tensor> params, size_t bucket_bytes)
    : impl_(std::make_unique<Impl>(comm)) {
  GEOLOC_CHECK(bucket_bytes > 0, ValueError, "GradReducer: bucket size must be positive");
  if (comm.size() == 1) {  // nothing to exchange: finish() only scales
    for (auto& p : params) {
      impl_->slots.emplace_back();
      impl_->slots.back().param = p;
    }
    return;
  }
  Device dev;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    check_defined(p, "GradReducer parameter");
    check_f32(p, "GradReducer parameter");
    GEOLOC_CHECK(i == 0 || p.device() == dev, ValueError, "GradReducer: parameters on ", dev.str(), " and ",
                 p.device().str());
    dev = p.device();
  }
  // Reverse order: backward produces the gradients of the last layers first.
  std::vector<std::vector<size_t>> groups;
  size_t bytes = bucket_bytes;
  for (size_t k = params.size(); k-- > 0;) {
    if (bytes >= bucket_bytes) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(k);
    bytes += params[k].nbytes();
  }
  impl_->slots.resize(params.size());
  for (size_t b = 0; b < groups.size(); ++b) {
    int64_t n = 0;
    for (size_t k : groups[b]) n += params[k].numel();
    Impl::Bucket bucket;
    bucket.flat = Tensor::zeros({n + static_cast<int64_t>(groups[b].size())}, DType::F32, dev);
    int64_t flag_off = n;
    int64_t off = 0;
    for (size_t k : groups[b]) {
      auto& s = impl_->slots[k];
      s.param = params[k];
      s.bucket = b;
      s.view = Tensor::borrow(static_cast<float*>(bucket.flat.raw()) + off, params[k].shape(), DType::F32, dev,
                              bucket.flat.impl_ptr());
      s.flag = Tensor::borrow(static_cast<float*>(bucket.flat.raw()) + flag_off++, {1}, DType::F32, dev,
                              bucket.flat.impl_ptr());
      off += params[k].numel();
      GEOLOC_CHECK(impl_->slot_of.emplace(&params[k].impl(), k).second, ValueError,
                   "GradReducer: a parameter is listed twice");
    }
    bucket.slots = groups[b];
    impl_->buckets.push_back(std::move(bucket));
  }
}

GradReducer::~GradReducer() = default;

size_t GradReducer::buckets() const { return impl_->buckets.size(); }
size_t GradReducer::started_in_backward() const { return impl_->started_in_backward; }

void GradReducer::arm() {
  Impl& m = *impl_;
  if (m.comm.size() == 1) return;
  for (auto& s : m.slots) s.packed = false;
  for (auto& b : m.buckets) {
    b.ready = 0;
    b.work.reset();
  }
  m.next_start = 0;
  m.started_in_backward = 0;
  m.hook.reset();
  m.hook.emplace([&m](const Tensor& leaf) { m.on_ready(leaf); });
}

void GradReducer::finish(float scale) {
  Impl& m = *impl_;
  if (m.comm.size() == 1) {
    if (scale != 1.0f)
      for (auto& s : m.slots)
        if (const Tensor g = s.param.grad(); g.defined()) GEOLOC_DISPATCH(g.device(), scale, g, scale, g);
    return;
  }
  GEOLOC_CHECK(m.hook.has_value(), Error, "GradReducer::finish without arm()");
  m.hook.reset();
  for (auto& s : m.slots)
    if (!s.packed) m.pack(s);
  m.start_ready();
  for (auto& b : m.buckets) b.work->wait();
  for (auto& s : m.slots) {
    // No gradient here: one is written only where another rank had one (then every rank writes it, so the
    // replicas stay equal); where no rank had one the parameter keeps none, as in one process (the
    // optimiser skips it).
    if (!s.had_grad && s.flag.to_vector()[0] == 0.0f) continue;
    Tensor g = s.param.grad();
    if (!g.defined() || g.dtype() != DType::F32) {
      g = Tensor::zeros(s.param.shape(), DType::F32, s.param.device());
      s.param.impl().grad = g.impl_ptr();
    }
    GEOLOC_DISPATCH(g.device(), scale, s.view, scale, g);
  }
}

}  // namespace geoloc::comm
