#!/bin/bash
# Real-kernel migration test: bookworm-backports' 6.12 kernel under
# qemu-system-x86_64 with the kernel's own mtty sample driver (a real
# implementation of the VFIO migration uAPI: STOP_COPY | P2P | PRE_COPY),
# built out of tree from Debian's linux-source at test time (never
# committed). Inside the VM, build/vm/mig_engine_check drives the driver's
# migration engine against three mtty devices (mig_engine_check.c lists the
# checks); then two agents (build/xevf-agent-sim --mtty-map: simulated hosts
# whose VFs stand for three more mtty devices) check, reserve, send, commit and
# abort over mutual TLS, driven by the CLI.
#
# Fails with the reason on any miss; never skips. Usage: tests/vm/mtty.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
work=$build/vm-mtty
mkdir -p "$work"
cd "$work"
t0=$(date +%s)

fail() {
	echo "VM TEST FAILED (mtty): $*"
	[ -f console.log ] && { echo "---- last console lines"; tail -60 console.log; }
	exit 1
}
for tool in qemu-system-x86_64 busybox depmod cpio xz make gcc; do
	command -v $tool >/dev/null || fail "$tool is not installed (tests/install-deps.sh installs it)"
done
for bin in vm/mig_engine_check xevf-agent-sim; do
	[ -x "$build/$bin" ] || fail "$build/$bin is not built (make test-vm builds it)"
done
command -v openssl >/dev/null || fail "openssl is not installed (tests/install-deps.sh installs it)"

