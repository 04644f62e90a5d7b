#!/bin/sh
# Runs each unit-test binary (under the cross runner if given), each with a
# time limit, and prints one closing line: "N passed, N failed".
runner=$1; shift
pass=0; fail=0
for t in "$@"; do
    echo "== $(basename "$t")"
    if timeout 300 $runner "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
