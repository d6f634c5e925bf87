#!/bin/sh
# The shared library exports the public mha_* functions and nothing else.
set -eu
lib=$1
nm=${NM:-nm}
bad=$("$nm" -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ && $3 !~ /^mha_/ {print $3}')
count=$("$nm" -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^mha_/' | wc -l)
if [ -n "$bad" ]; then echo "FAIL: non-mha symbols exported: $bad"; exit 1; fi
if [ "$count" -lt 10 ]; then echo "FAIL: only $count mha_ functions exported"; exit 1; fi
echo "PASS: $count mha_* functions exported, nothing else"
