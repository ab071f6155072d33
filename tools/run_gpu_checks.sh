#!/usr/bin/env bash
# The one command for the GPU machine: the op table on the GPU against the CPU and the CUDA tests (normal
# and GEOLOC_CUDA_SYNC=1), compute-sanitizer (memcheck, racecheck, synccheck over the op table's GPU rows),
# the op and CUDA benchmarks and the PyTorch ResNet-50 reference, all written under $OUT; a short table
# is printed last. The first-GPU checklist is in docs/cuda.md ("Running on a GPU machine").
#
# NOT YET RUN ON A GPU (written 2026-11-22 without a device): expect to fix paths on first use.
#
# 1. Here (no GPU; build machine):
#      tools/run_gpu_checks.sh bundle
#    configures build-gpu/ for sm_90 without -march=native (the GPU machine's CPU may lack this one's
#    vector extensions), builds the CUDA tests and benchmark, and packs them with
#    ../shared/tools/gpu-bundle into .gpu/ (git-ignored through .git/info/exclude).
# 2. On the GPU machine (device tool: run with carry [".gpu"]):
#      tools/run_gpu_checks.sh run
#    Each step is limited to STEP_TIMEOUT seconds (default 300); the device tool allows 10 minutes per
#    command, so split the steps over two calls (SKIP="memcheck racecheck synccheck", then the rest)
#    if the sanitizer steps turn out slow.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
OUT=${OUT:-/tmp/geoloc-gpu-out}
mkdir -p "$OUT"

if [ "$mode" = bundle ]; then
  set -e
  if ! git check-ignore -q .gpu/ 2>/dev/null; then  # .gitignore already has /.gpu/; this is for older trees
    ex=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$ex")" && echo '/.gpu/' >> "$ex"
  fi
  cmake -S . -B build-gpu -DGEOLOC_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGEOLOC_NATIVE=OFF -DGEOLOC_BUILD_BENCH=ON -DGEOLOC_BUILD_TESTS=ON
  cmake --build build-gpu -j2 --target geoloc_ops_tests geoloc_cuda_tests geoloc_bench_ops geoloc_bench_cuda
  rm -rf .gpu
  ../shared/tools/gpu-bundle .gpu build-gpu/tests/geoloc_ops_tests build-gpu/tests/geoloc_cuda_tests \
    build-gpu/bin/geoloc_bench_ops build-gpu/bin/geoloc_bench_cuda
  cp tools/resnet50_pytorch_compare.py .gpu/
  exit 0
fi

[ "$mode" = run ] || { echo "usage: $0 [bundle|run]" >&2; exit 2; }
[ -x .gpu/run ] || { echo "no .gpu/ bundle: run '$0 bundle' on the build machine and carry .gpu" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/device.csv" 2>&1
cat "$OUT/device.csv"

declare -A status
SKIP=${SKIP:-}
step() {  # step NAME LOGFILE COMMAND... : runs, records the exit status
  local name=$1 log=$2; shift 2
  case " $SKIP " in *" $name "*) status[$name]="skipped (SKIP)"; return 0 ;; esac
  echo "== $name"
  local t0=$SECONDS
  timeout "${STEP_TIMEOUT:-300}" "$@" > "$OUT/$log" 2>&1
  local rc=$?  # 124: the step ran past STEP_TIMEOUT seconds
  status[$name]="rc=$rc $((SECONDS - t0))s"
  tail -n 5 "$OUT/$log"
  return 0
}

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
TESTS=.gpu/geoloc_cuda_tests
OPS=.gpu/geoloc_ops_tests
CMP="op table: every other backend against the CPU"  # the op table's GPU-vs-CPU test case

