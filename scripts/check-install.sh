#!/usr/bin/env bash
# Installs a build into a temporary prefix and builds examples/consumer against it twice: with CMake's
# find_package(geoloc) and with pkg-config (geoloc.pc). Both consumers are installed beside the geoloc
# program (<prefix>/bin) and run with the source tree moved away (renamed, renamed back on exit): the
# installed library must find its data in <prefix>/share/geoloc, never through a path of the source tree.
# With a static build the data is found relative to the executable, with a shared one (BUILD_SHARED_LIBS=ON)
# relative to libgeoloc.so, which must then export geoloc's own symbols only.
#   scripts/check-install.sh [BUILD_DIR]
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
inst="$prefix/install"
cmake --install "$build" --prefix "$inst" >/dev/null
kind=static
if ls "$inst"/lib*/libgeoloc.so >/dev/null 2>&1; then
  kind=shared
  so=$(ls "$inst"/lib*/libgeoloc.so)
  foreign=$(nm -D --defined-only -C "$so" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' |
            grep -v -E '^(geoloc::|typeinfo for geoloc::|typeinfo name for geoloc::|vtable for geoloc::|VTT for geoloc::|guard variable for geoloc::)' || true)
  if [ -n "$foreign" ]; then
    echo "check-install: libgeoloc.so exports symbols outside geoloc's API:"; echo "$foreign" | head -20; exit 1
  fi
  echo "check-install: libgeoloc.so exports $(nm -D --defined-only "$so" | wc -l) symbols, all geoloc's"
fi
cmake -S examples/consumer -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$inst" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$prefix/consumer" -j"${JOBS:-2}" >/dev/null
cp "$prefix/consumer/geoloc_consumer" "$inst/bin/geoloc_consumer"
pc_dir=$(dirname "$(ls "$inst"/lib*/pkgconfig/geoloc.pc)")
export PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# shellcheck disable=SC2046
"${CXX:-c++}" -std=c++20 -O1 examples/consumer/main.cpp -o "$inst/bin/geoloc_consumer_pc" \
  $(pkg-config --cflags --libs geoloc) -Wl,-rpath,"$(pkg-config --variable=libdir geoloc)"
cd /
mv "$src" "$moved"
for exe in geoloc_consumer geoloc_consumer_pc; do
  echo "check-install: $exe ($kind, $([ $exe = geoloc_consumer ] && echo find_package || echo pkg-config))"
  env -u GEOLOC_DATA_DIR "$inst/bin/$exe"
done
env -u GEOLOC_DATA_DIR "$inst/bin/geoloc" --version
mv "$moved" "$src"
echo "check-install: $kind install, find_package(geoloc) and pkg-config consumers built, and ran with the source tree moved away"
