#!/usr/bin/env bash
# The README's main command: installs what is needed, builds geoloc (-j2) and runs `geoloc demo`,
# which builds the embedded Earth-views data set, trains the multitask network on this machine and
# prints how well it locates unseen pictures. Extra arguments go to `geoloc demo` (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGEOLOC_CUDA=AUTO >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target geoloc_cli
exec "$build/bin/geoloc" demo "$@"
