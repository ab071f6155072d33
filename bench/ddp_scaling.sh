#!/usr/bin/env bash
# Scaling of the data-parallel training step on this machine (docs/scaling.md, "Data-parallel training"):
# one process on one core against `mpirun -np 2 --bind-to core` (one core each), same global batch (strong
# scaling, ideal: half the step time) and twice the batch (weak scaling, ideal: the same step time), and
# for comparison one process with two pool threads, and the same-batch run with synchronised batch norm
# (--sync-bn). Prints a Markdown table.
#   bench/ddp_scaling.sh [BUILD_DIR] [STEPS] [REPEATS]
# Config: the default `small` ResNet at 64 px, global batch 32, 256 generated photos (PNG, written with
# Python's standard library), SGD at a constant rate. Two figures per run: the wall time of a step (the
# training loop's, TrainHistory "seconds": decoding and start-up excluded; best of REPEATS runs), which
# needs the cores to be free, and its CPU time summed over all processes (from runs of STEPS and STEPS/4
# steps; median), which does not: on shared cores the second says what data parallelism costs.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
steps=${2:-40}
repeats=${3:-3}
geoloc="$build/bin/geoloc"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import os, random, struct, sys, zlib
out = sys.argv[1]
os.makedirs(f"{out}/img", exist_ok=True)
def png(path, w, h, px):
    raw = b"".join(b"\0" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
places = [(48.85, 2.35, (200, 60, 60)), (35.68, 139.69, (60, 200, 60)), (-33.87, 151.21, (60, 60, 200)),
          (40.71, -74.0, (200, 200, 60)), (-22.9, -43.2, (120, 60, 160)), (55.75, 37.6, (60, 160, 160)),
          (1.35, 103.8, (160, 120, 60)), (-1.29, 36.8, (90, 90, 90))]
rng = random.Random(7)
with open(f"{out}/manifest.csv", "w") as m:
    m.write("image,latitude,longitude,scene,country\n")
    for i in range(256):
        lat, lng, (r, g, b) = places[i % len(places)]
        px = []
        for y in range(80):
            for x in range(80):
                s = 40 if (x // (4 + i % 3)) % 2 else 0
                px += [max(0, min(255, c - s + rng.randint(-40, 40))) for c in (r, g, b)]
        png(f"{out}/img/{i}.png", 80, 80, px)
        m.write(f"img/{i}.png,{lat + rng.uniform(-0.5, 0.5):.5f},{lng + rng.uniform(-0.5, 0.5):.5f},{i % 2},-1\n")
PY
common=(train --train "$work/manifest.csv" --image-size 64 --resize 72 --cells 200,100 --tau-min 4 --scenes a,b
        --seed 1 --lr 0.02 --schedule constant)
# run COMMAND...: prints "<training-loop seconds> <CPU seconds of the whole run, all processes>"
run() {
  rm -f "$work/m-curve.json"
  python3 - "$work" "$@" <<'PY' || { cat "$work/err"; exit 1; }
import json, resource, subprocess, sys
work, cmd = sys.argv[1], sys.argv[2:]
with open(f"{work}/err", "w") as err:
    subprocess.run(cmd + ["--out", f"{work}/m.safetensors"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=err, check=True)
u = resource.getrusage(resource.RUSAGE_CHILDREN)  # mpirun and the ranks it waited for
print(json.load(open(f"{work}/m-curve.json"))["seconds"], u.ru_utime + u.ru_stime)
PY
}
# best COMMAND...: "<ms per step> <CPU ms per step>": the best training-loop time of REPEATS runs of
# $steps steps, and the CPU time per step from the difference between runs of $steps and $steps/4 steps
# (start-up and decoding cancel), summed over all processes: what a step costs whatever else the cores run.
best() {
  local b="" s c cs short=""
  for _ in $(seq "$repeats"); do
    read -r s c < <(run "$@" --steps "$steps")
    read -r _ cs < <(run "$@" --steps "$((steps / 4))")
    if [ -z "$b" ] || python3 -c "import sys; sys.exit(0 if $s < $b else 1)"; then b=$s; fi
    short="$short $(python3 -c "print(($c - $cs) / ($steps - $steps // 4))")"
  done
  python3 -c "import statistics, sys; v = [float(x) for x in sys.argv[2:]]; print(1000 * float(sys.argv[1]) / $steps, 1000 * statistics.median(v))" "$b" $short
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t1=$(best taskset -c 0 "$geoloc" "${common[@]}" --batch 32 --threads 1)
t1x2=$(best "$geoloc" "${common[@]}" --batch 32 --threads 2)
t2=$(best mpirun -np 2 --bind-to core "$geoloc" "${common[@]}" --batch 32)
buckets_default=$(grep -o "gradient all-reduce:.*" "$work/err" || true)
t2small=$(best mpirun -np 2 --bind-to core "$geoloc" "${common[@]}" --batch 32 --bucket-mb 0.25)
buckets_small=$(grep -o "gradient all-reduce:.*" "$work/err" || true)
t2w=$(best mpirun -np 2 --bind-to core "$geoloc" "${common[@]}" --batch 64)
t2sync=$(best mpirun -np 2 --bind-to core "$geoloc" "${common[@]}" --batch 32 --sync-bn)
echo "default buckets: $buckets_default"
echo "--bucket-mb 0.25: $buckets_small"
echo "load average before/after: $load0 / $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$t1" "$t1x2" "$t2" "$t2small" "$t2w" "$t2sync" <<'PY'
import sys
(t1, c1), (t1x2, c1x2), (t2, c2), (t2small, c2small), (t2w, c2w), (t2sync, c2sync) = [tuple(map(float, a.split())) for a in sys.argv[1:]]
print("| run | global batch | step (ms, wall) | images/s | speed-up | efficiency vs ideal | CPU per step (core-ms, all processes) | CPU vs 1 process |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
def row(name, batch, t, c, ideal_ms, work):
    print(f"| {name} | {batch} | {t:.1f} | {1000 * batch / t:.0f} | {(batch / t) / (32 / t1):.2f} x | {ideal_ms / t * 100:.0f} % "
          f"| {c:.1f} | {c / (c1 * work):.2f} x |")
row("1 process, 1 core", 32, t1, c1, t1, 1)
row("1 process, 2 pool threads", 32, t1x2, c1x2, t1 / 2, 1)
row("2 processes x 1 core, one 4 MiB bucket", 32, t2, c2, t1 / 2, 1)
row("2 processes x 1 core, 0.25 MiB buckets", 32, t2small, c2small, t1 / 2, 1)
row("2 processes x 1 core, twice the batch", 64, t2w, c2w, t1, 2)
row("2 processes x 1 core, one 4 MiB bucket, --sync-bn", 32, t2sync, c2sync, t1 / 2, 1)
PY
