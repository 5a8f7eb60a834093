#!/usr/bin/env bash
# agentryd vs supervisord vs PM2, side by side in one run, each measured the same way.
#
#   bash bench/supervisor/compare.sh [--quick] [--repeats N] [--budget-min M] [--publish]
#                                    [other compare.py options, see compare.py --help]
#
#   --quick        100 children instead of 1000, smaller logs, 1 repeat: a smoke run of a
#                  few minutes. Results go to bench/results/supervisor-compare-quick.*
#   --repeats N    medians over N repeats of every measurement (default 3)
#   --budget-min M start another repeat only if it should finish within M minutes
#   --publish      also copy the JSON, the chart and the table to docs/bench/ (what
#                  BENCHMARKS.md shows); meant for a full run
#
# Environment: AGENTRY_BUILD_DIR (default build/default) holds apps/agentryd and
# apps/agentry; PM2_VERSION (default latest) is the PM2 npm installs the first time.
#
# Steps:
#   1. installs what is missing: Debian's supervisor and gnuplot-nox with apt-get, PM2 with
#      npm into /tmp/agentry-bench-cache (outside the repository);
#   2. copies agentryd and agentry into this run's directory, so a rebuild while the
#      benchmark runs changes nothing;
#   3. builds the helpers (procwatch, spawn_floor, writer) with g++ -O2 when their sources
#      are newer than the cached binaries;
#   4. runs compare.py under `procwatch reap`: a child subreaper that reaps daemons orphaned
#      by their launchers and, when compare.py ends for any reason, SIGKILLs every process
#      still carrying this run's AGENTRY_BENCH_TOKEN in its environment. compare.py stops
#      what it started itself first (on success, on a failed phase and on Ctrl-C).
# Everything else lives in /tmp/agentry-bench-<token>/, removed at the end; Unix sockets only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build_dir="${AGENTRY_BUILD_DIR:-$repo/build/default}"
cache="/tmp/agentry-bench-cache"
pm2_version="${PM2_VERSION:-latest}"

quick=0
publish=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; pass+=(--quick) ;;
    --publish) publish=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1") ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  # One repeat unless the caller asked for more (a later --repeats wins).
  pass=(--repeats 1 "${pass[@]}")
  results="$repo/bench/results/supervisor-compare-quick"
else
  results="$repo/bench/results/supervisor-compare"
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v supervisord >/dev/null || need_apt+=(supervisor)
command -v gnuplot >/dev/null || need_apt+=(gnuplot-nox)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v g++ >/dev/null || need_apt+=(g++)
command -v uptime >/dev/null || need_apt+=(procps)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  as_root apt-get update -qq
  # Debian starts a packaged daemon on install unless policy-rc.d says no; no system-wide
  # supervisord may run next to the benchmark.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
  if [ -n "$policy" ]; then as_root rm -f "$policy"; fi
fi

if [ ! -x "$cache/node_modules/.bin/pm2" ]; then
  echo "installing pm2@$pm2_version into $cache" >&2
  mkdir -p "$cache"
  # PM2_HOME inside the cache: nothing touches ~/.pm2.
  PM2_HOME="$cache/pm2-home" npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
    "pm2@$pm2_version" >&2
fi

for b in agentryd agentry; do
  if [ ! -x "$build_dir/apps/$b" ]; then
    echo "no $build_dir/apps/$b: run 'make build' (or set AGENTRY_BUILD_DIR)" >&2
    exit 1
  fi
done

helpers="$cache/helpers"
mkdir -p "$helpers"
for h in procwatch spawn_floor writer; do
  if [ ! -x "$helpers/$h" ] || [ "$here/$h.cc" -nt "$helpers/$h" ]; then
    g++ -O2 -std=c++20 -Wall -Wextra -Wpedantic -Wshadow -Wold-style-cast -o "$helpers/$h.tmp" "$here/$h.cc"
    mv "$helpers/$h.tmp" "$helpers/$h"
  fi
done

token="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
run_dir="/tmp/agentry-bench-$token"
mkdir -p "$run_dir/agentry"
cp "$build_dir/apps/agentryd" "$build_dir/apps/agentry" "$run_dir/agentry/"

export AGENTRY_BENCH_TOKEN="$token"
export PYTHONDONTWRITEBYTECODE=1
cleanup() {
  # Belt and braces: should compare.py itself have been killed, sweep what carries the token.
  "$helpers/procwatch" sweep --token "$token" >/dev/null 2>&1 || true
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$repo/bench/results"
echo "before: $(uptime)" >&2
status=0
"$helpers/procwatch" reap --token "$token" -- /usr/bin/python3 "$here/compare.py" \
  --run-dir "$run_dir" --agentry-bin-dir "$run_dir/agentry" --helpers-dir "$helpers" \
  --pm2 "$cache/node_modules/.bin/pm2" --pm2-rotate-cache "$cache/pm2-rotate-home" \
  --out-json "$results.json" --out-png "$results.png" "${pass[@]}" || status=$?
echo "after: $(uptime)" >&2
[ "$status" = 0 ] || exit "$status"

if [ "$publish" = 1 ]; then
  mkdir -p "$repo/docs/bench"
  cp "$results.json" "$repo/docs/bench/supervisor-compare.json"
  cp "$results.png" "$repo/docs/bench/supervisor-compare.png"
  /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["table_markdown"])' \
    "$results.json" >"$repo/docs/bench/supervisor-compare.md"
  echo "published to docs/bench/supervisor-compare.{json,png,md}" >&2
fi
