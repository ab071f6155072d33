#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz: clang, ASan + UBSan) and fuzzes each for FUZZ_SECONDS (default
# 20) from a copy of its committed seed corpus, tests/fuzz/corpus_<name>/ (the copy grows, git's does not).
# One line per target with libFuzzer's execution count; exits non-zero on a finding (crash, UB, leak,
# timeout, an allocation over -malloc_limit_mb or memory over -rss_limit_mb), after printing libFuzzer's
# report; the input that caused it is kept in $FUZZ_ARTIFACTS (default <build>/fuzz-artifacts).
#   FUZZ_SECONDS=600 FUZZ_TARGETS="image manifest" scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-safetensors image manifest partition model_metadata}
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# A build folder already configured with the fuzz targets (scripts/sanitize.sh's build-asan) is used as it is.
if ! grep -q '^GEOLOC_BUILD_FUZZ:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release -DGEOLOC_BUILD_FUZZ=ON \
        -DGEOLOC_CUDA=OFF -DGEOLOC_FAISS=OFF -DGEOLOC_BUILD_TESTS=OFF -DGEOLOC_BUILD_BENCH=OFF -DGEOLOC_BUILD_EXAMPLES=OFF \
        "${launcher[@]}" >/dev/null
fi
cmake --build "$build" -j"${JOBS:-2}" --target geoloc_fuzz
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in $targets; do
  corpus="$work/corpus_$t"
  mkdir -p "$corpus"
  cp -r "tests/fuzz/corpus_$t/." "$corpus/"
  seeds=$(find "$corpus" -type f | wc -l)
  dict=()
  if [ -f "tests/fuzz/$t.dict" ]; then dict=("-dict=tests/fuzz/$t.dict"); fi
  log="$work/$t.log"
  # -malloc_limit_mb: any single allocation over 1 GB is a finding (a blow-up from a few kB of input);
  # -rss_limit_mb: the whole process over 2 GB; -timeout: one input taking over 10 s is a hang.
  if "$build/bin/fuzz_$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "${dict[@]}" "$corpus" \
       >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    echo "fuzz: $t: ${runs:-?} executions in $seconds s, corpus $seeds -> $(find "$corpus" -type f | wc -l) inputs," \
         "coverage ${cov:-?} edges, no findings"
  else
    echo "fuzz: $t: FINDING (libFuzzer's report follows; reproducer in $artifacts)"
    tail -n 80 "$log"
    status=1
  fi
done
exit $status
