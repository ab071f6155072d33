#!/usr/bin/env python3
"""Generates the PyTorch parity fixtures of tests/nn (committed under tests/fixtures/).

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision numpy pillow
    /tmp/torchvenv/bin/python tools/make_parity_fixtures.py --out tests/fixtures

Outputs
  resnet_names.json          parameter and buffer names + shapes (PyTorch layout) of torchvision's
                             resnet18/34/50/101 without `fc` and without num_batches_tracked.
  <model>_weights.safetensors  a GeoNet's weights: torchvision names, PyTorch layouts, __metadata__
                             (arch, heads), random weights and randomised BN statistics.
  <model>_expected.safetensors input (NCHW), labels, eval-mode outputs, and one training step:
                             train-mode outputs, the loss, every parameter's gradient, updated BN stats; computed
                             in float64 from the float32 weights and input, stored as float32.

The models are torchvision's own BasicBlock/Bottleneck classes assembled with a reduced base width
(full-size weights would be tens of MB): resnet18_w8 (ResNet-18 topology, width 8) and resnet50_w4
(ResNet-50 topology, width 4). The loss is the geoloc multitask default: the sum of the partition
heads' cross-entropies plus the scene cross-entropy, which ignores label -1.
"""
import argparse
import copy
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

from safetensors_writer import write_safetensors  # tools/, next to this script


def randomise_bn(model, g):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)


def state_with_names(model):
    return {k: v for k, v in model.state_dict().items()}


def make_model_fixture(out, name, block, layers, width, arch, heads, n, size, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model = GeoNetTorch(block, layers, width, heads)
    randomise_bn(model, g)
    meta = {"format": "geoloc-geonet/1", "arch": arch, "heads": ",".join(f"{h}:{k}:{c}" for h, k, c in heads)}
    write_safetensors(os.path.join(out, f"{name}_weights.safetensors"), state_with_names(model), meta)

    x = torch.randn(n, 3, size, size, generator=g)
    labels = {}
    for h, kind, c in heads:
        lab = torch.randint(0, c, (n,), generator=g, dtype=torch.int64)
        if kind == "scene":
            lab[1] = -1  # an unknown scene: no scene loss from that sample
        labels[h] = lab
    exp = {"input": x}
    for h in labels:
        exp[f"labels.{h}"] = labels[h].to(torch.int32)

    # The reference runs in float64 (weights and input are exact float32 values), so the tests measure
    # geoloc's float32 error against the exact result rather than against PyTorch's own float32 rounding.
    model = copy.deepcopy(model).double()
    x64 = x.double()
    model.eval()
    with torch.no_grad():
        emb, logits = model(x64)
    exp["eval.embedding"] = emb
    for h, t in logits.items():
        exp[f"eval.heads.{h}"] = t
    exp = {k: (v.float() if v.dtype == torch.float64 else v) for k, v in exp.items()}

    model.train()
    emb, logits = model(x64)
    loss = sum(F.cross_entropy(logits[h], labels[h], ignore_index=-1) for h, _, _ in heads)
    loss.backward()
    exp["train.embedding"] = emb.detach().float()
    exp["train.loss"] = loss.detach().reshape(1).float()
    for pname, p in model.named_parameters():
        exp[f"grad.{pname}"] = p.grad.float()
    for bname, b in model.named_buffers():
        if bname.endswith("running_mean") or bname.endswith("running_var"):
            exp[f"train.{bname}"] = b.float()
    write_safetensors(os.path.join(out, f"{name}_expected.safetensors"), exp, {"loss": "sum of head cross-entropies"})
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, loss {loss.item():.6f}")
    return model


def names_json(out):
    res = {}
    for arch in ["resnet18", "resnet34", "resnet50", "resnet101"]:
        m = getattr(torchvision.models, arch)(weights=None)
        params = [[k, list(v.shape)] for k, v in m.named_parameters() if not k.startswith("fc.")]
        bufs = [[k, list(v.shape)] for k, v in m.named_buffers() if not k.endswith("num_batches_tracked")]
        res[arch] = {"parameters": params, "buffers": bufs}
        # Our assembly of torchvision's blocks must name things as torchvision's ResNet does.
        block = BasicBlock if arch in ("resnet18", "resnet34") else Bottleneck
        layers = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3],
                  "resnet101": [3, 4, 23, 3]}[arch]
        ours = GeoNetTorch(block, layers, 64, [])
        assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == \
            [[k, list(v.shape)] for k, v in m.state_dict().items() if not k.startswith("fc.")], arch
    with open(os.path.join(out, "resnet_names.json"), "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__, "models": res}, f,
                  separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    names_json(a.out)
    make_model_fixture(a.out, "resnet18_w8", BasicBlock, [2, 2, 2, 2], 8, "resnet:basic:2-2-2-2:w8:k7s2:pool",
                       [("cells_coarse", "partition", 11), ("cells_fine", "partition", 17), ("scene", "scene", 3)],
                       n=4, size=64, seed=18)
    make_model_fixture(a.out, "resnet50_w4", Bottleneck, [3, 4, 6, 3], 4, "resnet:bottleneck:3-4-6-3:w4:k7s2:pool",
                       [("cells", "partition", 9), ("scene", "scene", 3)], n=2, size=64, seed=50)


if __name__ == "__main__":
    main()
