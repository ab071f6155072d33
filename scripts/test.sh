#!/usr/bin/env bash
# The README's test command: installs what is needed, configures, builds (-j2) and runs the whole
# test suite with CTest. Exits non-zero on any failure. BUILD_DIR overrides the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
jobs=${JOBS:-2}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGEOLOC_CUDA=AUTO
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j1
# the op table's rows as they passed on each backend (tests/ops; ctest keeps each test's output in LastTest.log)
grep -h '^op table: ' "$build/Testing/Temporary/LastTest.log" || true
# the own CUDA kernels run under the emulator (tests/cuda_emu): each kernel, and the summary line
grep -h -e '^emulated kernel ' -e '^emulated CUDA kernels: ' "$build/Testing/Temporary/LastTest.log" || true
# find_package(geoloc) and pkg-config from an install prefix, used by an out-of-tree consumer (static build)
bash scripts/check-install.sh "$build"
# the same with libgeoloc.so (BUILD_SHARED_LIBS=ON: the library alone, no tests, benchmarks or examples)
cmake -S . -B "$build-shared" -DCMAKE_BUILD_TYPE=Release -DGEOLOC_CUDA=OFF -DBUILD_SHARED_LIBS=ON \
      -DGEOLOC_BUILD_TESTS=OFF -DGEOLOC_BUILD_BENCH=OFF -DGEOLOC_BUILD_EXAMPLES=OFF
cmake --build "$build-shared" -j"$jobs" --target geoloc geoloc_cli
bash scripts/check-install.sh "$build-shared"
# a short libFuzzer run of the safetensors reader (clang); GEOLOC_FUZZ=0 skips it
if [ "${GEOLOC_FUZZ:-1}" != "0" ]; then bash scripts/fuzz.sh; fi
