#!/bin/bash
# Shared by the VM tests (run.sh, mtty.sh, qemu.sh). Source it from the test's
# work directory after setting vm_test (the name in failure messages; empty
# for none).
#   fail REASON...            say why, show the end of console.log, exit 1
#   need_tools TOOL...        fail naming the first tool that is not installed
#   expect WHAT REGEX         one check against console.log, counted in $checks
#   copy_with_libs BIN ROOT   BIN into ROOT/bin with the shared libraries it loads
#   pack_initramfs ROOT       ROOT as ./initrd.gz
checks=0

fail() {
	echo "VM TEST FAILED${vm_test:+ ($vm_test)}: $*"
	[ -f console.log ] && { echo "---- last console lines"; tail -80 console.log; }
	exit 1
}

need_tools() {
	for tool in "$@"; do
		command -v "$tool" >/dev/null || fail "$tool is not installed (tests/install-deps.sh installs it)"
	done
}

# expect WHAT REGEX [FILE]: a line of FILE (default the VM's console.log) matches
expect() {
	if grep -Eq "$2" "${3:-console.log}"; then
		echo "  ok  $1"
		checks=$((checks + 1))
	else
		fail "$1 (no line of ${3:-console.log} matches: $2)"
	fi
}

copy_with_libs() {
	cp "$1" "$2/bin/"
	ldd "$1" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
		mkdir -p "$2$(dirname "$lib")"
		cp -L "$lib" "$2$lib"
	done
	[ -e "$2/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$2/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$2/lib64/"; }
}

pack_initramfs() {
	(cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) >initrd.gz
}
