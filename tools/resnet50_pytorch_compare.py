#!/usr/bin/env python3
"""ResNet-50 GPU training/inference throughput of PyTorch eager, the reference geoloc's CUDA backend is
to be compared with (same machine, same call, as a ratio).

NOT YET RUN (written 2026-11-22 on a machine without a GPU). The geoloc side is `BM_resnet50/<batch>/<train>`
in bench/bench_cuda.cpp (ResNet-50 v1.5 built from geoloc::ops, fp32, NHWC); tools/run_gpu_checks.sh runs
both in the same call and prints the ratio. geoloc has no bf16 training path through ops:: yet, so the
amp_bf16 numbers are the target, not a like-for-like comparison.

Variants, batch 64 and 128 at 224x224, channels_last:
  fp32      : TF32 disabled (torch.backends.{cuda.matmul,cudnn}.allow_tf32 = False): geoloc's fp32 path
  amp_bf16  : torch.autocast(bfloat16), float32 master weights: the target of geoloc's bf16 path
Training step = forward + cross-entropy + backward + SGD(momentum 0.9). Timed with CUDA events after
warm-up, median of --iters runs.
"""
import argparse
import json
import statistics

import torch
import torchvision


def bench(model, x, y, train, amp, iters, warmup):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if train else None
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            if train:
                out = model(x)
                loss = loss_fn(out.float(), y)
            else:
                with torch.no_grad():
                    model(x)
        if train:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.train(train)
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    ms = statistics.median(times)
    return {"ms": ms, "images_per_s": x.shape[0] / (ms / 1e3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="resnet50_pytorch.json")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", default="64,128")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "cudnn": torch.backends.cudnn.version(), "runs": []}
    for batch in [int(b) for b in args.batches.split(",")]:
        for variant in ("fp32", "amp_bf16"):
            amp = variant == "amp_bf16"
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            model = torchvision.models.resnet50().to(dev).to(memory_format=torch.channels_last)
            x = torch.randn(batch, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
            y = torch.randint(0, 1000, (batch,), device=dev)
            for train in (True, False):
                r = bench(model, x, y, train, amp, args.iters, args.warmup)
                r.update({"batch": batch, "variant": variant, "mode": "train" if train else "inference"})
                results["runs"].append(r)
                print(f"{variant:9s} {r['mode']:9s} batch {batch:4d}: {r['ms']:8.2f} ms  {r['images_per_s']:8.0f} img/s")
            del model, x, y
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
