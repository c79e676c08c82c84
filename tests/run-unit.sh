#!/bin/bash
# Runs every cmocka unit test binary of a build tree; fails if any test fails.
set -u
build=${1:-build}
passed=0
failed=0
for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	echo "== $(basename "$t") ($build)"
	out=$("$t" 2>&1)
	rc=$?
	echo "$out" | grep -v '^\[ RUN\|^\[       OK' || true
	n=$(echo "$out" | sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(echo "$out" | sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${n:-0}))
	failed=$((failed + ${f:-0}))
	if [ $rc -ne 0 ] && [ "${f:-0}" = 0 ]; then
		echo "$(basename "$t") exited with status $rc"
		failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
