#!/usr/bin/env bash
# Installs the build into a temporary DESTDIR and builds and runs a small program
# (consumer.c) against the installed tree only: with pkg-config (shared library +
# rpath, and fully static with --static) and with CMake's find_package(mha)
# (shared, and static with MHA_USE_STATIC_LIBS). Also checks that mha.pc names
# -fopenmp once and that CMake refuses an incompatible version.
# Usage: test_install.sh BUILD_DIR PREFIX LIBDIR VERSION
set -euo pipefail
build=$1 prefix=$2 libdir=$3 version=$4
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset LD_LIBRARY_PATH  # the program must find the installed library by itself
cc=${CC:-cc}

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >/dev/null
root=$tmp/root$prefix
[[ $libdir = /* ]] || libdir=$prefix/$libdir
lib=$tmp/root$libdir

# pkg-config reads only the installed mha.pc, its prefix moved under DESTDIR.
pc() { PKG_CONFIG_LIBDIR=$lib/pkgconfig pkg-config --define-variable=prefix="$root" "$@" mha; }
private=$(pc --static --libs)
n=$(grep -o -- -fopenmp <<<"$private" | wc -l)
[ "$n" = 1 ] || { echo "FAIL: pkg-config --static --libs mha gives '$private' ($n x -fopenmp)"; exit 1; }

# Compiler output only on failure (a static libgomp warns about dlopen).
build() { "$cc" "$@" >"$tmp/cc.log" 2>&1 || { cat "$tmp/cc.log"; exit 1; }; }
# shellcheck disable=SC2046  # word splitting of the flags is intended
build "$here/consumer.c" -o "$tmp/pc-shared" $(pc --cflags --libs) -Wl,-rpath,"$(pc --variable=libdir)"
# ldd's output is taken whole first: `ldd | grep -q` under pipefail fails at random
# when grep exits at its match and ldd, still writing, dies of SIGPIPE.
loads() { local deps; deps=$(ldd "$1"); grep -q "$lib/libmha.so" <<<"$deps"; }
loads "$tmp/pc-shared" || { echo "FAIL: pc-shared does not load $lib/libmha.so"; ldd "$tmp/pc-shared"; exit 1; }
echo -n "pkg-config, shared: "; "$tmp/pc-shared"
# shellcheck disable=SC2046
build -static "$here/consumer.c" -o "$tmp/pc-static" $(pc --cflags --static --libs)
echo -n "pkg-config, static: "; "$tmp/pc-static"

for kind in shared static; do
  static=$([ $kind = static ] && echo ON || echo OFF)
  cmake -S "$here" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$root" -DMHA_USE_STATIC_LIBS="$static" \
    -DMHA_EXPECT_VERSION="$version" -DCMAKE_C_COMPILER="$cc" >"$tmp/cmake-$kind.log" 2>&1 ||
    { cat "$tmp/cmake-$kind.log"; exit 1; }
  cmake --build "$tmp/cmake-$kind" >>"$tmp/cmake-$kind.log" 2>&1 || { cat "$tmp/cmake-$kind.log"; exit 1; }
  if [ $kind = shared ]; then
    loads "$tmp/cmake-$kind/consumer" ||
      { echo "FAIL: the CMake program does not load $lib/libmha.so"; exit 1; }
  elif grep -q libmha.so <<<"$(ldd "$tmp/cmake-$kind/consumer" 2>&1 || true)"; then
    echo "FAIL: the static CMake program loads libmha.so"; exit 1
  fi
  echo -n "CMake, $kind: "; "$tmp/cmake-$kind/consumer"
done
