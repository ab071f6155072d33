// A whole small network trained for 3 SGD steps on the GPU and on the CPU from the same weights:
// conv-bn-relu-conv-bn-add-relu-maxpool-conv(stride 2)-gap-linear-cross-entropy, built from geoloc::ops
// with autograd, updated with the backend's sgd_step. Tolerance: losses rtol 1e-4; parameters and
// running statistics after 3 steps rtol 1e-3 + atol 1e-4 (fp32 on both sides; only summation orders
// differ, and 3 steps of momentum SGD amplify that a little).
#include <doctest/doctest.h>

#include "cuda_test_util.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;
using namespace geoloc::test;

namespace {
struct Net {
  std::vector<Tensor> params;   // trained, in a fixed order
  std::vector<Tensor> buffers;  // batch-norm running statistics
  std::vector<Tensor> momentum;
  Tensor& p(int i) { return params[i]; }
};

Net make_net(Device d) {
  Net n;
  uint32_t seed = 1000;
  auto param = [&](const Shape& s, float scale, float shift = 0.0f) {
    n.params.push_back(randn(s, seed++, scale, shift).to(d).set_requires_grad(true));
  };
  param({8, 3, 3, 3}, 0.3f);   // 0 conv1
  param({8}, 0.1f, 1.0f);      // 1 bn1 gamma
  param({8}, 0.1f);            // 2 bn1 beta
  param({8, 3, 3, 8}, 0.2f);   // 3 conv2
  param({8}, 0.1f, 1.0f);      // 4 bn2 gamma
  param({8}, 0.1f);            // 5 bn2 beta
  param({16, 3, 3, 8}, 0.2f);  // 6 conv3 (stride 2)
  param({16}, 0.1f);           // 7 conv3 bias
  param({5, 16}, 0.3f);        // 8 fc weight
  param({5}, 0.1f);            // 9 fc bias
  for (int i = 0; i < 2; ++i) {
    n.buffers.push_back(Tensor::zeros({8}, DType::F32, d));
    n.buffers.push_back(Tensor::full({8}, 1.0f, d));
  }
  for (const Tensor& t : n.params) n.momentum.push_back(Tensor::zeros(t.shape(), DType::F32, d));
  return n;
}

Tensor forward(Net& n, const Tensor& x, const Tensor& labels) {
  Tensor h = ops::conv2d(x, n.p(0), Tensor(), 1, 1);
  h = ops::relu(ops::batch_norm(h, n.p(1), n.p(2), n.buffers[0], n.buffers[1], true));
  Tensor r = h;
  h = ops::conv2d(h, n.p(3), Tensor(), 1, 1);
  h = ops::batch_norm(h, n.p(4), n.p(5), n.buffers[2], n.buffers[3], true);
  h = ops::add_relu(h, r);
  h = ops::max_pool2d(h, 3, 2, 1);
  h = ops::conv2d(h, n.p(6), n.p(7), 2, 1);
  h = ops::global_avg_pool(h);
  h = ops::linear(h, n.p(8), n.p(9));
  return ops::cross_entropy(h, labels);
}

void sgd(Net& n, bool first) {
  for (size_t i = 0; i < n.params.size(); ++i) {
    const Tensor& p = n.params[i];
    const Tensor g = p.grad();
    REQUIRE(g.defined());
    if (p.device().is_cuda())
      cuda::sgd_step({OptimSlot{p, g, n.momentum[i], Tensor(), 1e-4f}}, 0.05f, 0.9f, 0.0f, false, first);
    else
      cpu::sgd_step({OptimSlot{p, g, n.momentum[i], Tensor(), 1e-4f}}, 0.05f, 0.9f, 0.0f, false, first);
    Tensor(p).zero_grad();
  }
}
}  // namespace

TEST_CASE("a small ResNet-style network trains identically on GPU and CPU for 3 SGD steps") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  Net cpu_net = make_net(Device::cpu()), gpu_net = make_net(gpu());
  Tensor x = randn({6, 12, 12, 3}, 7);
  const Tensor labels = Tensor::from_labels({0, 4, 2, -1, 1, 3});
  const Tensor xg = x.to(gpu()), lg = labels.to(gpu());
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step);
    Tensor lc = forward(cpu_net, x, labels), lgpu = forward(gpu_net, xg, lg);
    const float a = lc.item(), b = lgpu.item();
    MESSAGE("step " << step << " loss cpu " << a << " gpu " << b);
    CHECK(b == doctest::Approx(a).epsilon(1e-4));
    lc.backward();
    lgpu.backward();
    sgd(cpu_net, step == 0);
    sgd(gpu_net, step == 0);
  }
  for (size_t i = 0; i < cpu_net.params.size(); ++i) {
    INFO("parameter " << i);
    check_close(gpu_net.params[i], cpu_net.params[i], 1e-3f, 1e-4f, "parameter after 3 steps");
    check_close(gpu_net.momentum[i], cpu_net.momentum[i], 1e-3f, 1e-4f, "momentum after 3 steps");
  }
  for (size_t i = 0; i < cpu_net.buffers.size(); ++i)
    check_close(gpu_net.buffers[i], cpu_net.buffers[i], 1e-3f, 1e-4f, "running statistics");
}
