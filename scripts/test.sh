#!/usr/bin/env bash
# The README's test command: installs what is needed, configures, builds (-j2) and runs the whole
# test suite with CTest, checks the installed package, then the sanitizer and fuzz jobs (docs/testing.md).
# Exits non-zero on any failure. BUILD_DIR overrides the build folder; GEOLOC_SANITIZERS=0 skips the
# ASan/UBSan and TSan stages, GEOLOC_FUZZ=0 the fuzz run. Each stage's time is printed as
# "test.sh: <stage> took N s (M s of CPU)" (CI must stay under 30 minutes on 2 cores: docs/testing.md has
# the measured times of each stage).
set -euo pipefail
cd "$(dirname "$0")/.."
# CPU seconds (user + system) of the finished child processes so far, into $cpu: with the wall time, it
# shows whether a slow stage was busy or waiting for a loaded machine. (`times` must run in this shell:
# a subshell's children are not these.)
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu_now() {
  times >"$times_file"
  cpu=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%d", n }' \
        "$times_file")
}
start=$SECONDS
t0=$SECONDS
cpu_now
c0=$cpu
stage() {
  cpu_now
  echo "test.sh: $1 took $((SECONDS - t0)) s ($((cpu - c0)) s of CPU)"
  t0=$SECONDS
  c0=$cpu
}
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
jobs=${JOBS:-2}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGEOLOC_CUDA=AUTO
cmake --build "$build" -j"$jobs"
stage "build"
ctest --test-dir "$build" --output-on-failure -j1
# the op table's rows as they passed on each backend (tests/ops; ctest keeps each test's output in LastTest.log)
grep -h '^op table: ' "$build/Testing/Temporary/LastTest.log" || true
# the own CUDA kernels run under the emulator (tests/cuda_emu): each kernel, and the summary line
grep -h -e '^emulated kernel ' -e '^emulated CUDA kernels: ' "$build/Testing/Temporary/LastTest.log" || true
stage "ctest"
# find_package(geoloc) and pkg-config from an install prefix, used by an out-of-tree consumer (static build)
bash scripts/check-install.sh "$build"
# the same with libgeoloc.so (BUILD_SHARED_LIBS=ON: the library alone, no tests, benchmarks or examples)
cmake -S . -B "$build-shared" -DCMAKE_BUILD_TYPE=Release -DGEOLOC_CUDA=OFF -DBUILD_SHARED_LIBS=ON \
      -DGEOLOC_BUILD_TESTS=OFF -DGEOLOC_BUILD_BENCH=OFF -DGEOLOC_BUILD_EXAMPLES=OFF
cmake --build "$build-shared" -j"$jobs" --target geoloc geoloc_cli
bash scripts/check-install.sh "$build-shared"
stage "install checks (static and shared)"
if [ "${GEOLOC_SANITIZERS:-1}" != "0" ]; then
  # AddressSanitizer + UBSan over the whole suite (clang, CUDA off); its build also has the fuzz targets
  SAN_BUILD_PREFIX="$build" bash scripts/sanitize.sh asan
  stage "ASan + UBSan build and ctest"
fi
# a short libFuzzer run of every fuzz target (clang); GEOLOC_FUZZ=0 skips it
if [ "${GEOLOC_FUZZ:-1}" != "0" ]; then
  if [ "${GEOLOC_SANITIZERS:-1}" != "0" ]; then export FUZZ_BUILD_DIR="$build-asan"; fi
  FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash scripts/fuzz.sh
  stage "fuzz"
fi
# ThreadSanitizer over the loader and thread-pool tests
if [ "${GEOLOC_SANITIZERS:-1}" != "0" ]; then
  SAN_BUILD_PREFIX="$build" bash scripts/sanitize.sh tsan
  stage "TSan build and tests"
fi
cpu_now
echo "test.sh: all stages passed in $((SECONDS - start)) s ($cpu s of CPU)"
