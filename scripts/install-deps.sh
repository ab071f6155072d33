#!/usr/bin/env bash
# Installs the Debian 12 packages geoloc needs to build and test. Idempotent; runs apt-get only when
# something is missing; as root without sudo, otherwise through sudo.
set -euo pipefail
# libopenmpi-dev + openmpi-bin: optional for the build (GEOLOC_MPI=AUTO), installed so that data-parallel
# training (mpirun -np N geoloc train) and its tests (ctest -L mpi) are built and run; docs/dependencies.md.
pkgs=(build-essential cmake git pkg-config libeigen3-dev libstb-dev libs2-dev doctest-dev
      libbenchmark-dev nlohmann-json3-dev clang libclang-rt-14-dev
      libturbojpeg0-dev libarchive-dev libmsgpack-cxx-dev zlib1g-dev
      libopenmpi-dev openmpi-bin
      libfaiss-dev)  # optional for the build (GEOLOC_FAISS=AUTO): k-NN indexes over millions of photos
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
