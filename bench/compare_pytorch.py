#!/usr/bin/env python3
"""geoloc vs PyTorch on the CPU, same machine, same invocation, interleaved.

For each case it alternates rounds: one round of PyTorch (timed here), then one round of geoloc's
Google Benchmark case (bench/bench_nn.cpp, run as a subprocess with JSON output), and so on, and
reports the best round of each (the least disturbed by other load on the machine) plus the median.

Cases (float32, `--threads` threads, 2 by default), matching bench_nn.cpp's BM_cmp_* benchmarks:
  resnet18_infer   ResNet-18 backbone (no fc), batch 8, 224x224, eval + inference_mode
  resnet50_infer   ResNet-50 backbone (no fc), batch 8, 224x224, eval + inference_mode
  resnet18_train   ResNet-18 + Linear(512, 1000) + cross-entropy + SGD(0.1, momentum 0.9), batch 64, 64x64
  small_train      geoloc's ResNetConfig::small() + Linear(64, 1000), same step, batch 64, 64x64
PyTorch runs each case in both memory formats (contiguous NCHW and channels_last) and the better
one is the reference for the ratio.

Usage: compare_pytorch.py --bench build/bin/geoloc_bench_nn [--rounds 3] [--threads 2] [--cases a,b]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# PyTorch's OpenMP runtime reads OMP_WAIT_POLICY once, when it is loaded: the option is applied
# before `import torch`. "passive" (threads sleep between parallel regions instead of spinning) is
# what geoloc's own thread pool does; on a machine shared with other work, spinning costs PyTorch up to
# half its speed, so the default here is the fairer "passive". "default" leaves the variable alone.
_policy = "passive"
for _i, _a in enumerate(sys.argv):
    if _a.startswith("--omp-wait-policy="):
        _policy = _a.split("=", 1)[1]
    elif _a == "--omp-wait-policy" and _i + 1 < len(sys.argv):
        _policy = sys.argv[_i + 1]
if _policy != "default":
    os.environ["OMP_WAIT_POLICY"] = _policy.upper()

import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torchvision  # noqa: E402


# ---------------------------------------------------------------- PyTorch models
def small_resnet():
    """geoloc's ResNetConfig::small(): BasicBlock, layers 2-2-2, width 16, 3x3 stride-2 stem, no pool."""
    from torchvision.models.resnet import BasicBlock, ResNet

    m = ResNet(BasicBlock, [2, 2, 2, 2], width_per_group=64)
    # rebuild with 3 stages of width 16 (torchvision's ResNet is hard-wired to 64..512 and 4 stages)
    m.inplanes = 16
    m.conv1 = tnn.Conv2d(3, 16, 3, 2, 1, bias=False)
    m.bn1 = tnn.BatchNorm2d(16)
    m.maxpool = tnn.Identity()
    m.layer1 = m._make_layer(BasicBlock, 16, 2)
    m.layer2 = m._make_layer(BasicBlock, 32, 2, stride=2)
    m.layer3 = m._make_layer(BasicBlock, 64, 2, stride=2)
    m.layer4 = tnn.Identity()
    m.fc = tnn.Identity()
    return m


def backbone(name):
    if name == "small":
        return small_resnet(), 64
    m = getattr(torchvision.models, name)(weights=None)
    dim = m.fc.in_features
    m.fc = tnn.Identity()
    return m, dim


CASES = {
    # name: (arch, batch, size, train, geoloc benchmark name)
    "resnet18_infer": ("resnet18", 8, 224, False, "BM_cmp_resnet18_inference/8/224"),
    "resnet50_infer": ("resnet50", 8, 224, False, "BM_cmp_resnet50_inference/8/224"),
    "resnet18_train": ("resnet18", 64, 64, True, "BM_cmp_resnet18_train_step/64/64"),
    "small_train": ("small", 64, 64, True, "BM_cmp_small_train_step/64/64"),
}


