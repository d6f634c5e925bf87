#!/bin/bash
# In-process A/B of two builds of mha (see ab_attention.c):
#   tools/ab/ab_attention.sh BUILD_A BUILD_B B H G Lq Lk d causal threads rounds layout
# BUILD_A, BUILD_B: meson build directories (their engine/libmha.a is linked).
# Example, main against a branch, L=2048 d=64, 1 thread, 9 rounds, [B, H, L, d]:
#   tools/ab/ab_attention.sh build ../wt/x/build 1 16 16 2048 2048 64 0 1 9 0
set -euo pipefail
[ $# -eq 12 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
a=$1/engine/libmha.a b=$2/engine/libmha.a
shift 2
for f in "$a" "$b"; do [ -f "$f" ] || { echo "no $f" >&2; exit 2; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# B's defined global symbols get a b_ prefix, so both libraries link into one program.
nm --defined-only -g "$b" 2>/dev/null | awk 'NF == 3 { print $3 " b_" $3 }' | sort -u > "$tmp/syms"
objcopy --redefine-syms="$tmp/syms" "$b" "$tmp/libb.a"
gcc -O2 "$here/ab_attention.c" -I"$here/../../engine/include" "$tmp/libb.a" "$a" -fopenmp -lm -o "$tmp/ab"
"$tmp/ab" "$@"
