# Sourced by ab_attention.sh and ab_forward.sh. link_two SRC BUILD_A BUILD_B OUT
# builds SRC into OUT against both builds' engine/libmha.a, build B's defined global
# symbols renamed b_* (objcopy) so that both libraries link into one program.
link_two() {
  local src=$1 a=$2/engine/libmha.a b=$3/engine/libmha.a out=$4 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  for f in "$a" "$b"; do [ -f "$f" ] || { echo "no $f" >&2; return 2; }; done
  nm --defined-only -g "$b" 2>/dev/null | awk 'NF == 3 { print $3 " b_" $3 }' | sort -u > "$out.syms"
  objcopy --redefine-syms="$out.syms" "$b" "$out.libb.a"
  gcc -O2 "$src" -I"$here/../../engine/include" "$out.libb.a" "$a" -fopenmp -lm -o "$out"
}

# run_two SRC BUILD_A BUILD_B ARGS...: link_two into a temporary directory, run
# the program with ARGS, remove the directory.
run_two() {
  local src=$1 a=$2 b=$3
  shift 3
  ab_tmp=$(mktemp -d) # global: the EXIT trap runs after the function returns
  trap 'rm -rf "$ab_tmp"' EXIT
  link_two "$src" "$a" "$b" "$ab_tmp/ab"
  "$ab_tmp/ab" "$@"
}
