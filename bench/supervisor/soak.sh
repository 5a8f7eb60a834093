#!/usr/bin/env bash
# Soak test for agentryd: a process that exits at once, restarted over and over for a while.
#
#   bash bench/supervisor/soak.sh [DURATION]      # DURATION: 600 (s), 90s, 10m, 1h; default 10m
#
# The process is /bin/echo (prints a line, exits 0), with restart: always, start_window: 0s,
# a fixed 10 ms backoff (BACKOFF=... to change it; 0s spins as fast as the daemon can fork)
# and its output logged to a file rotated at 64 KiB, so that spawn, exit, reaping, the log
# pipes and rotation all turn over thousands of times. The in-memory log ring is 16 KiB, full
# within the warm-up, so that its (bounded) growth does not pass for a leak. agentryd's VmRSS
# and open fd count (/proc/PID/status, /proc/PID/fd) are sampled after a 10 s warm-up and at
# the end (RSS also every 10 s in between, for the min/max); pass = RSS within 1 MiB of the
# start and the same fd count. Not run in CI. Runs a copy of agentryd and agentry from $AGENTRY_BUILD_DIR/apps
# (default build/default); everything lives in a temp dir under /tmp, removed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build_dir="${AGENTRY_BUILD_DIR:-$repo/build/default}"
backoff="${BACKOFF:-10ms}"
arg="${1:-10m}"
case "$arg" in
  *h) duration=$(( ${arg%h} * 3600 )) ;;
  *m) duration=$(( ${arg%m} * 60 )) ;;
  *s) duration=${arg%s} ;;
  *) duration=$arg ;;
esac
warmup=10

for b in agentryd agentry; do
  if [ ! -x "$build_dir/apps/$b" ]; then
    echo "no $build_dir/apps/$b: run 'make build' (or set AGENTRY_BUILD_DIR)" >&2
    exit 1
  fi
done

dir="$(mktemp -d /tmp/agentry-soak-XXXXXX)"
bin_dir="$dir/bin"
mkdir -p "$bin_dir"
cp "$build_dir/apps/agentryd" "$build_dir/apps/agentry" "$bin_dir/"
daemon=""
cleanup() {
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$dir/agentry.yaml" <<EOF
state_dir: $dir/state
log_level: warn
processes:
  - id: blink
    command: /bin/echo
    args: ["soak: exited at once"]
    restart: always
    start_window: 0s
    backoff: {initial: $backoff, max: $backoff, multiplier: 1, jitter: 0}
    logs: {ring: 16KiB, file: $dir/logs/blink.log, rotate: {size: 64KiB, keep: 3}}
EOF

sock="$dir/rt/manager.sock"
"$bin_dir/agentryd" -c "$dir/agentry.yaml" --runtime-dir "$dir/rt" --log-level warn \
  >"$dir/daemon.log" 2>&1 </dev/null &
daemon=$!

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status"; }
# The fewest open fds over 20 quick looks: a child in flight holds a few more (its pipes and
# pidfd) for a moment, which is not a leak; the floor between restarts is what must not move.
fds() {
  local min=999999 n
  for _ in $(seq 20); do
    n=$(ls "/proc/$daemon/fd" | wc -l)
    [ "$n" -lt "$min" ] && min=$n
  done
  echo "$min"
}
restarts() {
  "$bin_dir/agentry" --socket "$sock" list --json |
    /usr/bin/python3 -c 'import json,sys; print(sum(e["restarts"] for e in json.load(sys.stdin)))'
}

for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
echo "agentryd $("$bin_dir/agentryd" --version | awk '{print $2}') pid $daemon, backoff $backoff," \
  "${duration}s after ${warmup}s of warm-up; load $(cut -d' ' -f1-3 /proc/loadavg)"
sleep "$warmup"
rss0=$(rss_kib); fd0=$(fds); r0=$(restarts); t0=$(date +%s)
rss_min=$rss0; rss_max=$rss0
echo "start: VmRSS ${rss0} KiB, ${fd0} fds, ${r0} restarts so far"
while [ $(( $(date +%s) - t0 )) -lt "$duration" ]; do
  left=$(( duration - ($(date +%s) - t0) ))
  sleep $(( left < 10 ? left : 10 ))
  kill -0 "$daemon" 2>/dev/null || { echo "FAIL: agentryd died; see $dir/daemon.log"; cat "$dir/daemon.log"; exit 1; }
  r=$(rss_kib)
  [ "$r" -lt "$rss_min" ] && rss_min=$r
  [ "$r" -gt "$rss_max" ] && rss_max=$r
done
rss1=$(rss_kib); fd1=$(fds); r1=$(restarts)
elapsed=$(( $(date +%s) - t0 ))
echo "end:   VmRSS ${rss1} KiB, ${fd1} fds, ${r1} restarts so far"
echo "delta: VmRSS $(( rss1 - rss0 )) KiB (min ${rss_min}, max ${rss_max} KiB over the run)," \
  "fds $(( fd1 - fd0 )), $(( r1 - r0 )) restarts in ${elapsed}s ($(( (r1 - r0) / (elapsed > 0 ? elapsed : 1) ))/s);" \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
if [ $(( rss1 - rss0 )) -gt 1024 ] || [ $(( rss0 - rss1 )) -gt 1024 ]; then
  echo "FAIL: RSS moved by more than 1 MiB"; status=1
fi
if [ "$fd1" -ne "$fd0" ]; then
  echo "FAIL: fd count changed"; status=1
fi
[ "$(( r1 - r0 ))" -gt 0 ] || { echo "FAIL: no restarts happened"; status=1; }
[ $status -eq 0 ] && echo "PASS: RSS flat within 1 MiB, fd count unchanged"
exit $status
