#!/usr/bin/env bash
# Builds and runs every test: the native Check suite once per ISA (scalar, avx2,
# avx512) and under qemu-x86_64 CPU models that lack AVX-512 / AVX2; the same
# suite built with ASan+UBSan; the aarch64 build under qemu-aarch64 (NEON, and a
# plain cortex-a72); a smoke run of the bench; libFuzzer on the attention entry,
# the forward pass, the serving attention and the additive/concat modules
# (differential, against the float64 oracle) and on the .npy reader (FUZZ_SECONDS
# each, default 60). Ends with one line counting them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${MHA_TEST_BUILD:-build-ci}
t0=$SECONDS
step() { echo; echo "=== [$((SECONDS - t0))s] $*"; }

rm -rf "$root"
mkdir -p "$root"

step "native build (gcc, -Werror) and tests: every ISA, qemu-x86_64 fallback models"
meson setup "$root/native" -Dbuildtype=debugoptimized -Dwerror=true >/dev/null
ninja -C "$root/native"
meson test -C "$root/native" --print-errorlogs --num-processes 2 || true

step "ASan + UBSan build and tests"
meson setup "$root/asan" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbench=disabled >/dev/null
ninja -C "$root/asan"
meson test -C "$root/asan" --print-errorlogs --num-processes 2 || true

step "aarch64 cross build, tests under qemu-aarch64"
meson setup "$root/arm" --cross-file cross/aarch64-linux-gnu.ini -Dbuildtype=debugoptimized \
  -Dwerror=true -Dbench=disabled >/dev/null
ninja -C "$root/arm"
meson test -C "$root/arm" --print-errorlogs --num-processes 2 || true

step "bench smoke run"
meson test -C "$root/native" --benchmark --logbase benchlog --print-errorlogs || true

step "libFuzzer (clang, ASan+UBSan): attention, forward, serving and additive/concat vs the float64 oracle, .npy reader"
CC=clang CXX=clang++ meson setup "$root/fuzz" -Dfuzz=true -Dtests=false -Dbench=disabled \
  -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
ninja -C "$root/fuzz"
for target in attention forward serve additive npy; do
  mkdir -p "$root/corpus-$target"
  seeds=()
  [ "$target" = npy ] && seeds=(tests/golden/*)
  if "$root/fuzz/tests/fuzz/fuzz_$target" -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 \
       -artifact_prefix="$root/" "$root/corpus-$target" "${seeds[@]}" > "$root/fuzz-$target.log" 2>&1; then
    echo "fuzz_$target OK"
  else
    echo "fuzz_$target FAIL"; tail -30 "$root/fuzz-$target.log"
  fi | tee -a "$root/fuzz-results.txt"
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$root/fuzz-$target.log" || true
done

step "summary"
python3 - "$root" <<'PY'
import glob, json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
for path in sorted(glob.glob(sys.argv[1] + "/*/meson-logs/*log.json")):
    build = path.split("/")[-3]
    for line in open(path):
        r = json.loads(line)
        res = r.get("result")
        kind = "passed" if res == "OK" else "skipped" if res in ("SKIP", "EXPECTEDFAIL") else "failed"
        counts[kind] += 1
        print(f"  {build:7s} {r.get('name', '?'):28s} {res}")
fuzz = sys.argv[1] + "/fuzz-results.txt"
for line in open(fuzz) if __import__("os").path.exists(fuzz) else []:
    name, res = line.split()
    counts["passed" if res == "OK" else "failed"] += 1
    print(f"  fuzz    {name:28s} {res}")
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
sys.exit(1 if counts["failed"] or not counts["passed"] else 0)
PY
