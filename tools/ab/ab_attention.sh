#!/bin/bash
# In-process A/B of two builds of mha (see ab_attention.c):
#   tools/ab/ab_attention.sh BUILD_A BUILD_B B H G Lq Lk d causal threads rounds layout
# BUILD_A, BUILD_B: meson build directories (their engine/libmha.a is linked).
# Example, main against a branch, L=2048 d=64, 1 thread, 9 rounds, [B, H, L, d]:
#   tools/ab/ab_attention.sh build ../wt/x/build 1 16 16 2048 2048 64 0 1 9 0
set -euo pipefail
[ $# -eq 12 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/link_two.sh"
run_two "$here/ab_attention.c" "$@"
