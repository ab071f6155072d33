#!/usr/bin/env bash
# Self-test of scripts/check-public-headers.sh on a scratch include tree: it must pass on clean headers
# (third-party names in comments are fine) and fail on each kind of forbidden include.
set -euo pipefail
check="$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-public-headers.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/geoloc/sub"
cat > "$tmp/geoloc/a.hpp" <<'H'
#pragma once
// no nlohmann::json here: #include <nlohmann/json.hpp> only in a comment
#include <string>
#include "geoloc/sub/b.hpp"
H
printf '#pragma once\n#include <vector>\n' > "$tmp/geoloc/sub/b.hpp"

expect() {  # expect RC WHAT [DIR]
  local rc=0
  "$check" "${3:-$tmp}" >"$tmp/out" 2>&1 || rc=$?
  if [ "$rc" != "$1" ]; then
    echo "FAIL: $2: exit $rc, expected $1"; cat "$tmp/out"; exit 1
  fi
}
expect 0 "clean headers"
for bad in '#include <nlohmann/json.hpp>' '#include <nlohmann/json_fwd.hpp>' '  #  include <Eigen/Dense>' \
           '#include <s2/s2cell_id.h>' '#include <msgpack.hpp>' '#include <archive.h>' '#include <turbojpeg.h>' \
           '#include <stb_image.h>' '#include <cuda_runtime.h>' '#include <mpi.h>' '#include <nccl.h>' '#include <faiss/Index.h>' '#include "pipeline/eval_json.hpp"' \
           '#include "../src/geo/metrics_json.hpp"'; do
  cp "$tmp/geoloc/sub/b.hpp" "$tmp/b.saved"
  printf '%s\n' "$bad" >> "$tmp/geoloc/sub/b.hpp"
  expect 1 "$bad"
  grep -q "sub/b.hpp" "$tmp/out" || { echo "FAIL: $bad: the report does not name the header"; cat "$tmp/out"; exit 1; }
  mv "$tmp/b.saved" "$tmp/geoloc/sub/b.hpp"
done
expect 0 "clean again"
expect 2 "a folder without geoloc/" "$tmp/geoloc/sub"
echo "check-public-headers self-test: passed"
