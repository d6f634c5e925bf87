#!/bin/sh
# The shared library's soname follows the ABI rule of mha.h (libmha.so.0.MINOR before 1.0).
set -eu
lib=$1
want=$2
got=$(${READELF:-readelf} -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$got" != "$want" ]; then echo "FAIL: soname '$got', expected '$want'"; exit 1; fi
echo "PASS: soname $got"
