#!/usr/bin/env bash
# usage: check-install.sh BUILD_DIR CONSUMER_SRC CXX [CXXFLAGS] [LDFLAGS]
# The consumer is built with the same flags as the tree (sanitizer builds need them).
set -euo pipefail
build=$1 consumer=$2 cxx=$3 cxxflags=${4:-} ldflags=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/agentry/base/status.h include/agentry/wire/delimited.h include/agentry/proto/udf.pb.h \
         lib/cmake/agentry/agentryConfig.cmake lib/pkgconfig/agentry-wire.pc; do
  [[ -e "$prefix/$f" ]] || { echo "missing from install: $f" >&2; exit 1; }
done

# 1. CMake package config.
cmake -S "$consumer" -B "$work/cmake-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$cxxflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" >/dev/null
cmake --build "$work/cmake-build"
"$work/cmake-build/consumer" | tee "$work/out1"
grep -qx 'consumer ok' "$work/out1"

# An unknown component must fail find_package with a clear message.
mkdir -p "$work/bad"
cat > "$work/bad/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(bad LANGUAGES CXX)
find_package(agentry CONFIG REQUIRED COMPONENTS nosuchmodule)
CM
if cmake -S "$work/bad" -B "$work/bad-build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/bad.log" 2>&1; then
  echo "find_package accepted an unknown component" >&2; exit 1
fi
grep -q "no component 'nosuchmodule'" "$work/bad.log"

# 2. pkg-config.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
# shellcheck disable=SC2086
"$cxx" -std=c++20 $cxxflags $ldflags -include utility "$consumer/main.cc" -o "$work/consumer-pc" \
  $(pkg-config --cflags --libs agentry-wire agentry-proto)
"$work/consumer-pc" | tee "$work/out2"
grep -qx 'consumer ok' "$work/out2"
echo "install check passed"
