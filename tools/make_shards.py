#!/usr/bin/env python3
"""Packs the images of a geoloc manifest into shards, in manifest order (docs/data.md, "Shards").

  tar      WebDataset layout: <key>.<jpg|png> + <key>.json {"latitude", "longitude", "scene", "country"},
           or with --labels csv, the images only and a labels.csv joined on the key
  msgpack  the ECCV 2018 layout: a sequence of maps {"id": <str>, "image": <bytes>}, and a labels.csv
           (id,latitude,longitude,scene,country) to join them with

Only the standard library: tarfile for tar, and the few MessagePack types needed, written by hand.
Keys are the row numbers (000000, 000001, ...), so the shards list the images in the manifest's order.

  tools/make_shards.py --manifest train.csv --out shards/ --format tar --per-shard 100
"""
import argparse
import csv
import io
import json
import os
import struct
import sys
import tarfile


def mp_str(s):
    b = s.encode("utf-8")
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_bin(b):
    if len(b) < 256:
        return b"\xc4" + bytes([len(b)]) + b
    if len(b) < 65536:
        return b"\xc5" + struct.pack(">H", len(b)) + b
    return b"\xc6" + struct.pack(">I", len(b)) + b


def mp_record(key, data):
    return b"\x82" + mp_str("id") + mp_str(key) + mp_str("image") + mp_bin(data)


def read_manifest(path):
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        img = r["image"] if os.path.isabs(r["image"]) else os.path.join(base, r["image"])
        out.append({
            "image": img,
            "latitude": float(r["latitude"]),
            "longitude": float(r["longitude"]),
            "scene": int(r["scene"]) if r.get("scene") not in (None, "", "-1") else -1,
            "country": int(r["country"]) if r.get("country") not in (None, "", "-1") else -1,
        })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--format", choices=["tar", "msgpack"], default="tar")
    ap.add_argument("--labels", choices=["json", "csv"], default="json", help="tar only: labels in key.json or labels.csv")
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--prefix", default="shard")
    a = ap.parse_args()
    rows = read_manifest(a.manifest)
    os.makedirs(a.out, exist_ok=True)
    use_csv = a.format == "msgpack" or a.labels == "csv"
    labels = []
    shards = []
    for s in range(0, max(1, (len(rows) + a.per_shard - 1) // a.per_shard)):
        chunk = rows[s * a.per_shard:(s + 1) * a.per_shard]
        ext = "tar" if a.format == "tar" else "msg"
        path = os.path.join(a.out, f"{a.prefix}-{s:03d}.{ext}")
        shards.append(path)
        if a.format == "tar":
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
                for i, r in enumerate(chunk):
                    key = f"{s * a.per_shard + i:06d}"
                    with open(r["image"], "rb") as f:
                        data = f.read()
                    img_ext = "png" if data[:4] == b"\x89PNG" else "jpg"
                    members = [(f"{key}.{img_ext}", data)]
                    if not use_csv:
                        meta = {k: r[k] for k in ("latitude", "longitude", "scene", "country")}
                        members.append((f"{key}.json", json.dumps(meta).encode()))
                    for name, payload in members:
                        info = tarfile.TarInfo(name)
                        info.size = len(payload)
                        info.mtime = 0
                        t.addfile(info, io.BytesIO(payload))
                    labels.append((key, r))
        else:
            with open(path, "wb") as f:
                for i, r in enumerate(chunk):
                    key = f"{s * a.per_shard + i:06d}"
                    with open(r["image"], "rb") as g:
                        f.write(mp_record(key, g.read()))
                    labels.append((key, r))
    if use_csv:
        with open(os.path.join(a.out, "labels.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id" if a.format == "msgpack" else "key", "latitude", "longitude", "scene", "country"])
            for key, r in labels:
                w.writerow([key, repr(r["latitude"]), repr(r["longitude"]), r["scene"], r["country"]])
    print(f"{len(rows)} images in {len(shards)} {a.format} shards under {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
