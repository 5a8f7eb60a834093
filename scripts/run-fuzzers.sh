#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz-preset build for a fixed time each.
# usage: run-fuzzers.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
build=${1:?build dir}
seconds=${2:-20}
src=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t targets < <(find "$build/tests/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x | sort)
((${#targets[@]} > 0)) || { echo "run-fuzzers: no fuzz targets under $build/tests/fuzz" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  name=$(basename "$t")
  corpus="$work/$name"
  mkdir -p "$corpus"
  [[ -d "$src/tests/fuzz/corpus/$name" ]] && cp -r "$src/tests/fuzz/corpus/$name/." "$corpus/"
  echo "--- $name: ${seconds}s"
  # rss_limit bounds memory: a decoder that buffers without limit fails here.
  log="$work/$name.log"
  if ! "$t" -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 \
       -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "run-fuzzers: $name found a problem (crash input saved next to the log above)" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)' "$log" || tail -n 3 "$log"
done
echo "run-fuzzers: ${#targets[@]} targets ran ${seconds}s each without a finding"
