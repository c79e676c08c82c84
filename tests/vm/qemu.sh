#!/bin/bash
# Real-QEMU migration test: a real QEMU (bookworm-backports' QEMU 10, VFIO
# migration v2) live-migrates a small VM holding an mtty device inside an L1
# VM (bookworm-backports' 6.12 kernel with mtty.ko, kernel612.sh), the way
# KubeVirt drives it, while two agents coordinate around it and never open a
# device a QEMU holds (tests/vm/qemu_l1.py has the steps). The L1 root is a
# debootstrapped bookworm (QEMU, Python grpcio for the kubelet simulator, the
# agent's runtime libraries) served read-only over virtio-9p.
#
# Fails with the reason on any miss; never skips. Usage: tests/vm/qemu.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
work=$build/vm-qemu
mkdir -p "$work"
cd "$work"
t0=$(date +%s)
vm_test=qemu
. "$here/common.sh"
need_tools qemu-system-x86_64 busybox depmod cpio debootstrap chroot openssl protoc
[ "$(id -u)" -eq 0 ] || fail "debootstrap and chroot need root"
[ -x "$build/xevf-agent-sim" ] || fail "$build/xevf-agent-sim is not built (make test-vm builds it)"

. "$here/kernel612.sh"
. "$here/certs.sh"
kernel612 "$build/vm-612"
echo "vm-qemu: kernel $k612_kver, mtty.ko ($(($(date +%s) - t0)) s)"

# ---- the L1 root: bookworm with QEMU from bookworm-backports, once per build dir ----------------
root=$work/root
if [ ! -x "$root/usr/bin/qemu-system-x86_64" ]; then
	rm -rf "$root"
	mirror=$(papt_mirror) || fail "no Debian mirror in the machine's apt sources"
	runtime=$(awk '!/^#/ && NF {printf "%s,", $3}' "$repo/packages.list")
	# the mirror is the network: a download that broke once is tried again before the test fails
	for try in 1 2 3; do
		rm -rf "$root"
		debootstrap --variant=minbase --include="${runtime}python3,python3-grpcio,python3-protobuf,kmod" \
			bookworm "$root" "$mirror" >debootstrap.log 2>&1 && break
		[ "$try" -lt 3 ] || { tail -20 debootstrap.log; fail "debootstrap failed (3 tries)"; }
		echo "vm-qemu: debootstrap failed (try $try): $(tail -1 debootstrap.log); trying again"
		sleep 10
	done
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-backports main" \
		>"$root/etc/apt/sources.list.d/backports.list"
	for try in 1 2 3; do
		chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends -t bookworm-backports qemu-system-x86 seabios && apt-get clean' \
			>qemu-install.log 2>&1 && break
		[ "$try" -lt 3 ] || { tail -20 qemu-install.log; fail "installing bookworm-backports' QEMU into the root failed (3 tries)"; }
		echo "vm-qemu: installing QEMU into the root failed (try $try): $(tail -1 qemu-install.log); trying again"
		sleep 10
	done
fi
qver=$(chroot "$root" qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
[ "$(printf '%s\n8.1\n' "$qver" | sort -V | head -1)" = 8.1 ] || fail "QEMU $qver in the root predates VFIO migration v2 (8.1)"
echo "vm-qemu: root with QEMU $qver ($(($(date +%s) - t0)) s)"

# our part of the root, fresh each run
opt=$root/opt/xevf
rm -rf "$opt"
mkdir -p "$opt"/{bin,sim,pygen,hosts}
cp "$build/xevf-agent-sim" "$(command -v busybox)" "$opt/bin/"
missing=$(chroot "$root" ldd /opt/xevf/bin/xevf-agent-sim | grep "not found" || true)
[ -z "$missing" ] || fail "the root lacks libraries of the agent: $missing"
cp "$repo/tests/sim/kubelet_sim.py" "$repo/tests/sim/migration_client.py" "$opt/sim/"
protoc --proto_path="$repo/proto" --python_out="$opt/pygen" "$repo/proto/deviceplugin/v1beta1/api.proto"
cp "$here/qemu_l1.py" "$here/qemu-l1.sh" "$opt/"
# the simulated hosts' VFs have the IOMMU groups of the mdevs they stand for (A: 0; B, C: 1, 2)
/usr/bin/python3 "$repo/tests/sim/simhost.py" create "$opt/hosts/a" --pfs 1 --vfs 1 --no-extra-devices --first-group 0 >/dev/null
/usr/bin/python3 "$repo/tests/sim/simhost.py" create "$opt/hosts/b" --pfs 1 --vfs 2 --no-extra-devices --first-group 1 >/dev/null
make_vm_certs "$opt/certs" || fail "making the agents' certificates failed"

# ---- the L1 initramfs: 9p root, VFIO, mtty ------------------------------------------------------
initramfs=$work/initramfs
rm -rf "$initramfs"
mkdir -p "$initramfs"/{bin,proc,sys,dev,newroot}
echo "vm-qemu: $(pack_modules "$initramfs" 9p 9pnet_virtio vfio vfio_iommu_type1 mdev) in the initramfs"
cp "$(command -v busybox)" "$initramfs/bin/busybox"
cp "$here/qemu-init.sh" "$initramfs/init"
chmod +x "$initramfs/init"
pack_initramfs "$initramfs"

# ---- boot L1 (TCG; the L2 VMs run TCG inside it) ---------------------------------------------------
rm -f console.log
timeout 900 qemu-system-x86_64 -accel tcg -M q35 -cpu max -m 2048 -smp 2 -nographic -no-reboot -net none \
	-virtfs local,path="$root",mount_tag=root,security_model=none,readonly=on \
	-kernel "$k612_vmlinuz" -initrd initrd.gz -append "console=ttyS0 panic=-1 loglevel=4" \
	</dev/null >console.log 2>&1 || true
grep -q "XEVF-QEMU: init" console.log || fail "the L1 VM did not start our init; QEMU said: $(head -c 2000 console.log)"
grep -q "XEVF-QEMU: done" console.log || fail "the L1 test did not finish"

# ---- what must have happened ------------------------------------------------------------------------
while read -r line; do
	echo "  ${line#XEVF-QEMU: }"
	checks=$((checks + 1))
done < <(grep -a "^XEVF-QEMU: ok " console.log)
grep -aq "^XEVF-QEMU: FAIL" console.log && fail "$(grep -a '^XEVF-QEMU: FAIL' console.log | head -5)"
grep -aq "^XEVF-QEMU: done, 0 failed" console.log || fail "the L1 test says: $(grep -a '^XEVF-QEMU: done' console.log)"
[ "$checks" -ge 14 ] || fail "only $checks steps passed"
echo "vm-qemu: $checks passed, 0 failed (tcg, $(($(date +%s) - t0)) s)"