# ---- the 6.12 kernel, its headers and its source, from bookworm-backports ------------
. "$here/apt-private.sh"
if ! ls linux-image-*-unsigned_*.deb linux-source-*.deb >/dev/null 2>&1; then
	papt_init "$work/apt" || fail "cannot read bookworm-backports through the machine's Debian mirror"
	# the archive keeps only the current build: resolve the version now
	image=$(papt_cache search '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
	[ -n "$image" ] || fail "no linux-image-6.12.*-amd64-unsigned in bookworm-backports"
	abi=${image#linux-image-}
	abi=${abi%-amd64-unsigned}
	papt download "$image" "linux-headers-$abi-amd64" "linux-headers-$abi-common" "linux-kbuild-$abi" \
		linux-source-6.12 >apt.log 2>&1 || { cat apt.log; fail "apt-get download of the 6.12 packages failed"; }
fi
if [ ! -d unpacked ]; then
	for deb in linux-image-*.deb linux-headers-*.deb linux-kbuild-*.deb; do
		dpkg -x "$deb" unpacked
	done
fi
kver=$(ls unpacked/lib/modules | head -1)
vmlinuz=unpacked/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || fail "no kernel image for $kver"
[ -f "unpacked/lib/modules/$kver/modules.dep" ] || depmod -b unpacked "$kver"
echo "vm-mtty: kernel $kver"

# ---- mtty.ko, out of tree --------------------------------------------------------------
if [ ! -f mtty/mtty.ko ]; then
	mkdir -p mtty
	if [ ! -f mtty/mtty.c ]; then
		dpkg-deb --fsys-tarfile linux-source-*.deb | tar -xO --wildcards '*/linux-source-*.tar.xz' |
			tar -xJO --wildcards '*/samples/vfio-mdev/mtty.c' >mtty/mtty.c || fail "no samples/vfio-mdev/mtty.c in linux-source"
	fi
	echo 'obj-m := mtty.o' >mtty/Kbuild
	headers=$work/unpacked/usr/src/linux-headers-$kver
	# its Makefile includes the -common tree by its installed path: point it here
	common=$(ls -d "$work"/unpacked/usr/src/linux-headers-*-common | head -1)
	echo "include $common/Makefile" >"$headers/Makefile"
	make -C "$headers" M="$work/mtty" CONFIG_DEBUG_INFO_BTF_MODULES= modules >mtty/build.log 2>&1 ||
		{ tail -30 mtty/build.log; fail "building mtty.ko failed"; }
fi
echo "vm-mtty: mtty.ko built ($(($(date +%s) - t0)) s)"

# ---- initramfs --------------------------------------------------------------------------
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules/$kver/extra}
/usr/bin/python3 - "$work/unpacked/lib/modules/$kver" "$root/lib/modules/$kver" <<'PY'
import lzma, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
deps = {}
for line in open(os.path.join(src, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
by_name = {os.path.basename(m).split(".ko")[0].replace("-", "_"): m for m in deps}
want = [by_name[n] for n in ("vfio", "vfio_iommu_type1", "mdev")]
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
print("vm-mtty: %d modules in the initramfs" % len(seen))
PY
cp mtty/mtty.ko "$root/lib/modules/$kver/extra/"
depmod -b "$root" "$kver"
cp "$(command -v busybox)" "$root/bin/busybox"
for bin in "$build/vm/mig_engine_check" "$build/xevf-agent-sim"; do
	cp "$bin" "$root/bin/"
	ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done
# two nodes' simulated hosts (1 PF, 2 VFs on xe-vfio-pci each); their VFs
# stand for mtty devices the VM creates (tests/doubles/mtty_devices.h)
for n in a b; do
	/usr/bin/python3 "$here/../sim/simhost.py" create "$root/hosts/$n" --pfs 1 --vfs 2 --no-extra-devices >/dev/null
done
# certificates of the docs/certificates.md profile
mkdir -p "$root/etc/xevf"
(
	cd "$root/etc/xevf"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=xevf-vm-ca 2>/dev/null
	for name in a b operator; do
		uri=urn:xevf:node:node-$name
		[ $name = operator ] && uri=urn:xevf:operator
		printf 'subjectAltName=IP:127.0.0.1,URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' $uri >$name.ext
		openssl req -newkey rsa:2048 -nodes -keyout $name.key -out $name.csr -subj /CN=$name 2>/dev/null
		openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 1 \
			-extfile $name.ext 2>/dev/null
	done
	rm -f ca.key ./*.csr ./*.ext
)
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"; }
cp "$here/mtty-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >initrd.gz

# ---- boot (TCG: no IOMMU needed, mdevs have emulated groups) -----------------------------
rm -f console.log
timeout 600 qemu-system-x86_64 -accel tcg -M q35 -m 1024 -smp 1 -nographic -no-reboot -net none \
	-kernel "$vmlinuz" -initrd initrd.gz -append "console=ttyS0 panic=-1 loglevel=4" </dev/null >console.log 2>&1 || true
grep -q "XEVF-MTTY: init" console.log || fail "the VM did not start our init; QEMU said: $(head -c 2000 console.log)"

# ---- what must have happened --------------------------------------------------------------
checks=0
expect() { # description, extended regex on the console
	if grep -Eq "$2" console.log; then
		echo "  ok  $1"
		checks=$((checks + 1))
	else
		fail "$1 (no console line matches: $2)"
	fi
}
expect "mtty.ko (built here) loaded into Debian's $kver" "XEVF-MTTY: mtty loaded"
expect "three mtty devices with emulated VFIO groups" "XEVF-MTTY: devices .* groups [0-9]+ [0-9]+ [0-9]+"
expect "the engine probed STOP_COPY | P2P | PRE_COPY on a device named by a 36-character UUID" "MIG: ok probe: flags 0x7"
expect "a second opener of a held device gets EBUSY" "MIG: ok a second opener of a held device gets EBUSY"
expect "save with PRE_COPY into the second device: its UART has the source's registers and FIFO" \
	"MIG: ok save with PRE_COPY, restore into the second device: .*FIFO 'xevf'"
expect "... and without PRE_COPY" "MIG: ok save without PRE_COPY, restore into the second device: .*FIFO 'xevf'"
expect "a corrupted stream is refused, the target reset" "MIG: ok a corrupted stream is refused"
expect "a truncated stream is refused, the target reset" "MIG: ok a truncated stream is refused"
expect "an oversized stream is refused, the target reset" "MIG: ok an oversized stream is refused"
expect "a 2-port state is refused by a 1-port device" "MIG: ok a 2-port state is refused by a 1-port device"
expect "a failed save walks the source back to RUNNING with its UART" "MIG: ok a save whose target goes away walks the source back"
expect "no check failed" "MIG: done, 0 failed"
grep -q "MIG: FAIL" console.log && fail "$(grep 'MIG: FAIL' console.log | head -5)"
# two agents, their Migration services over mutual TLS, on real mtty devices
expect "two agents serve their Migration services (mutual TLS) on mtty devices" "XEVF-MTTY: agents serving"
expect "describe: the source VF, opened through its 36-character mdev name, is migratable with the device's flags" \
	"XEVF-MTTY:   vf 0000:03:00.1 on node-a: .*migration flags 0x7, migratable"
expect "check: both of node-b's VFs can take it" "XEVF-MTTY:   2 of 2 VFs on 127.0.0.1:9502 can take 0000:03:00.1"
expect "reserve: node-b set a VF aside" "XEVF-MTTY:   reserved 0000:03:00.[12] on 127.0.0.1:9502"
expect "send: node-a's agent streamed the real device state into node-b's agent" "XEVF-MTTY:   .*restored into 0000:03:00.[12]"
expect "node-b saw node-a's certificate identity" "AGENT-B: .*event=restore_started migration=m1 .*peer=urn:xevf:node:node-a"
expect "commit: the target device runs the state" \
	"XEVF-MTTY:   127.0.0.1:9502: migration m1 target VF 0000:03:00.[12]: committed, device RUNNING"
expect "... and the source device was reset" \
	"AGENT-A: .*event=migration_committed migration=m1 role=source vf=0000:03:00.1 device_state=RUNNING reset=yes"
expect "the target mtty's UART has what the source VM left: scratch registers and FIFO" \
	"MIG: uart [0-9a-f-]{36} scr0=0x5a scr1=0xa5 fifo='xevf'"
expect "abort after the state left: the source device walked back to RUNNING, no reset" \
	"AGENT-A: .*event=migration_aborted migration=m2 role=source vf=0000:03:00.1 device_state=RUNNING reset=no"
expect "... and the restored target was reset, never run" \
	"AGENT-B: .*event=migration_aborted migration=m2 role=target .*device_state=RUNNING reset=yes"
expect "SIGTERM stopped both agents cleanly" "XEVF-MTTY: agents exit 0 0"
echo "vm-mtty: $checks passed, 0 failed (tcg, $(($(date +%s) - t0)) s)"
