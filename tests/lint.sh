#!/bin/bash
# clang-tidy (config in .clang-tidy, warnings are errors) and cppcheck over the
# product code. Needs the generated protobuf headers (make lint builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pkgs=$(awk '!/^#/ && NF {print $1}' packages.list)
includes="-I$build/gen -Idriver $(for d in agent/*/; do printf -- '-I%s ' "${d%/}"; done)"
# shellcheck disable=SC2086
flags="-std=c11 -D_GNU_SOURCE $includes -DXEVF_VERSION=\"lint\" $(pkg-config --cflags $pkgs)"
sources=$(ls driver/*.c agent/*/*.c)
echo "== clang-tidy"
# shellcheck disable=SC2086
clang-tidy -quiet $sources -- $flags
echo "== cppcheck"
# cppcheck reads no system headers; protobuf-c's generated code checks this macro.
# shellcheck disable=SC2086
cppcheck --enable=warning,style,performance,portability --std=c11 --error-exitcode=1 --inline-suppr --quiet \
	-D_GNU_SOURCE -DPROTOBUF_C_VERSION_NUMBER=1004001 $includes \
	--suppress=missingIncludeSystem driver agent
echo "lint: clang-tidy and cppcheck found nothing"
