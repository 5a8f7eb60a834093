#!/bin/sh
# Round trips through a mirror UDF with agentry's host (`agentry udf bench`): the C++ mirror
# (agentry's agent library) over pipes and over a unix socket, then a minimal Python mirror
# (bench/udf_python_mirror.py, Debian's python3-protobuf) over pipes and over a socket, and
# for scale a raw echo UDF that copies frames back without parsing them (the host's own
# ceiling). Prints points/s, the C++/Python ratio, and write system calls per point counted
# with strace (host and UDF together, and the host alone).
#
#   bench/udf_compare.sh [BUILD_DIR]          (default: build/default)
#   POINTS=2000000 PY_POINTS=300000 STRACE_POINTS=200000 bench/udf_compare.sh
set -eu

cd "$(dirname "$0")/.."
BUILD=${1:-build/default}
POINTS=${POINTS:-2000000}
PY_POINTS=${PY_POINTS:-300000}
STRACE_POINTS=${STRACE_POINTS:-200000}
PYTHON=/usr/bin/python3

AGENTRY=$BUILD/apps/agentry
CXX_MIRROR=$BUILD/bench/bench_udf        # `bench_udf --mirror-child`: the C++ mirror on stdio
SOCKET_MIRROR=$BUILD/examples/udf/agentry-udf-mirror
for f in "$AGENTRY" "$CXX_MIRROR" "$SOCKET_MIRROR"; do
  [ -x "$f" ] || { echo "missing $f: build the agentry, bench_udf and udf_mirror targets first" >&2; exit 1; }
done
"$PYTHON" -c 'import google.protobuf' 2>/dev/null || {
  echo "$PYTHON cannot import google.protobuf: apt-get install python3-protobuf" >&2; exit 1; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
protoc --python_out="$TMP" -I agentry/proto agentry/proto/udf.proto

# bench LABEL POINTS ARGS...: runs `agentry udf bench`, echoes its report, keeps points/s.
bench() {
  label=$1; n=$2; shift 2
  echo "== $label"
  "$AGENTRY" udf bench --points "$n" "$@" | tee "$TMP/out"
  awk -F': ' '/^points\/s round trip/ {print $2}' "$TMP/out" > "$TMP/$label.rate"
}

# start_server CMD...: starts a socket UDF in the background and waits for its socket.
start_server() {
  "$@" &
  SERVER_PID=$!
  i=0
  while [ ! -S "$TMP/udf.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}
stop_server() {
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  rm -f "$TMP/udf.sock"
}

bench echo_pipes "$POINTS" -- "$CXX_MIRROR" --echo-child
bench cxx_pipes "$POINTS" -- "$CXX_MIRROR" --mirror-child
start_server "$SOCKET_MIRROR" "$TMP/udf.sock"
bench cxx_socket "$POINTS" --socket "$TMP/udf.sock"
stop_server
bench py_pipes "$PY_POINTS" -- "$PYTHON" bench/udf_python_mirror.py --pb-dir "$TMP"
start_server "$PYTHON" bench/udf_python_mirror.py --pb-dir "$TMP" --socket "$TMP/udf.sock"
bench py_socket "$PY_POINTS" --socket "$TMP/udf.sock"
stop_server

echo "== write system calls per point (strace -f, $STRACE_POINTS points, C++ mirror over pipes)"
if strace -f -c -o "$TMP/strace.all" -e trace=write,writev,sendto,sendmsg \
     "$AGENTRY" udf bench --points "$STRACE_POINTS" -- "$CXX_MIRROR" --mirror-child >/dev/null 2>&1; then
  total=$(awk '$NF ~ /^(write|writev|sendto|sendmsg)$/ {s += $4} END {print s + 0}' "$TMP/strace.all")
  echo "host + UDF: $total write-type calls, $(awk -v t="$total" -v n="$STRACE_POINTS" 'BEGIN {printf "%.4f", t / n}') per point"
  # Each side alone: -f on the host only sees its own threads when the UDF is a socket UDF.
  start_server "$SOCKET_MIRROR" "$TMP/udf.sock"
  strace -f -c -o "$TMP/strace.host" -e trace=write,writev,sendto,sendmsg \
    "$AGENTRY" udf bench --points "$STRACE_POINTS" --socket "$TMP/udf.sock" >/dev/null 2>&1
  stop_server
  host=$(awk '$NF ~ /^(write|writev|sendto|sendmsg)$/ {s += $4} END {print s + 0}' "$TMP/strace.host")
  echo "host alone (socket UDF): $host calls, $(awk -v t="$host" -v n="$STRACE_POINTS" 'BEGIN {printf "%.4f", t / n}') per point"
else
  echo "strace unavailable here (ptrace not permitted?): see 'host write calls per point' above"
fi

echo "== summary"
for l in echo_pipes cxx_pipes cxx_socket py_pipes py_socket; do printf '%-11s %s points/s\n' "$l" "$(cat "$TMP/$l.rate")"; done
awk -v c="$(cat "$TMP/cxx_pipes.rate")" -v p="$(cat "$TMP/py_pipes.rate")" \
  'BEGIN {printf "C++ / Python over pipes: %.1fx\n", c / p}'
awk -v c="$(cat "$TMP/cxx_socket.rate")" -v p="$(cat "$TMP/py_socket.rate")" \
  'BEGIN {printf "C++ / Python over a socket: %.1fx\n", c / p}'
