#!/usr/bin/env python3
"""Generates the fixtures of `geoloc import` (committed under tests/fixtures/eccv2018/).

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy s2sphere
    /tmp/torchvenv/bin/python tools/make_import_fixtures.py --out tests/fixtures/eccv2018

What it builds, in the layout of Müller-Budack et al.'s ECCV 2018 code (PyTorch Lightning 1.0.1
version; described in /work/shared/formats/eccv2018-geoestimation.md, no code of it used):
  * a checkpoint dict as Lightning's dump_checkpoint writes it (state_dict, epoch, global_step,
    pytorch-lightning_version, optimizer_states, lr_schedulers, callbacks, hparams_name,
    hyper_parameters) with the backbone `model.N.*` (a Sequential of a ResNet's children without
    avgpool and fc) and one linear classifier per partitioning `classifier.i.*`. The ResNet has the
    ResNet-18 topology at width 8 (the fixture stays small), random weights and randomised BN
    statistics. The .ckpt itself is written to a temporary folder, not committed;
  * weights.safetensors: that checkpoint converted by tools/convert_checkpoint.py (the safe loader);
  * cells_coarse.csv, cells_middle.csv, cells_fine.csv: partitionings of random points near five
    cities in the ECCV 2018 CSV format (two leading lines, the header, CRLF line endings), S2 tokens
    from s2sphere 0.2.5 (the version the ECCV 2018 code used), means of the points in each cell;
  * photo_0.png .. photo_2.png: 96x64 RGB pictures (shorter side = the resize, so resizing is the
    identity and the five crops are exact slices on both sides);
  * expected.json: a straightforward re-implementation of the ECCV 2018 prediction in float64 PyTorch:
    Resize(64) (identity) + FiveCrop(56) + Normalize, softmax per head, max (or mean) over the crops,
    the hierarchy matrix M built by their rule (parents of each finest cell's mean, fine to coarse),
    hierarchy score = product of the parents' probabilities, argmax; the top cells of each head.

The C++ tests (tests/cli) run `geoloc import` + `geoloc predict` on these files and compare.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import s2sphere
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
RESIZE, CROP = 64, 56
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CITIES = [(48.85, 2.35), (40.71, -74.0), (-33.86, 151.2), (35.68, 139.69), (-22.9, -43.2)]


# ---------------------------------------------------------------- the network (torchvision's layout)
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


def backbone(width):
    """Sequential(*resnet18(width).children()[:-2]) with avgpool and flatten appended, as build_base_model."""
    layers, cin = [], width
    for i, stride in enumerate((1, 2, 2, 2)):
        cout = width << i
        layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
        cin = cout
    seq = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                        nn.MaxPool2d(3, 2, 1), *layers)
    seq.avgpool = nn.AdaptiveAvgPool2d(1)
    seq.flatten = nn.Flatten(start_dim=1)
    return seq, cin


class MultiPartitioningClassifier(nn.Module):
    def __init__(self, width, classes):
        super().__init__()
        self.model, nfeatures = backbone(width)
        self.classifier = nn.ModuleList([nn.Linear(nfeatures, c) for c in classes])

    def forward(self, x):
        fv = self.model(x)
        return [head(fv) for head in self.classifier]


def randomise(model, g):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
        for head in model.classifier:  # sharper than Linear's default, so that the top cells are well separated
            head.weight.mul_(6.0)


# ---------------------------------------------------------------- partitionings
def cell_of(lat, lng):
    return s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lng))


def partitionings(rng):
    pts = []
    for lat, lng in CITIES:
        for _ in range(30):
            pts.append((lat + rng.normal() * 1.2, lng + rng.normal() * 1.5))
    leaves = [cell_of(*p) for p in pts]

    def group(level_of_point):
        cells = {}
        for p, leaf in zip(pts, leaves):
            lvl = level_of_point(leaf)
            if lvl is None:
                continue
            cells.setdefault(leaf.parent(lvl).to_token(), []).append(p)
        return cells

    coarse = group(lambda leaf: 4)
    middle = group(lambda leaf: 6)
    # fine: a middle cell with >= 4 points is split into its level-8 descendants, else kept (mixed levels)
    fine = group(lambda leaf: 8 if len(middle[leaf.parent(6).to_token()]) >= 4 else 6)
    return [coarse, middle, fine]


def rows(cells):
    out = []
    for token in sorted(cells, key=lambda t: s2sphere.CellId.from_token(t).id()):
        p = np.array(cells[token])
        out.append((token, len(p), float(p[:, 0].mean()), float(p[:, 1].mean())))
    return out


def write_csv(path, rows_, num_images):
    lines = [f"num_images: {num_images}", "min_concept_probability: ---",
             "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean"]
    lines += [f"{i},{t},{n},{lat!r},{lng!r}" for i, (t, n, lat, lng) in enumerate(rows_)]
    with open(path, "wb") as f:
        f.write(("\r\n".join(lines) + "\r\n").encode())


def hierarchy_matrix(parts):
    """M [n_fine, P] by the ECCV 2018 rule: for each finest class, the parent tokens of the cell holding
    its mean, from its own level up to level 2; each partitioning (fine to coarse) takes the first it holds."""
    index = [{t: i for i, (t, *_rest) in enumerate(p)} for p in parts]
    M = []
    for token, _n, lat, lng in parts[-1]:
        level = s2sphere.CellId.from_token(token).level()
        leaf = cell_of(lat, lng)
        row = [None] * len(parts)
        for lvl in range(level, 1, -1):
            tok = leaf.parent(lvl).to_token()
            for p in reversed(range(len(parts))):
                if row[p] is None and tok in index[p]:
                    row[p] = index[p][tok]
            if all(r is not None for r in row):
                break
        if any(r is None for r in row):
            sys.exit(f"fine cell {token} has no ancestor in some partitioning")
        M.append(row)
    return M


# ---------------------------------------------------------------- images
def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def make_image(rng):
    low = rng.uniform(0, 255, size=(4, 6, 3))
    img = np.kron(low, np.ones((16, 16, 1))) + rng.normal(0, 25, size=(64, 96, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def five_crops(img):  # torchvision FiveCrop: tl, tr, bl, br, centre (round-half-even centre offsets)
    h, w, _ = img.shape
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    return [img[:CROP, :CROP], img[:CROP, w - CROP:], img[h - CROP:, :CROP], img[h - CROP:, w - CROP:],
            img[top:top + CROP, left:left + CROP]]


def normalise(crop):
    x = torch.from_numpy(crop.astype(np.float64) / 255.0)
    x = (x - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)
    return x.permute(2, 0, 1)


def top(v, k=5):
    order = sorted(range(len(v)), key=lambda i: (-v[i], i))
    return order[:k]


def min_gap(v, k=6):
    s = sorted(v, reverse=True)[:k]
    return min(a - b for a, b in zip(s, s[1:])) / max(s[0], 1e-300)


def predictions(model64, img, M, parts, agg):
    x = torch.stack([normalise(c) for c in five_crops(img)])
    with torch.no_grad():
        logits = model64(x)
    probs = [F.softmax(l, dim=1) for l in logits]
    probs = [p.max(dim=0).values if agg == "max" else p.mean(dim=0) for p in probs]
    hier = np.ones(len(M))
    for f, row in enumerate(M):
        for p, c in enumerate(row):
            hier[f] *= float(probs[p][c])
    out = {}
    for name, p in zip(("coarse", "middle", "fine"), probs):
        v = p.tolist()
        out[f"{name}_top"] = top(v)
        out[f"{name}_top_probability"] = [v[i] / sum(v) for i in top(v)]  # geoloc renormalises the max
        out[f"{name}_gap"] = min_gap(v)
    h = hier.tolist()
    out["hierarchy_top"] = top(h)
    out["hierarchy_gap"] = min_gap(h)
    pred = out["hierarchy_top"][0]
    out["hierarchy_latitude"], out["hierarchy_longitude"] = parts[-1][pred][2], parts[-1][pred][3]
    f0 = out["fine_top"][0]
    out["fine_latitude"], out["fine_longitude"] = parts[-1][f0][2], parts[-1][f0][3]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures", "eccv2018"))
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed + 1)

    parts = [rows(p) for p in partitionings(rng)]
    num_images = sum(n for _t, n, *_r in parts[0])
    for name, p in zip(("coarse", "middle", "fine"), parts):
        write_csv(os.path.join(a.out, f"cells_{name}.csv"), p, num_images)
    M = hierarchy_matrix(parts)

    model = MultiPartitioningClassifier(8, [len(p) for p in parts])
    randomise(model, g)
    model.eval()
    ckpt = {"epoch": 14, "global_step": 1234, "pytorch-lightning_version": "1.0.1",
            "state_dict": model.state_dict(), "optimizer_states": [], "lr_schedulers": [], "callbacks": {},
            "hparams_name": "hparams",
            "hyper_parameters": {"arch": "resnet18_w8", "weights": None, "batch_size": 128,
                                 "partitionings": {"ptype": "default", "shortnames": ["coarse", "middle", "fine"],
                                                   "files": ["cells_coarse.csv", "cells_middle.csv",
                                                             "cells_fine.csv"]},
                                 "key_img_id": "id", "key_img_encoded": "image"}}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "epoch=014-val_loss=18.4833.ckpt")
        torch.save(ckpt, path)
        subprocess.run([sys.executable, os.path.join(HERE, "convert_checkpoint.py"), path,
                        os.path.join(a.out, "weights.safetensors")], check=True)

    model64 = MultiPartitioningClassifier(8, [len(p) for p in parts]).double()
    model64.load_state_dict(model.state_dict())
    model64.eval()
    images = []
    for i in range(3):
        img = make_image(rng)
        name = f"photo_{i}.png"
        write_png(os.path.join(a.out, name), img)
        images.append({"file": name, "max": predictions(model64, img, M, parts, "max"),
                       "mean": predictions(model64, img, M, parts, "mean")})
    worst = min(v for im in images for agg in ("max", "mean") for k, v in im[agg].items() if k.endswith("_gap"))
    if worst < 1e-4:
        sys.exit(f"top cells are within {worst:.2e} (relative) of each other: choose another --seed")
    expected = {"generator": "tools/make_import_fixtures.py", "seed": a.seed, "torch": torch.__version__,
                "heads": ["coarse", "middle", "fine"], "classes": [len(p) for p in parts],
                "preprocess": {"resize": RESIZE, "crop": CROP, "mean": MEAN, "std": STD},
                "hierarchy": M, "images": images, "smallest_relative_gap": worst}
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(f"{a.out}: classes {expected['classes']}, smallest relative gap between ranked scores {worst:.2e}")


if __name__ == "__main__":
    main()
