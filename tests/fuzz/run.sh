#!/bin/bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for
# XEVF_FUZZ_SECONDS (default 20) from its committed seed corpus. Any crash,
# leak or sanitizer report fails; the crashing input is kept in build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${XEVF_FUZZ_SECONDS:-20}
make --no-print-directory BUILD=build/fuzz FUZZ=1 fuzzers >/dev/null
status=0
for src in tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c | sed 's/^fuzz_//')
	bin=build/fuzz/fuzz/fuzz_$name
	work=build/fuzz/corpus-$name
	mkdir -p "$work"
	echo "== fuzz $name for ${seconds}s"
	if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/crash-$name- "$work" "tests/fuzz/corpus/$name" >build/fuzz/$name.log 2>&1; then
		grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build/fuzz/$name.log | tr '\n' ' '
		echo
	else
		echo "fuzz $name FAILED:"
		tail -40 build/fuzz/$name.log
		status=1
	fi
done
[ $status -eq 0 ] && echo "fuzz: every target ran ${seconds}s with no finding"
exit $status
