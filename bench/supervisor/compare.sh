#!/usr/bin/env bash
# agentryd vs supervisord vs PM2, side by side in one run, measured the same way.
#
#   bash bench/supervisor/compare.sh [--repeats N] [--quick] [compare.py options]
#
# --repeats N   medians of N runs of every measurement (default 3)
# --quick       100 children instead of 1000 and smaller logs: a smoke run
# Other options go to compare.py (--kills, --tools, --skip, --keep; see --help).
#
# What it does:
#   1. installs what is missing: Debian's supervisor and gnuplot-nox (apt-get), PM2 from
#      npm into /tmp/agentry-bench-cache (outside the repo, so nothing to ignore in git);
#   2. copies agentryd and agentry from build/default/apps to /tmp/agentry-bench-bin (once;
#      delete that directory to take newer binaries, or set AGENTRY_BIN_DIR), so that a
#      rebuild in build/default during the run changes nothing;
#   3. builds the helpers (procwatch, spawn_floor, writer) with g++ -O2;
#   4. runs compare.py under `procwatch reap`, a child subreaper that reaps daemons orphaned
#      by their launchers and, at the end, SIGKILLs any process still carrying this run's
#      AGENTRY_BENCH_TOKEN in its environment. compare.py itself stops every daemon it
#      started (SIGTERM, then the same sweep) on success, failure and Ctrl-C.
# Everything runs in /tmp/agentry-bench-<token>/ (removed afterwards) on Unix sockets only.
# Results: bench/results/supervisor-compare.json and bench/results/supervisor-compare.png.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin_dir="${AGENTRY_BIN_DIR:-/tmp/agentry-bench-bin}"
cache="/tmp/agentry-bench-cache"
pm2_version="${PM2_VERSION:-latest}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v supervisord >/dev/null || need_apt+=(supervisor)
command -v gnuplot >/dev/null || need_apt+=(gnuplot-nox)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v g++ >/dev/null || need_apt+=(g++)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  as_root apt-get update -qq
  # Debian starts a packaged service on install unless policy-rc.d forbids it; we want no
  # system-wide supervisord running next to the benchmark.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ -n "$policy" ] && as_root rm -f "$policy"
fi

if [ ! -x "$cache/node_modules/.bin/pm2" ]; then
  echo "installing pm2@$pm2_version into $cache" >&2
  mkdir -p "$cache"
  # PM2_HOME points into the cache so that nothing touches ~/.pm2.
  PM2_HOME="$cache/pm2-home" npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
    "pm2@$pm2_version" >&2
fi

if [ ! -x "$bin_dir/agentryd" ] || [ ! -x "$bin_dir/agentry" ]; then
  src="$repo/build/default/apps"
  if [ ! -x "$src/agentryd" ]; then
    echo "no agentryd in $src: run 'make build' first (or set AGENTRY_BIN_DIR)" >&2
    exit 1
  fi
  mkdir -p "$bin_dir"
  cp "$src/agentryd" "$src/agentry" "$bin_dir/"
fi

helpers="$bin_dir/helpers"
mkdir -p "$helpers"
for h in procwatch spawn_floor writer; do
  if [ ! -x "$helpers/$h" ] || [ "$here/$h.cc" -nt "$helpers/$h" ]; then
    g++ -O2 -std=c++20 -Wall -Wextra -o "$helpers/$h" "$here/$h.cc"
  fi
done

mkdir -p "$repo/bench/results"
token="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export AGENTRY_BENCH_TOKEN="$token"
# Belt and braces: should compare.py itself be killed, sweep what carries the token.
trap '"$helpers/procwatch" sweep --token "$token" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM

"$helpers/procwatch" reap --token "$token" -- /usr/bin/python3 "$here/compare.py" \
  --agentry-bin-dir "$bin_dir" --helpers-dir "$helpers" --pm2 "$cache/node_modules/.bin/pm2" "$@"
