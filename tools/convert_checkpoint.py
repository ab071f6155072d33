#!/usr/bin/env python3
"""Converts a PyTorch checkpoint into a geoloc weights file (safetensors, torchvision names, PyTorch
layouts, __metadata__ with format/arch/heads).

Accepted inputs
  * a torchvision ResNet state_dict (.pth): keys conv1.*, bn1.*, layer1.*..layer4.*; `fc.*` is dropped
    unless --fc-head NAME keeps it as head `heads.NAME`;
  * a Lightning checkpoint ({"state_dict": ...}) whose backbone is a Sequential of a ResNet's children:
    model.0.* (conv1), model.1.* (bn1), model.4.*..model.7.* (layer1..layer4), and linear heads
    classifier.N.* (N = 0, 1, ...), named with --heads in that order;
  * a geoloc-named state_dict (heads.<name>.*) is passed through.

    python tools/convert_checkpoint.py in.ckpt out.safetensors --arch resnet50 \\
        --heads coarse:partition,middle:partition,fine:partition,scene:scene

Head specs are NAME[:KIND] with KIND partition (default), scene, country or coords; class counts are read
from the weights. Without --heads, Lightning classifiers are named coarse, middle, fine (three heads) or
cells0, cells1, ... Then `geoloc import --weights OUT --partitions coarse.csv,middle.csv,fine.csv --out M`
makes a model file (docs/import.md).

Loading is safe by default: torch.load(..., weights_only=True), which unpickles only tensors and plain
containers. --unsafe-unpickle allows any Python object, which means running code from the file: use it
only for checkpoints you trust. Needs torch (pip install torch).
"""
import argparse
import re
import sys

import torch

from safetensors_writer import write_safetensors  # tools/, next to this script

_KINDS = ("partition", "scene", "country", "coords")
_SEQ = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_ARCH = {  # blocks per stage -> torchvision name, for guessing --arch
    ("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101"}


def load_state_dict(path, unsafe_unpickle=False):
    if unsafe_unpickle:
        print(f"warning: --unsafe-unpickle: loading '{path}' with full unpickling, which runs any code the file "
              "contains; use it only for checkpoints from a source you trust", file=sys.stderr)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_unpickle)
    except Exception as e:  # torch raises UnpicklingError (or RuntimeError) for objects outside the allow-list
        if unsafe_unpickle:
            sys.exit(f"{path}: cannot load: {e}")
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        why = [ln for ln in lines if "Unsupported global" in ln or "WeightsUnpickler error" in ln]
        first = (why or lines or [type(e).__name__])[0]
        sys.exit(f"{path}: cannot load with weights_only=True (the safe loader): {first}\n"
                 "The checkpoint holds Python objects beyond tensors and plain containers (e.g. a Lightning "
                 "AttributeDict in its hyper-parameters). If you trust its source, rerun with --unsafe-unpickle, "
                 "which runs code from the file.")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        sys.exit(f"{path}: not a state_dict or a checkpoint with one")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def rename(sd, head_specs, fc_head):
    out, heads_found = {}, {}
    for k, v in sd.items():
        m = re.match(r"^(?:model\.)?model\.(\d+)\.(.*)$", k) or re.match(r"^model\.(\d+)\.(.*)$", k)
        if m and m.group(1) in _SEQ:
            out[f"{_SEQ[m.group(1)]}.{m.group(2)}"] = v
            continue
        m = re.match(r"^(?:model\.)?classifier\.(\d+)\.(weight|bias)$", k)
        if m:
            heads_found.setdefault(int(m.group(1)), {})[m.group(2)] = v
            continue
        if re.match(r"^(conv1|bn1|layer[1-4])\.", k) or k.startswith("heads."):
            out[k] = v
            continue
        if k.startswith("fc.") and fc_head:
            out[f"heads.{fc_head}.{k[3:]}"] = v
            continue
        if k.startswith("fc."):
            continue
        sys.exit(f"unexpected key '{k}' {list(v.shape)}: not a ResNet backbone or head tensor")
    idx = sorted(heads_found)
    if idx and not head_specs:  # ECCV 2018 names its three partitionings coarse, middle, fine
        names = ["coarse", "middle", "fine"] if len(idx) == 3 else [f"cells{i}" for i in range(len(idx))]
        head_specs = [(n, "partition") for n in names]
    if idx and len(idx) != len(head_specs):
        sys.exit(f"checkpoint has {len(idx)} classifier heads (indices {idx}); --heads names {len(head_specs)}")
    for i, (name, _) in zip(idx, head_specs):
        for part, t in heads_found[i].items():
            out[f"heads.{name}.{part}"] = t
    return out, head_specs


def guess_arch(sd):
    block = "bottleneck" if any(k.endswith("conv3.weight") for k in sd) else "basic"
    layers = []
    for s in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{s}.")}
        if not blocks:
            break
        layers.append(max(blocks) + 1)
    width = sd["conv1.weight"].shape[0]
    k = sd["conv1.weight"].shape[2]
    if width == 64 and k == 7 and (block, tuple(layers)) in _ARCH:
        return _ARCH[(block, tuple(layers))]
    # stride and max-pool cannot be read from weights: assume torchvision's stem
    return f"resnet:{block}:{'-'.join(map(str, layers))}:w{width}:k{k}s2:pool"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--arch", help="resnet18|resnet34|resnet50|resnet101|small|resnet:... (default: guessed)")
    ap.add_argument("--heads", default="", help="comma-separated NAME[:KIND] for classifier.0, classifier.1, ...")
    ap.add_argument("--fc-head", default="", help="keep a torchvision fc layer as this head")
    ap.add_argument("--unsafe-unpickle", action="store_true",
                    help="load with full unpickling (torch.load weights_only=False): runs code from the file; "
                         "only for trusted checkpoints that the safe loader refuses")
    a = ap.parse_args()

    specs = []
    for item in filter(None, a.heads.split(",")):
        name, _, kind = item.partition(":")
        kind = kind or "partition"
        if kind not in _KINDS or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            sys.exit(f"--heads: bad item '{item}' (NAME[:partition|scene|country|coords])")
        specs.append((name, kind))
    sd, specs = rename(load_state_dict(a.input, a.unsafe_unpickle), specs, a.fc_head)
    if "conv1.weight" not in sd:
        sys.exit(f"{a.input}: no conv1.weight after renaming: not a ResNet checkpoint")
    kinds = dict(specs)
    if a.fc_head:
        kinds.setdefault(a.fc_head, "partition")
    heads = []
    for k, v in sd.items():
        m = re.match(r"^heads\.([^.]+)\.weight$", k)
        if m:
            kind = kinds.get(m.group(1), "partition")
            heads.append(f"{m.group(1)}:{kind}:{v.shape[0]}")
    arch = a.arch or guess_arch(sd)
    write_safetensors(a.output, sd, {"format": "geoloc-geonet/1", "arch": arch, "heads": ",".join(heads)})
    print(f"{a.output}: {len(sd)} tensors, arch {arch}, heads {','.join(heads) or '(none)'}")


if __name__ == "__main__":
    main()
