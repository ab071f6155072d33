#!/usr/bin/env bash
# Checks that no AVX-512 instruction can run on the AVX2 path (issue #15): in the build's static libraries,
# only direct_conv_avx512.cpp.o may contain AVX-512 code (zmm/k registers, xmm/ymm16-31), and in every given
# executable or shared library the functions that contain it are exactly those of that file (kernels in
# an anonymous namespace, reached only through kernels_avx512() after cpuid said yes).
#   scripts/check-isa.sh BUILD_DIR [BINARY...]
set -euo pipefail
build=${1:?build dir}; shift
pat='%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])'
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0 n512=0
for lib in $(find "$(realpath "$build")" -maxdepth 2 -name 'libgeoloc*.a'); do
  mkdir -p "$tmp/x" && (cd "$tmp/x" && rm -f ./*.o && ar x "$lib")
  for o in "$tmp"/x/*.o; do
    c=$(objdump -d --no-show-raw-insn "$o" | grep -cE "$pat" || true)
    case $(basename "$o") in
      direct_conv_avx512.cpp.o) n512=$c ;;
      *) if [ "$c" -gt 0 ]; then echo "AVX-512 code in $(basename "$lib"):$(basename "$o") ($c instructions)"; fail=1; fi ;;
    esac
  done
done
echo "static libraries: AVX-512 instructions only in direct_conv_avx512.cpp.o ($n512 of them)"
for bin in "$@"; do
  bad=$(objdump -d --no-show-raw-insn -C "$bin" | awk -v pat="$pat" '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    $0 ~ pat { if (fn !~ /geoloc::cpu::direct::\(anonymous namespace\)::/) print fn }' | sort -u)
  if [ -n "$bad" ]; then echo "$bin: AVX-512 code outside the AVX-512 kernel file:"; echo "$bad"; fail=1
  else echo "$bin: AVX-512 code only in the AVX-512 kernels"; fi
done
exit $fail