class TorchCase:
    def __init__(self, arch, batch, size, train, channels_last):
        torch.manual_seed(0)
        body, dim = backbone(arch)
        self.train = train
        self.batch = batch
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
        if train:
            self.model = tnn.Sequential(body, tnn.Linear(dim, 1000)).to(memory_format=fmt)
            self.model.train()
            self.y = torch.arange(batch) * 37 % 1000
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
            self.loss = tnn.CrossEntropyLoss()
        else:
            self.model = body.to(memory_format=fmt).eval()

    def step(self):
        if self.train:
            self.opt.zero_grad(set_to_none=False)
            loss = self.loss(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
        else:
            with torch.inference_mode():
                self.model(self.x)

    def round(self, seconds):
        """images/s over at least `seconds` of steps (after one warm-up step)."""
        self.step()
        n, t0 = 0, time.perf_counter()
        while True:
            self.step()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds and n >= 2:
                return n * self.batch / dt


def geoloc_round(bench, name, seconds, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), GEOLOC_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        # --benchmark_min_time as a plain number of seconds: older Google Benchmark refuses the "2s" form
        cmd = [bench, f"--benchmark_filter=^{name}(/real_time)?$", f"--benchmark_min_time={seconds}",
               f"--benchmark_out={out}", "--benchmark_out_format=json"]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as fh:
            rows = [b for b in json.load(fh)["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    if not rows:
        sys.exit(f"geoloc benchmark {name} did not run (filter matched nothing?)")
    return rows[0]["images/s"], rows[0].get("GFLOP/s", float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path to geoloc_bench_nn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum time of one round")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--peak", type=float, default=0.0,
                    help="one core's measured FMA peak in GFLOP/s (BM_fma_peak): adds a '%% of peak' column "
                         "against peak x threads")
    ap.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
                    help="OMP_WAIT_POLICY for PyTorch (see the top of this file)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
          flush=True)

    results = []
    for case in args.cases.split(","):
        arch, batch, size, train, gname = CASES[case]
        tcases = {fmt: TorchCase(arch, batch, size, train, fmt == "channels_last")
                  for fmt in ("contiguous", "channels_last")}
        t = {fmt: [] for fmt in tcases}
        g, gf = [], []
        for r in range(args.rounds):
            for fmt, tc in tcases.items():
                t[fmt].append(tc.round(args.seconds))
            ips, gflops = geoloc_round(args.bench, gname, args.seconds, args.threads)
            g.append(ips)
            gf.append(gflops)
            print(f"  {case} round {r + 1}: geoloc {g[-1]:.2f}, torch "
                  + ", ".join(f"{k} {v[-1]:.2f}" for k, v in t.items()), flush=True)
        best_fmt = max(t, key=lambda k: max(t[k]))
        row = dict(case=case, geoloc_best=max(g), geoloc_median=statistics.median(g),
                   torch_best=max(t[best_fmt]), torch_median=statistics.median(t[best_fmt]), torch_format=best_fmt,
                   torch_all={k: v for k, v in t.items()}, geoloc_all=g, geoloc_gflops=max(gf))
        row["ratio_best"] = row["geoloc_best"] / row["torch_best"]
        row["ratio_median"] = row["geoloc_median"] / row["torch_median"]
        results.append(row)

    print()
    print("best round of each (the least disturbed by other load); ratio = geoloc / PyTorch")
    print(f"{'case':<16} {'geoloc img/s':>13} {'PyTorch img/s':>14} {'torch format':>14} {'ratio':>7} "
          f"{'(medians)':>10} {'geoloc GFLOP/s':>15}" + (f" {'% of peak':>10}" if args.peak > 0 else ""))
    for r in results:
        print(f"{r['case']:<16} {r['geoloc_best']:>13.2f} {r['torch_best']:>14.2f} {r['torch_format']:>14} "
              f"{r['ratio_best']:>7.2f} {r['ratio_median']:>10.2f} {r['geoloc_gflops']:>15.1f}"
              + (f" {100 * r['geoloc_gflops'] / (args.peak * args.threads):>9.0f}%" if args.peak > 0 else ""))
        if args.peak > 0:
            r["percent_of_peak"] = 100 * r["geoloc_gflops"] / (args.peak * args.threads)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
