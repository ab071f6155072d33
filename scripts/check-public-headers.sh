#!/usr/bin/env bash
# No third-party types in geoloc's public headers (issue #19): every header under include/geoloc/ is
# installed, so none may include nlohmann/json, Eigen, s2geometry/Abseil, msgpack-cxx, libarchive,
# libjpeg-turbo, stb, the CUDA libraries, MPI, NCCL or FAISS, and their quoted includes are geoloc's own public headers
# ("geoloc/..."), never the library's internal ones under src/. The library's own code composes JSON
# through internal headers under src/ (e.g. src/geo/metrics_json.hpp).
#   scripts/check-public-headers.sh [INCLUDE_DIR]   (default: include/ of this checkout)
set -euo pipefail
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/include"}
[ -d "$dir/geoloc" ] || { echo "check-public-headers: no $dir/geoloc"; exit 2; }
third='(nlohmann/|Eigen/|unsupported/Eigen|s2/|absl/|msgpack|archive|turbojpeg|jpeglib|stb_|stb/|cuda|cudnn|cublas|mpi\.h|mpi/|nccl|faiss/)'
fail=0
while IFS= read -r -d '' h; do
  while IFS= read -r line; do
    echo "${h#"$dir"/}: third-party include: $line"; fail=1
  done < <(grep -E "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]$third" "$h" || true)
  while IFS= read -r line; do
    echo "${h#"$dir"/}: not a public geoloc header: $line"; fail=1
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$h" | grep -vE '"geoloc/' || true)
done < <(find "$dir/geoloc" -type f \( -name '*.hpp' -o -name '*.h' -o -name '*.inl' \) -print0)
if [ "$fail" = 0 ]; then
  echo "check-public-headers: $(find "$dir/geoloc" -type f \( -name '*.hpp' -o -name '*.h' -o -name '*.inl' \) | wc -l) public headers, no third-party or internal includes"
fi
exit "$fail"
