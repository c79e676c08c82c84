#!/bin/bash
# Real-kernel test: Debian's own kernel under qemu-system-x86_64 with an
# emulated SR-IOV PCI device (QEMU's NVMe with sriov_max_vfs) behind an
# emulated Intel IOMMU. Inside the VM the agent enables the VFs, finds their
# VFIO driver through the real modules.alias with libkmod, loads it, binds the
# VFs, registers with kubelet_min and answers Allocate with the real /dev/vfio
# nodes; then a VF is unbound from outside, then the VFs are removed.
#
# Fails with the reason on any miss, including when QEMU cannot start: it never
# skips. Usage: tests/vm/run.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
work=$build/vm
mkdir -p "$work"
cd "$work"
t0=$(date +%s)
vm_test=""
. "$here/common.sh"
need_tools qemu-system-x86_64 busybox depmod cpio

# ---- the kernel: Debian's, unpacked, not installed ------------------------------
if ! ls linux-image-*.deb >/dev/null 2>&1; then
	resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
	pkg=$(resolve)
	if [ -z "$pkg" ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		pkg=$(resolve)
	fi
	[ -n "$pkg" ] || fail "apt-cache cannot resolve linux-image-amd64 (apt-get update failed?)"
	apt-get download "$pkg" >/dev/null 2>&1 || fail "apt-get download $pkg failed"
fi
deb=$(ls linux-image-*.deb | head -1)
if [ ! -d kernel ] || [ kernel -ot "$deb" ]; then
	rm -rf kernel
	dpkg -x "$deb" kernel
fi
kver=$(ls kernel/lib/modules | head -1)
vmlinuz=kernel/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || fail "no kernel image in $deb"
echo "vm: kernel $kver from $deb"
[ -f kernel/lib/modules/$kver/modules.dep ] || depmod -b kernel "$kver"

# doctor on Debian's own build configuration of this kernel (a file: read on this side)
rm -rf doctor-host
/usr/bin/python3 "$here/../sim/simhost.py" create --pfs 1 --vfs 1 doctor-host >/dev/null
doctor_rc=0
"$build/xevf-agent" doctor --sysfs-root doctor-host/sys --dev-root doctor-host/dev --boot-root kernel/boot \
	--proc-root doctor-host/proc --modules-root kernel/lib/modules --kernel-release "$kver" >doctor.log 2>&1 ||
	doctor_rc=$?
echo "doctor exit $doctor_rc" >>doctor.log

# ---- initramfs ---------------------------------------------------------------------
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules/$kver}
# Module closure of what the test needs, from the kernel's own modules.dep.
/usr/bin/python3 - "$work/kernel/lib/modules/$kver" "$root/lib/modules/$kver" <<'EOF'
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
deps = {}
for line in open(os.path.join(src, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
by_name = {os.path.basename(m)[:-3].replace("-", "_"): m for m in deps}
want = [by_name[n] for n in ("nvme", "vfio_pci", "vfio_iommu_type1")]
seen = set()
while want:
    m = want.pop()
    if m in seen:
        continue
    seen.add(m)
    want.extend(deps[m])
for m in sorted(seen):
    os.makedirs(os.path.join(dst, os.path.dirname(m)), exist_ok=True)
    shutil.copy(os.path.join(src, m), os.path.join(dst, m))
for f in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
    if os.path.exists(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), dst)
print("vm: %d modules in the initramfs" % len(seen))
EOF
depmod -b "$root" "$kver"
cp "$(command -v busybox)" "$root/bin/busybox"
copy_with_libs "$build/xevf-agent" "$root"
copy_with_libs "$build/vm/kubelet_min" "$root"
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
pack_initramfs "$root"
echo "vm: initramfs $(du -h initrd.gz | cut -f1)"

# ---- boot -----------------------------------------------------------------------------
qemu_args=(-M q35 -device intel-iommu -m 1024 -smp 1 -nographic -no-reboot -net none
	-kernel "$vmlinuz" -initrd initrd.gz
	-append "console=ttyS0 intel_iommu=on panic=-1 loglevel=4"
	-device nvme-subsys,id=subsys0
	-device nvme,serial=xevf0001,subsys=subsys0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=5)

boot() { # accel, seconds
	rm -f console.log
	timeout "$2" qemu-system-x86_64 -accel "$1" "${qemu_args[@]}" </dev/null >console.log 2>&1 || true
}
accel=tcg
if [ -w /dev/kvm ]; then
	# KVM when it works: on some hosts the guest hangs after the firmware, so a
	# boot that shows no sign of our init within a short while falls back to TCG.
	boot kvm 25
	if grep -q "XEVF-VM: init" console.log; then accel=kvm; else echo "vm: KVM boot showed nothing in 25 s, using TCG"; fi
fi
if [ "$accel" = tcg ]; then
	boot tcg 400
fi
grep -q "XEVF-VM: init" console.log || fail "the VM did not start our init (accel $accel); QEMU said: $(head -c 2000 console.log)"
echo "vm: booted with $accel in $(($(date +%s) - t0)) s (since the start of this script)"

# ---- what must have happened ------------------------------------------------------------
expect "the PF is an SR-IOV NVMe (1b36:0010) with 2 VFs possible" "XEVF-VM: PF [0-9a-f:.]+ totalvfs 2"
expect "the agent enabled 2 VFs through sriov_numvfs" "event=numvfs_set pf=[0-9a-f:.]+ vfs=2"
expect "the agent named the missing xe-vfio-pci and CONFIG_XE_VFIO_PCI, with the kernel release" \
	"event=vfio_variant_missing kernel=$kver .*xe-vfio-pci is missing. CONFIG_XE_VFIO_PCI is off by default"
expect "libkmod found vfio_pci through modules.alias, loaded it, and the agent bound VF 1" \
	"event=vf_bound pci=0000:00:0[0-9a-f].1 driver=vfio-pci module=vfio_pci migratable=false"
expect "... and VF 2" "event=vf_bound pci=0000:00:0[0-9a-f].2 driver=vfio-pci module=vfio_pci migratable=false"
expect "the vfio_pci module is really loaded in the kernel" "XEVF-VM: lsmod has vfio_pci"
expect "the kernel made real /dev/vfio group nodes" "XEVF-VM: vfio nodes .*/dev/vfio/vfio"
expect "the agent registered with kubelet_min" "KUBELET registered version=v1beta1 resource=example.com/nvme_vf"
expect "ListAndWatch listed both VFs healthy" "KUBELET list t=[0-9.]+ n=2 [0-9a-f:.]+=Healthy [0-9a-f:.]+=Healthy"
expect "Allocate gave the KubeVirt env var with both VFs" \
	"KUBELET allocate env PCI_RESOURCE_EXAMPLE_COM_NVME_VF=0000:00:0[0-9a-f].1,0000:00:0[0-9a-f].2"
expect "Allocate gave /dev/vfio/vfio, a real char device" "KUBELET allocate device /dev/vfio/vfio char-device rw"
expect "Allocate gave the VFs' group nodes, real char devices" "KUBELET allocate device /dev/vfio/[0-9]+ char-device rw"
grep -q "KUBELET allocate device .* MISSING" console.log && fail "Allocate named a device node that does not exist"
expect "a VF unbound from outside turned Unhealthy in ListAndWatch (the kernel's uevent: no rescan was due)" \
	"KUBELET list t=[0-9.]+ n=2 .*=Unhealthy"
unbound_at=$(sed -n 's/.*XEVF-VM: unbinding .* at \([0-9.]*\).*/\1/p' console.log | head -1)
listed_at=$(sed -n 's/.*KUBELET list t=\([0-9.]*\) n=2 .*=Unhealthy.*/\1/p' console.log | head -1)
echo "vm: uevent to ListAndWatch: $(awk -v a="$unbound_at" -v b="$listed_at" 'BEGIN {printf "%.0f", (b - a) * 1000}') ms" \
	"(unbind written at /proc/uptime's 10 ms resolution; $accel)"
expect "the agent said why" "event=vf_unhealthy resource=example.com/nvme_vf pci=[0-9a-f:.]+ reason=\"not bound to any driver"
expect "removing the PF's VFs emptied the list" "KUBELET list t=[0-9.]+ n=0"
expect "the agent kept running after the VFs were removed" "XEVF-VM: agent alive after VF removal"
expect "the agent put numVFs back and bound the new VFs to vfio-pci" "XEVF-VM: VFs restored"
expect "the Migration service opened a real VF through VFIO and got ENOTTY: not migratable on vfio-pci" \
	"XEVF-VM: describe [0-9a-f:.]+: .*migration flags 0x0, [0-9a-f:.]+: not migratable: its driver \(vfio-pci\) offers no VFIO migration \(VFIO_DEVICE_FEATURE_MIGRATION: Inappropriate ioctl for device\)"
expect "SIGTERM stopped the agent cleanly" "XEVF-VM: agent exit 0"
expect "doctor read Debian's own config of kernel $kver: no CONFIG_XE_VFIO_PCI, so no VF can migrate" \
	"blocks +kernel config +kernel $kver (is built without|has no) CONFIG_XE_VFIO_PCI.*kernel/boot/config-$kver" doctor.log
expect "... and the kernel's modules have no xe-vfio-pci for a Battlemage VF" \
	"blocks +xe-vfio-pci module +kernel/lib/modules/$kver has no xe-vfio-pci for these VFs" doctor.log
expect "... so doctor exits 3" "doctor exit 3" doctor.log
grep -q "XEVF-VM: FAIL" console.log && fail "$(grep 'XEVF-VM: FAIL' console.log | head -3)"
echo "vm: $checks passed, 0 failed ($accel, $(($(date +%s) - t0)) s)"
