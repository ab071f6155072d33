#!/usr/bin/env bash
# The FAISS benchmark of docs/scaling.md (issue #20): for each dimension and size, the exact top-10 of 1000
# queries once (brute force), then per index spec a build (training, adding, peak memory, file size) and a
# search per search-parameter set (queries/s of batched searches, recall@10, peak memory), each step its
# own process (bench/bench_faiss.cpp). One JSON line per result, appended to $OUT/results.jsonl.
#
#   tools/faiss_benchmark.sh DIM N 'SPEC|PARAMS;PARAMS;...' ['SPEC|PARAMS;...' ...]
#   e.g. tools/faiss_benchmark.sh 128 1000000 'IVF4096,SQ8|nprobe=8;nprobe=16;nprobe=32' 'HNSW32|efSearch=64'
#
# Environment: BUILD_DIR (default build), OUT (default /tmp/geoloc-faiss-bench), THREADS (default 2),
# QUERIES (default 1000), TRAIN (training rows, default 262144), NICE (default 5), OMP_WAIT_POLICY (default PASSIVE),
# BLAS_DIR: a folder holding another libblas.so.3/liblapack.so.3 to use through LD_LIBRARY_PATH, e.g. OpenBLAS
# unpacked from libopenblas0-openmp without installing it (Debian's default libblas.so.3 is the reference BLAS,
# which makes FAISS's k-means training and batched exact search many times slower; see docs/scaling.md).
# Index files are deleted after their search (KEEP=1 keeps them); the truth file is reused when present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
OUT="${OUT:-/tmp/geoloc-faiss-bench}"
THREADS="${THREADS:-2}"
QUERIES="${QUERIES:-1000}"
TRAIN="${TRAIN:-262144}"
NICE="${NICE:-5}"
BENCH="$BUILD_DIR/bin/geoloc_bench_faiss"
[[ $# -ge 3 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
[[ -x "$BENCH" ]] || { echo "faiss_benchmark.sh: $BENCH not found (cmake --build $BUILD_DIR --target geoloc_bench_faiss)" >&2; exit 1; }
# Idle OpenMP threads sleep instead of spinning (FAISS's loops are OpenMP). On cores shared with other work
# the default policy made FAISS's PQ training 8x slower here (docs/scaling.md); OMP_WAIT_POLICY=ACTIVE to compare.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [[ -n "${BLAS_DIR:-}" ]]; then
  export LD_LIBRARY_PATH="$BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
dim=$1 n=$2
shift 2
mkdir -p "$OUT"
results="$OUT/results.jsonl"
run() { nice -n "$NICE" "$BENCH" "$@" --threads "$THREADS" | tee -a "$results"; }
truth="$OUT/truth-$dim-$n-$QUERIES.bin"
if [[ ! -s "$truth" ]]; then
  run truth --dim "$dim" --n "$n" --queries "$QUERIES" --out "$truth.part"
  mv "$truth.part" "$truth"
fi
for config in "$@"; do
  spec=${config%%|*}
  params=${config#*|}
  [[ "$params" == "$config" ]] && params=-
  index="$OUT/index-$dim-$n-${spec//[^A-Za-z0-9_]/_}.faiss"
  run build --dim "$dim" --n "$n" --spec "$spec" --train "$TRAIN" --out "$index"
  run search --dim "$dim" --index "$index" --spec "$spec" --truth "$truth" --params "$params"
  [[ "${KEEP:-0}" == 1 ]] || rm -f "$index"
done
