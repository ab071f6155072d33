#!/usr/bin/env bash
# geoloc vs ONNX Runtime (and PyTorch when WITH_TORCH=1) for ResNet-18/50 inference at batch 1 and 8,
# 224x224, 1 and 2 threads, on this machine's CPU, same run, interleaved (bench/compare_engines.py).
# Builds geoloc's benchmark (the default portable build: runtime CPU dispatch), makes a venv from PyPI
# with onnxruntime + onnx + numpy (+ torch + torchvision), then runs.
#
#   bench/compare_engines.sh [compare_engines.py options, e.g. --rounds 3 --seconds 2 --paths avx512,avx2]
#
# Environment: BUILD_DIR (default build-perf), VENV (default /tmp/enginesvenv), PYTHON (default python3),
# WITH_TORCH=1 to install and measure PyTorch too (a large download), SKIP_BUILD=1 to use a build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-perf}"
VENV="${VENV:-/tmp/enginesvenv}"
PYTHON="${PYTHON:-python3}"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DGEOLOC_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target geoloc_bench_nn >/dev/null
fi
BENCH="$BUILD_DIR/bin/geoloc_bench_nn"
[[ -x "$BENCH" ]] || { echo "compare_engines.sh: $BENCH not found (build it, or unset SKIP_BUILD)" >&2; exit 1; }

if ! "$VENV/bin/python" -c "import onnxruntime, onnx, numpy" 2>/dev/null; then
  echo "compare_engines.sh: installing onnxruntime + onnx + numpy into $VENV (PyPI)" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet onnxruntime onnx numpy
fi
if [[ "${WITH_TORCH:-0}" == 1 ]] && ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet torch torchvision
fi

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vector extensions: $(grep -o -w 'avx2\|fma\|avx512f\|avx512bw\|avx512vl\|avx512dq\|avx512_vnni\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "geoloc: $("$BUILD_DIR/bin/geoloc" --version 2>/dev/null || git -C "$ROOT" rev-parse --short HEAD)"
"$VENV/bin/python" "$ROOT/bench/compare_engines.py" --bench "$BENCH" "$@"
