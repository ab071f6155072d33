#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds examples/consumer against it with find_package(geoloc).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix/install" >/dev/null
cmake -S examples/consumer -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix/install" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$prefix/consumer" -j"${JOBS:-2}" >/dev/null
"$prefix/consumer/geoloc_consumer"
echo "check-install: find_package(geoloc) consumer built and ran"
