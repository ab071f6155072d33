#!/usr/bin/env bash
# Builds the libFuzzer target of the safetensors reader with clang (ASan + UBSan) and fuzzes it for a
# short time (FUZZ_SECONDS, default 20) from the committed seed corpus. Exits non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release -DGEOLOC_BUILD_FUZZ=ON \
      -DGEOLOC_CUDA=OFF -DGEOLOC_BUILD_TESTS=OFF -DGEOLOC_BUILD_BENCH=OFF -DGEOLOC_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target fuzz_safetensors
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp -r tests/fuzz/corpus_safetensors/. "$corpus/" 2>/dev/null || true
"$build/bin/fuzz_safetensors" -max_total_time="${FUZZ_SECONDS:-20}" -max_len=4096 "$corpus" 2>&1 | tail -n 3
echo "fuzz: safetensors reader survived ${FUZZ_SECONDS:-20} s of libFuzzer"
