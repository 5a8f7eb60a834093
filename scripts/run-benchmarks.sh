#!/usr/bin/env bash
# Runs every Google Benchmark program of a build and keeps the JSON results.
# usage: run-benchmarks.sh BUILD_DIR [benchmark filter regex]
set -euo pipefail
build=${1:?build dir}
filter=${2:-.}
src=$(cd "$(dirname "$0")/.." && pwd)
out="$src/bench/results"
mkdir -p "$out"
mapfile -t benches < <(find "$build/bench" -maxdepth 1 -type f -name 'bench_*' -perm -u+x | sort)
((${#benches[@]} > 0)) || { echo "run-benchmarks: nothing under $build/bench" >&2; exit 1; }
for b in "${benches[@]}"; do
  name=$(basename "$b")
  echo "=== $name"
  "$b" --benchmark_filter="$filter" --benchmark_out="$out/$name.json" --benchmark_out_format=json
done
echo "results: $out/*.json"
