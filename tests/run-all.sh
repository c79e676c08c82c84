#!/bin/bash
# Every test group, in order; prints one closing line "N passed, M failed"
# (tests counted across groups) and fails if any group failed.
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
groups_failed=()
log=$(mktemp)
tails=$(mktemp) # the last lines of each failed group, repeated at the end where a short CI excerpt shows them

count() { # add the pytest / unit / fuzz counts found in $log
	local p f
	p=$(grep -Eo '([0-9]+) passed' "$log" | awk '{s+=$1} END {print s+0}')
	f=$(grep -Eo '([0-9]+) (failed|error)' "$log" | awk '{s+=$1} END {print s+0}')
	passed=$((passed + p))
	failed=$((failed + f))
}

run() { # name, command...
	local name=$1
	shift
	echo "######## $name"
	"$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	count
	if [ "$rc" -ne 0 ]; then
		groups_failed+=("$name")
		{
			echo "-- $name, its last lines:"
			grep -v '^$' "$log" | tail -n 12
		} >>"$tails"
		# a group that failed without saying how many tests: count it once
		grep -Eq '[0-9]+ (failed|error)' "$log" || failed=$((failed + 1))
	fi
}

run "build" make --no-print-directory -j2 agent unit-tests build/vm/kubelet_min build/vm/mig_engine_check
run "unit (cmocka)" tests/run-unit.sh build
run "integration (kubelet simulator)" tests/run-integration.sh
run "sanitizers (ASan+UBSan: unit + integration)" make --no-print-directory test-asan
run "valgrind (full lifecycle scenario)" tests/run-valgrind.sh
run "real kernel (QEMU VM)" tests/vm/run.sh build
run "real kernel, VFIO migration (mtty in a 6.12 VM)" tests/vm/mtty.sh build
run "real QEMU live migration around the agents (L2 VMs with mtty)" tests/vm/qemu.sh build
run "fuzz (libFuzzer)" bash -c 'tests/fuzz/run.sh && echo "$(ls tests/fuzz/fuzz_*.c | wc -l) passed"'
run "chart and manifests (helm, Kubernetes schemas)" tests/helm/run.sh build
run "lint (clang-tidy, cppcheck)" bash -c 'tests/lint.sh build && echo "2 passed"'
rm -f "$log"
echo "########"
if [ ${#groups_failed[@]} -ne 0 ]; then
	cat "$tails"
	echo "failed groups: ${groups_failed[*]}"
fi
rm -f "$tails"
echo "$passed passed, $failed failed"
[ ${#groups_failed[@]} -eq 0 ]
