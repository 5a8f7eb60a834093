#!/usr/bin/env bash
# Installs every Debian package agentry needs to build, test, benchmark and fuzz.
# Idempotent: when all packages are already present it only runs dpkg-query (fast).
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build make pkg-config ccache git
  # fuzz preset (clang + libFuzzer runtime)
  clang libclang-rt-14-dev
  # libraries
  libboost-dev libboost-system-dev libssl-dev
  libprotobuf-dev protobuf-compiler
  libmsgpack-cxx-dev nlohmann-json3-dev libyaml-cpp-dev
  libspdlog-dev libfmt-dev libcli11-dev zlib1g-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  python3
)

# One dpkg-query call for all packages; any package not reported as installed is missing.
installed=$(dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null \
  | awk -F'\t' '$2 ~ /^ii/ {print $1}' || true)
missing=()
for p in "${PACKAGES[@]}"; do
  grep -qxF -- "$p" <<<"$installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to apt-get install" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
