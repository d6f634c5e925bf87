#!/usr/bin/env bash
# Installs what building and testing mha needs on Debian 12 (run as root, or with
# sudo available): the toolchain (cmake for the install test's CMake consumer),
# Check, Google Benchmark and OpenBLAS (bench only), the aarch64 cross compiler
# with qemu-user for the NEON tests, and clang with its sanitizer/libFuzzer
# runtime and OpenMP for the fuzzers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  gcc g++ meson ninja-build pkg-config python3 cmake
  check libbenchmark-dev libopenblas-dev
  qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross check:arm64 libgomp1:arm64
  clang libclang-rt-14-dev libomp-dev
)

sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then sudo=(sudo); else
    echo "install_deps.sh: not root and no sudo; install these yourself: ${packages[*]}" >&2
    exit 1
  fi
fi

# The arm64 architecture is needed for check:arm64 and libgomp1:arm64 (the
# multiarch libraries the aarch64 tests run on under qemu).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo[@]}" dpkg --add-architecture arm64
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install_deps.sh: all packages present"
