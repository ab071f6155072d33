#!/usr/bin/env bash
# The sanitizer jobs (docs/testing.md), with clang and CUDA off; exits non-zero on any finding or failure.
#  - asan: AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer) over the whole test suite,
#    library and tests built with them (-DGEOLOC_SANITIZE=address,undefined) in build-asan, which also
#    builds the libFuzzer targets (scripts/test.sh runs scripts/fuzz.sh on them next).
#  - tsan: ThreadSanitizer over the loader and thread-pool tests only (-DGEOLOC_SANITIZE=thread) in
#    build-tsan, building just the test programs they live in.
#   scripts/sanitize.sh [asan|tsan|all]   (default all; JOBS=2 build jobs, SAN_BUILD_PREFIX=build)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=${JOBS:-2}
prefix=${SAN_BUILD_PREFIX:-build}
case "$what" in asan | tsan | all) ;; *) echo "usage: scripts/sanitize.sh [asan|tsan|all]" >&2; exit 2 ;; esac
# RelWithDebInfo without its -g: -O2 (the components add -O3), so that the suite runs at a usable speed, and
# line tables only (GEOLOC_SANITIZE adds -gline-tables-only: file and line in every report's stack, at a
# fraction of full debug information's compile time); NDEBUG stays on because Eigen's internal assertions
# would make the numeric tests several times slower.
common=(-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG"
        -DGEOLOC_CUDA=OFF -DGEOLOC_FAISS=OFF
        -DGEOLOC_BUILD_BENCH=OFF -DGEOLOC_BUILD_EXAMPLES=OFF)
# FAISS stays out (GEOLOC_FAISS=OFF): Debian's libfaiss.a is built without sanitizers and for GCC's OpenMP
# runtime (libgomp), while clang links its own (libomp); its wrapper is tested in the normal build.
if command -v ccache >/dev/null 2>&1; then common+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

if [ "$what" != tsan ]; then
  b="$prefix-asan"
  # Left out, and why: the CUDA emulator tests (tests/cuda_emu) are built with ASan + UBSan in every
  # normal build already (scripts/test.sh runs them), so here they would only run a second time, and
  # the emulated core library is the longest compile of the suite.
  echo "sanitize: asan: leaving out the CUDA emulator tests (cuda_emu*): they already run under ASan + UBSan in the normal build"
  echo "sanitize: asan: src/geo/countries.cpp without ASan (UBSan only): Debian's libs2 and Abseil's btree under ASan disagree on the node layout (docs/testing.md)"
  cmake -S . -B "$b" "${common[@]}" -DGEOLOC_SANITIZE=address,undefined -DGEOLOC_CUDA_EMU_TESTS=OFF \
        -DGEOLOC_BUILD_FUZZ=ON >/dev/null
  cmake --build "$b" -j"$jobs"
  # detect_leaks: LeakSanitizer at exit; the check_initialization_order pair: static initialisers that
  # read another file's globals too early; detect_stack_use_after_return: pointers to dead stack frames.
  export ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:strict_string_checks=1:abort_on_error=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # the demo end to end (tests/cli/test_cli.cpp) is skipped here: minutes under ASan, run by the normal build
  echo "sanitize: asan: leaving out the demo end to end (geoloc demo --quick in tests/cli): it runs in the normal build"
  export GEOLOC_SANITIZER_RUN=1
  # -j: the test programs are mostly single-threaded, and the longest (cli, whose demo case runs the
  # whole benchmark under ASan) would otherwise leave one core idle for minutes.
  ctest --test-dir "$b" --output-on-failure -j"$jobs"
fi

if [ "$what" != asan ]; then
  b="$prefix-tsan"
  cmake -S . -B "$b" "${common[@]}" -DGEOLOC_SANITIZE=thread >/dev/null
  cmake --build "$b" -j"$jobs" --target geoloc_core_tests geoloc_geo_tests geoloc_image_tests
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  # The thread pool itself, the geography loops on it (k-means, partitions, exceptions out of tasks),
  # and the loader's worker threads over files, shards and the cache.
  run() {  # the doctest summary when it passes, everything (reports included) when it does not
    echo "sanitize: tsan: ${*#"$b/tests/"}"
    local log
    log=$(mktemp)
    if ! "$@" --force-colors=0 >"$log" 2>&1; then cat "$log"; rm -f "$log"; return 1; fi
    grep -E '^\[doctest\] test cases' "$log"
    rm -f "$log"
  }
  run "$b/tests/geoloc_core_tests" "--test-case=thread pool*"
  run "$b/tests/geoloc_geo_tests" "--source-file=*test_threads.cpp"
  run "$b/tests/geoloc_image_tests" "--source-file=*test_loader.cpp,*test_shards.cpp,*test_cache.cpp"
fi
echo "sanitize: $what: no findings"
