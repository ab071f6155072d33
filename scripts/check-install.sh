#!/usr/bin/env bash
# Installs the build into a temporary prefix, builds examples/consumer against it with find_package(geoloc),
# then runs the consumer with the source tree moved away (renamed, and renamed back on exit): the installed
# library must find its data in <prefix>/share/geoloc, never through a path of the source tree. geoloc's
# libraries are static here, so the data is found relative to the executable (<prefix>/bin/../share/geoloc):
# the consumer is installed beside the geoloc program, as a product would install its own.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd -P)
build=$(cd "${1:-build}" && pwd -P)
prefix=$(mktemp -d)
moved="$src.moved-away-by-check-install"
restore() {
  if [ -d "$moved" ] && [ ! -e "$src" ]; then mv "$moved" "$src"; fi
  rm -rf "$prefix"
}
trap restore EXIT
cmake --install "$build" --prefix "$prefix/install" >/dev/null
cmake -S examples/consumer -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix/install" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$prefix/consumer" -j"${JOBS:-2}" >/dev/null
cp "$prefix/consumer/geoloc_consumer" "$prefix/install/bin/"
cd /
mv "$src" "$moved"
env -u GEOLOC_DATA_DIR "$prefix/install/bin/geoloc_consumer"
env -u GEOLOC_DATA_DIR "$prefix/install/bin/geoloc" --version
mv "$moved" "$src"
echo "check-install: find_package(geoloc) consumer built, and ran with the source tree moved away"