# 1. the op table: every backend function, every row, on the GPU against the CPU twin (junk-filled outputs)
step ops ops.log .gpu/run geoloc_ops_tests --force-colors=0
step ops_sync ops_sync.log env GEOLOC_CUDA_SYNC=1 .gpu/run geoloc_ops_tests --force-colors=0 -tc="$CMP"
# 2. the rest of the CUDA suite: context, allocator, bf16, a 3-step training run against the CPU
step tests tests.log .gpu/run geoloc_cuda_tests --force-colors=0 --reporters=console
.gpu/run geoloc_cuda_tests --force-colors=0 --reporters=junit --out="$OUT/tests.junit.xml" > /dev/null 2>&1
step tests_sync tests_sync.log env GEOLOC_CUDA_SYNC=1 .gpu/run geoloc_cuda_tests --force-colors=0
# 3. compute-sanitizer over the op table's GPU rows (memcheck: bounds, leaks; racecheck / synccheck:
#    shared memory and barriers, what the CPU emulator cannot see between two barriers)
step memcheck memcheck.log .gpu/run "$SAN" --tool memcheck --leak-check full --error-exitcode 3 \
  "$OPS" --force-colors=0 -tc="$CMP"
step racecheck racecheck.log .gpu/run "$SAN" --tool racecheck --error-exitcode 3 "$OPS" --force-colors=0 -tc="$CMP"
step synccheck synccheck.log .gpu/run "$SAN" --tool synccheck --error-exitcode 3 "$OPS" --force-colors=0 -tc="$CMP"
step bench_ops bench_ops.log .gpu/run geoloc_bench_ops --benchmark_filter=/cuda --benchmark_out="$OUT/bench_ops.json" \
  --benchmark_out_format=json
step bench bench.log .gpu/run geoloc_bench_cuda --benchmark_out="$OUT/bench_cuda.json" \
  --benchmark_out_format=json --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
if python3 -c 'import torch, torchvision' 2>/dev/null; then
  step resnet50_pytorch resnet50_pytorch.log python3 .gpu/resnet50_pytorch_compare.py --out "$OUT/resnet50_pytorch.json"
else
  status[resnet50_pytorch]="skipped (no torch/torchvision)"
fi

{
  echo "{"
  first=1
  for k in "${!status[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": "%s"' "$k" "${status[$k]}"
  done
  echo
  echo "}"
} > "$OUT/summary.json"

echo
echo "step               result"
for k in ops ops_sync tests tests_sync memcheck racecheck synccheck bench_ops bench resnet50_pytorch; do
  printf '%-18s %s\n' "$k" "${status[$k]:-not run}"
done
if [ -f "$OUT/bench_cuda.json" ]; then
  python3 - "$OUT/bench_cuda.json" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
ctx = d.get("context", {})
copy = float(ctx.get("copy_ceiling_GB/s", "0") or 0)
gemm = float(ctx.get("gemm_ceiling_TFLOP/s", "0") or 0)
print(f"\nceilings: copy {copy:.0f} GB/s, fp32 GEMM {gemm:.1f} TFLOP/s")
print(f"{'benchmark':45s} {'time':>12s} {'GB/s':>8s} {'of copy':>8s} {'TFLOP/s':>8s}")
for b in d.get("benchmarks", []):
    if b.get("aggregate_name", "median") != "median":
        continue
    gbs = b.get("GB/s"); tf = b.get("TFLOP/s")
    frac = f"{gbs / copy:.2f}" if gbs and copy else ""
    print(f"{b['name']:45s} {b['real_time']:10.1f}{b['time_unit']:>2s} {gbs or 0:8.0f} {frac:>8s} {tf or 0:8.2f}")
import os
pt = os.path.join(os.path.dirname(sys.argv[1]), "resnet50_pytorch.json")
if os.path.exists(pt):
    runs = json.load(open(pt))["runs"]
    print("\nResNet-50 fp32 images/s: geoloc vs PyTorch eager (TF32 off), same machine")
    for b in d.get("benchmarks", []):
        if not b["name"].startswith("BM_resnet50") or b.get("aggregate_name", "median") != "median":
            continue
        parts = b["name"].split("/")
        batch, train = int(parts[1]), parts[2] == "1"
        ref = [r for r in runs if r["batch"] == batch and r["variant"] == "fp32" and r["mode"] == ("train" if train else "inference")]
        if ref:
            g = b.get("images/s", 0)
            print(f"  batch {batch} {'train' if train else 'infer'}: geoloc {g:.0f}, torch {ref[0]['images_per_s']:.0f}, ratio {g / ref[0]['images_per_s']:.2f}")
PY
fi
