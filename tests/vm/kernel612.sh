#!/bin/bash
# Shared by the migration VM tests (mtty.sh, qemu.sh): bookworm-backports'
# 6.12 kernel with the kernel's mtty sample driver built out of tree from
# Debian's linux-source at test time (never committed). Source it, then
#   kernel612 DIR        # downloads and builds once per DIR; sets
#                        # k612_kver, k612_vmlinuz, k612_modules, k612_mtty
#   pack_modules DST_ROOT MODULE...   # the modules' closure, decompressed, plus mtty.ko, depmod'ed
# Both call fail() (the caller's) with the reason on any miss.
k612_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$k612_here/apt-private.sh"

kernel612() {
	local dir=$1 image abi headers common
	mkdir -p "$dir"
	if ! ls "$dir"/linux-image-*-unsigned_*.deb "$dir"/linux-source-*.deb >/dev/null 2>&1; then
		papt_init "$dir/apt" || fail "cannot read bookworm-backports through the machine's Debian mirror"
		# the archive keeps only the current build: resolve the version now
		image=$(papt_cache search '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
		[ -n "$image" ] || fail "no linux-image-6.12.*-amd64-unsigned in bookworm-backports"
		abi=${image#linux-image-}
		abi=${abi%-amd64-unsigned}
		(cd "$dir" && papt download "$image" "linux-headers-$abi-amd64" "linux-headers-$abi-common" \
			"linux-kbuild-$abi" linux-source-6.12 >apt.log 2>&1) ||
			{ cat "$dir/apt.log"; fail "apt-get download of the 6.12 packages failed"; }
	fi
	if [ ! -d "$dir/unpacked" ]; then
		for deb in "$dir"/linux-image-*.deb "$dir"/linux-headers-*.deb "$dir"/linux-kbuild-*.deb; do
			dpkg -x "$deb" "$dir/unpacked"
		done
	fi
	k612_kver=$(ls "$dir/unpacked/lib/modules" | head -1)
	k612_vmlinuz=$dir/unpacked/boot/vmlinuz-$k612_kver
	k612_modules=$dir/unpacked/lib/modules/$k612_kver
	k612_mtty=$dir/mtty/mtty.ko
	[ -f "$k612_vmlinuz" ] || fail "no kernel image for $k612_kver"
	[ -f "$k612_modules/modules.dep" ] || depmod -b "$dir/unpacked" "$k612_kver"
	[ -f "$k612_mtty" ] && return 0
	mkdir -p "$dir/mtty"
	if [ ! -f "$dir/mtty/mtty.c" ]; then
		dpkg-deb --fsys-tarfile "$dir"/linux-source-*.deb | tar -xO --wildcards '*/linux-source-*.tar.xz' |
			tar -xJO --wildcards '*/samples/vfio-mdev/mtty.c' >"$dir/mtty/mtty.c" ||
			fail "no samples/vfio-mdev/mtty.c in linux-source"
	fi
	echo 'obj-m := mtty.o' >"$dir/mtty/Kbuild"
	headers=$dir/unpacked/usr/src/linux-headers-$k612_kver
	# its Makefile includes the -common tree by its installed path: point it here
	common=$(ls -d "$dir"/unpacked/usr/src/linux-headers-*-common | head -1)
	echo "include $common/Makefile" >"$headers/Makefile"
	make -C "$headers" M="$dir/mtty" CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$dir/mtty/build.log" 2>&1 ||
		{ tail -30 "$dir/mtty/build.log"; fail "building mtty.ko failed"; }
}

pack_modules() {
	local dst=$1
	shift
	mkdir -p "$dst/lib/modules/$k612_kver/extra"
	/usr/bin/python3 - "$k612_modules" "$dst/lib/modules/$k612_kver" "$@" <<'PY' || fail "packing the kernel modules failed"
import lzma, os, shutil, sys
src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3:]
deps = {}
for line in open(os.path.join(src, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
by_name = {os.path.basename(m).split(".ko")[0].replace("-", "_"): m for m in deps}
want = [by_name[n] for n in names]
seen = set()
while want:
    m = want.pop()
    if m not in seen:
        seen.add(m)
        want.extend(deps[m])
for m in sorted(seen):
    out = os.path.join(dst, m[:-3] if m.endswith(".xz") else m)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if m.endswith(".xz"):
        with lzma.open(os.path.join(src, m)) as f, open(out, "wb") as o:
            shutil.copyfileobj(f, o)
    else:
        shutil.copy(os.path.join(src, m), out)
for f in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
    if os.path.exists(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), dst)
print("%d modules" % len(seen))
PY
	cp "$k612_mtty" "$dst/lib/modules/$k612_kver/extra/"
	depmod -b "$dst" "$k612_kver"
}
