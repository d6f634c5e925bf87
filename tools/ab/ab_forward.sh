#!/bin/bash
# In-process A/B of two builds' mha_forward (see ab_forward.c):
#   tools/ab/ab_forward.sh BUILD_A BUILD_B B L E H causal threads rounds
# Example, main against a branch, ViT-B (1 x 197, E = 768, 12 heads), 2 threads:
#   tools/ab/ab_forward.sh build ../wt/x/build 1 197 768 12 0 2 9
set -euo pipefail
[ $# -eq 9 ] || { sed -n '2,5p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/link_two.sh"
run_two "$here/ab_forward.c" "$@"
