#!/usr/bin/env bash
# geoloc vs PyTorch on this machine's CPU: builds geoloc's benchmarks (Release, CPU only), makes sure a
# Python venv with CPU PyTorch + torchvision exists (from PyPI), then runs both, interleaved, in one
# invocation and prints a table: case, geoloc img/s, PyTorch img/s, ratio (see compare_pytorch.py).
#
#   bench/compare_pytorch.sh [compare_pytorch.py options, e.g. --rounds 5 --cases resnet18_infer]
#
# Environment: BUILD_DIR (default build-perf), VENV (default /tmp/torchvenv), PYTHON (to create the
# venv, default python3), THREADS (default 2), SKIP_BUILD=1 to use an existing build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-perf}"
VENV="${VENV:-/tmp/torchvenv}"
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-2}"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DGEOLOC_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target geoloc_bench_nn geoloc_bench_core >/dev/null
fi
BENCH="$BUILD_DIR/bin/geoloc_bench_nn"
[[ -x "$BENCH" ]] || { echo "compare_pytorch.sh: $BENCH not found (build it, or unset SKIP_BUILD)" >&2; exit 1; }

if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  echo "compare_pytorch.sh: installing torch + torchvision into $VENV (PyPI)" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # PyPI's default Linux wheels carry CUDA libraries too; only the CPU is used here
  "$VENV/bin/pip" install --quiet torch torchvision
fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), geoloc $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
GEMM_1T=$("$BUILD_DIR/bin/geoloc_bench_core" --benchmark_filter='BM_gemm_1t/1024' --benchmark_min_time=1 2>/dev/null |
  sed -n 's/.*GFLOP\/s=\([0-9.]*\)G.*/\1/p' | head -1 || true)
PEAK_1T=$("$BUILD_DIR/bin/geoloc_bench_core" --benchmark_filter='BM_fma_peak' --benchmark_min_time=1 2>/dev/null |
  sed -n 's/.*GFLOP\/s=\([0-9.]*\)G.*/\1/p' | head -1 || true)
[[ -n "$PEAK_1T" ]] && echo "FMA peak, one core: ${PEAK_1T} GFLOP/s (x$THREADS threads = the machine's ceiling)"
[[ -n "$GEMM_1T" ]] && echo "Eigen GEMM 1024^3, one thread: ${GEMM_1T} GFLOP/s"
exec "$VENV/bin/python" "$ROOT/bench/compare_pytorch.py" --bench "$BENCH" --threads "$THREADS" ${PEAK_1T:+--peak "$PEAK_1T"} "$@"
