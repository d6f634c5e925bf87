#!/usr/bin/env bash
# Scripted checks of `mha run` on copies of the golden folders:
#   cli_checks.sh MHA_BINARY GOLDEN_DIR SCRATCH_DIR VERSION
# Each failure case must exit non-zero, write nothing (no out.npy, no temporary
# file, every file in the folder unchanged) and name its cause on stderr; the
# positive cases check the NaN-row comparison, int64 key lengths, the causal
# alignments, --iters and --version (VERSION: the project's, from meson).
set -u
MHA=$(realpath "$1") GOLDEN=$(realpath "$2") SCRATCH=$3 VERSION=${4:-}
[ -x "$MHA" ] && [ -d "$GOLDEN" ] && [ -n "$VERSION" ] ||
    { echo "usage: $0 MHA_BINARY GOLDEN_DIR SCRATCH_DIR VERSION"; exit 1; }
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH" || exit 1
cd "$SCRATCH" || exit 1
umask 022
failures=0 checks=0

fail() { echo "FAIL: $case: $*"; failures=$((failures + 1)); }

# A fresh copy of a golden folder as ./dir, its expected output moved to ./expected.npy.
fresh() {
    rm -rf dir expected.npy out* ./*.npy
    cp -r "$GOLDEN/$1" dir && mv dir/expected.npy expected.npy && rm dir/flags.txt
    flags=$(cat "$GOLDEN/$1/flags.txt")
}

snapshot() { (cd dir && md5sum -- * | sort) > snapshot.txt; }

temp_files() { find . -name '*.tmp' | sort; }

# CASE PATTERN... -- ARGS: sets case, the array patterns and the array args, and
# counts the check.
split_case() {
    case=$1; shift
    patterns=()
    while [ "$1" != -- ]; do patterns+=("$1"); shift; done
    shift
    args=("$@")
    checks=$((checks + 1))
}

# Every pattern (grep -E) in the files given.
grep_all() {
    for p in "${patterns[@]}"; do
        grep -Eq -- "$p" "$@" || fail "no /$p/ in: $(cat stdout.txt stderr.txt)"
    done
}

# expect_failure CASE PATTERN... -- ARGS: non-zero exit, nothing written, every
# PATTERN in stderr or stdout.
expect_failure() {
    split_case "$@"
    snapshot; touch stdout.txt stderr.txt
    local listing; listing=$(ls -A | sort)
    "$MHA" run "${args[@]}" >stdout.txt 2>stderr.txt
    local rc=$?
    [ $rc -ne 0 ] || fail "exit status 0"
    [ $rc -lt 128 ] || fail "killed by a signal (status $rc)"
    (cd dir && md5sum -- * | sort) | cmp -s - snapshot.txt || fail "the folder changed"
    [ "$(ls -A | sort)" = "$listing" ] || fail "files appeared: $(ls -A | sort | tr '\n' ' ')"
    [ -z "$(temp_files)" ] || fail "temporary files left: $(temp_files)"
    grep_all stderr.txt stdout.txt
}

# expect_success CASE PATTERN... -- ARGS: exit 0, every PATTERN in stdout, no temp file.
expect_success() {
    split_case "$@"
    "$MHA" run "${args[@]}" >stdout.txt 2>stderr.txt || fail "exit status $?: $(cat stderr.txt)"
    [ -z "$(temp_files)" ] || fail "temporary files left: $(temp_files)"
    grep_all stdout.txt
}

# ------------------------------------------------------------ unknown files
fresh key_padding
ACCEPTED='only these .npy files:.*key_lengths\.npy'
cp dir/key_lengths.npy dir/key_length.npy
expect_failure misspelt-name 'key_length\.npy: unknown file \(did you mean key_lengths\.npy\?\)' \
    "$ACCEPTED" -- $flags dir
rm dir/key_length.npy

cp dir/key_lengths.npy dir/notes.npy
expect_failure unknown-name 'notes\.npy: unknown file$' "$ACCEPTED" -- $flags dir
rm dir/notes.npy

cp dir/key_lengths.npy dir/key_padding_mask.npy
expect_failure key-padding-mask 'key_padding_mask\.npy: .*key_lengths\.npy = \(~key_padding_mask\)\.sum\(1\)' \
    'mask\.npy = ~key_padding_mask\[:, None, None, :\]' -- $flags dir
rm dir/key_padding_mask.npy

cp dir/key_lengths.npy dir/attn_mask.npy
expect_failure attn-mask 'attn_mask\.npy: .*True = masked out.*save ~attn_mask as mask\.npy' \
    'reshaped to \[B, H, Lq, Lk\]' -- $flags dir
rm dir/attn_mask.npy

for f in bias_k bias_v; do
    cp dir/out_proj_bias.npy dir/$f.npy
    expect_failure add-bias-kv-$f "$f\\.npy: .*add_bias_kv=True.*not support" -- $flags dir
    rm dir/$f.npy
done

mv dir/out_proj_weight.npy dir/out_proj.weight.npy
expect_failure dotted-name 'out_proj\.weight\.npy: rename it out_proj_weight\.npy' -- $flags dir
mv dir/out_proj.weight.npy dir/out_proj_weight.npy

cp expected.npy dir/expected.npy
expect_failure expected-in-folder 'expected\.npy: not an input: .*--expect' -- $flags dir
# ... but it may stay there when it is the --expect file.
expect_success expected-in-folder-as-expect 'PASS' -- $flags --expect dir/expected.npy \
    --out out.npy dir
rm dir/expected.npy out.npy

# ------------------------------------------------------------ --heads
expect_failure no-heads '--heads H is required' -- dir
expect_failure not-a-folder 'expected\.npy: cannot read the folder: Not a directory' -- \
    $flags expected.npy

# ------------------------------------------------------------ output path
expect_failure out-is-input '--out dir/query\.npy: is the input dir/query\.npy' -- \
    $flags --out dir/query.npy dir
ln -s dir/key.npy key-link.npy
expect_failure out-is-symlinked-input '--out key-link\.npy: is the input dir/key\.npy' -- \
    $flags --out key-link.npy dir
rm key-link.npy
ln dir/value.npy value-link.npy
expect_failure out-is-hard-linked-input '--out value-link\.npy: is the input dir/value\.npy' -- \
    $flags --out value-link.npy dir
rm value-link.npy
expect_failure out-is-expect '--out expected\.npy: is the --expect file' -- \
    $flags --expect expected.npy --out expected.npy dir
expect_failure out-in-missing-dir 'cannot create a temporary file' -- \
    $flags --out no-such-dir/out.npy dir
mkdir outdir
expect_failure out-is-directory 'not a regular file' -- $flags --out outdir dir
rmdir outdir

# ------------------------------------------------------------ --expect
expect_failure expect-missing '--expect missing\.npy: cannot open' 'nothing written' -- \
    $flags --expect missing.npy dir
cp dir/key.npy wrong-shape.npy
expect_failure expect-wrong-shape '--expect wrong-shape\.npy: <f4 \[3, 10, 16\], expected float32 \[3, 4, 16\]' \
    'nothing written' -- $flags --expect wrong-shape.npy dir
rm wrong-shape.npy
expect_failure expect-mismatch 'FAIL' 'nothing written' -- $flags --scale 0.25 --expect expected.npy dir
# A previous output stays as it was when a run fails.
cp expected.npy dir/out.npy
expect_failure expect-mismatch-keeps-old-out 'FAIL' -- $flags --scale 0.25 --expect expected.npy dir
rm dir/out.npy

# ------------------------------------------------------------ positive cases
expect_success writes-out 'dir/out\.npy \[3, 4, 16\]' -- $flags --expect expected.npy dir
case=out-mode; [ "$(stat -c %a dir/out.npy)" = 644 ] || fail "mode $(stat -c %a dir/out.npy), umask 022"
expect_success rerun-with-old-out 'PASS' -- $flags --expect expected.npy dir

expect_success iters 'median [0-9.]+ ms, min [0-9.]+, max [0-9.]+ over 3 calls' -- \
    $flags --iters 3 dir
expect_failure too-many-threads "--threads: '100000' is not an integer in \\[0, 256\\]" -- \
    $flags --threads 100000 dir
expect_failure iters-zero "--iters: '0' is not an integer" -- $flags --iters 0 dir

# int64 key lengths (numpy's default integer), and a value out of range.
fresh key_padding_int64
case=int64-file; grep -aq "'<i8'" dir/key_lengths.npy || fail "key_lengths.npy is not int64"
expect_success int64-key-lengths 'PASS' -- $flags --expect expected.npy dir
# element 1 (4) becomes 2^32 + 4, which would wrap to 4 in an int32 cast.
offset=$(( $(stat -c %s dir/key_lengths.npy) - 24 + 8 ))
printf '\004\000\000\000\001\000\000\000' | dd of=dir/key_lengths.npy bs=1 seek=$offset conv=notrunc 2>/dev/null
expect_failure int64-key-lengths-range 'element 1 is 4294967300, outside \[0, Lk = 7\]' -- $flags dir

# Rows PyTorch leaves NaN (every key masked): they match mha's zero rows, and only there.
fresh fully_masked_rows
expect_success nan-rows '8 rows all NaN in expected where .* sees no key.*PASS' -- \
    $flags --expect expected.npy dir
expect_failure nan-rows-not-masked 'all NaN in the expected output, but it sees keys' 'FAIL' -- \
    --heads 2 --expect expected.npy dir
fresh fully_masked_head
expect_success nan-rows-one-head '3 rows all NaN in expected.*PASS' -- $flags --expect expected.npy dir
expect_success nan-rows-reference '3 rows all NaN in expected.*PASS' -- \
    $flags --reference --expect expected.npy --out ref.npy dir

# Without an output projection the unit is one head's slice: (b 0, h 1, i 2) sees no
# key in fully_masked_head, so NaN in exactly that slice of mha's own output matches,
# and NaN in a slice of a head that sees keys does not. [2, 5, 16] float32, d_v = 4.
nan_slice() { # FILE FIRST_FLOAT: 4 floats set to NaN
    local at=$(( $(stat -c %s "$1") - 2 * 5 * 16 * 4 + $2 * 4 ))
    printf '\000\000\300\177\000\000\300\177\000\000\300\177\000\000\300\177' |
        dd of="$1" bs=1 seek=$at conv=notrunc 2>/dev/null
}
rm dir/out_proj_weight.npy dir/out_proj_bias.npy
expect_success no-out-proj -- $flags --out heads.npy dir
cp heads.npy masked-slice.npy && nan_slice masked-slice.npy $(( 2 * 16 + 1 * 4 ))
expect_success nan-head-slice '1 head slices all NaN in expected.*PASS' -- \
    $flags --expect masked-slice.npy dir
cp heads.npy seen-slice.npy && nan_slice seen-slice.npy $(( 2 * 16 + 0 * 4 ))
expect_failure nan-head-slice-not-masked 'all NaN in the expected output, but it sees keys in this head' \
    'FAIL' -- $flags --expect seen-slice.npy dir

# Causal alignments: top-left is PyTorch's is_causal=True (the golden case) and the
# same as offset 0; bottom-right is offset Lk - Lq; they differ when Lq != Lk.
fresh causal_top_left_cross
expect_success top-left-golden 'PASS' -- $flags --expect expected.npy --out tl.npy dir
expect_success top-left-reference 'PASS' -- $flags --reference --expect expected.npy --out ref.npy dir
expect_success offset-0 -- --heads 2 --causal-offset 0 --out off0.npy dir
expect_success bottom-right -- --heads 2 --causal --out br.npy dir
expect_success offset-lk-lq -- --heads 2 --causal-offset 5 --out off5.npy dir
case=causal-equalities
cmp -s tl.npy off0.npy || fail "--causal-top-left differs from --causal-offset 0"
cmp -s br.npy off5.npy || fail "--causal differs from --causal-offset Lk-Lq"
cmp -s tl.npy br.npy && fail "--causal-top-left equals --causal with Lq != Lk"
expect_failure two-causal-flags 'at most one of --causal' -- --heads 2 --causal --causal-top-left dir

case=version; checks=$((checks + 1))
got=$("$MHA" --version) || fail "exit status $?"
[ "$got" = "mha $VERSION" ] || fail "'$got', not 'mha $VERSION'"

echo "$checks checks, $failures failures"
[ $failures -eq 0 ]
