#!/bin/bash
# clang-tidy (config in .clang-tidy, warnings are errors) and cppcheck over the
# product code. Needs the generated protobuf headers (make lint builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
flags="-std=c11 -D_GNU_SOURCE -I$build/gen -Idriver -Iagent -DXEVF_VERSION=\"lint\" \
 $(pkg-config --cflags grpc libprotobuf-c libkmod libpci json-c libmicrohttpd libcurl libcrypto)"
sources=$(ls driver/*.c agent/*.c)
echo "== clang-tidy"
# shellcheck disable=SC2086
clang-tidy -quiet $sources -- $flags
echo "== cppcheck"
# cppcheck reads no system headers; protobuf-c's generated code checks this macro.
cppcheck --enable=warning,style,performance,portability --std=c11 --error-exitcode=1 --inline-suppr --quiet \
	-D_GNU_SOURCE -DPROTOBUF_C_VERSION_NUMBER=1004001 -I"$build/gen" -Idriver -Iagent \
	--suppress=missingIncludeSystem driver agent
echo "lint: clang-tidy and cppcheck found nothing"
