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
vm_test=mtty
. "$here/common.sh"
need_tools qemu-system-x86_64 busybox depmod cpio xz make gcc openssl
for bin in vm/mig_engine_check xevf-agent-sim; do
	[ -x "$build/$bin" ] || fail "$build/$bin is not built (make test-vm builds it)"
done

# ---- the 6.12 kernel and mtty.ko (kernel612.sh), shared with qemu.sh --------------------
. "$here/kernel612.sh"
kernel612 "$build/vm-612"
kver=$k612_kver
vmlinuz=$k612_vmlinuz
echo "vm-mtty: kernel $kver, mtty.ko built ($(($(date +%s) - t0)) s)"

# ---- initramfs --------------------------------------------------------------------------
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run}
echo "vm-mtty: $(pack_modules "$root" vfio vfio_iommu_type1 mdev) in the initramfs"
cp "$(command -v busybox)" "$root/bin/busybox"
copy_with_libs "$build/vm/mig_engine_check" "$root"
copy_with_libs "$build/xevf-agent-sim" "$root"
# two nodes' simulated hosts (1 PF, 2 VFs on xe-vfio-pci each); their VFs
# stand for mtty devices the VM creates (tests/doubles/mtty_devices.h)
for n in a b; do
	/usr/bin/python3 "$here/../sim/simhost.py" create "$root/hosts/$n" --pfs 1 --vfs 2 --no-extra-devices >/dev/null
done
# certificates of the docs/certificates.md profile
. "$here/certs.sh"
make_vm_certs "$root/etc/xevf" || fail "making the agents' certificates failed"
cp "$here/mtty-init.sh" "$root/init"
chmod +x "$root/init"
pack_initramfs "$root"

# ---- boot (TCG: no IOMMU needed, mdevs have emulated groups) -----------------------------
rm -f console.log
timeout 600 qemu-system-x86_64 -accel tcg -M q35 -m 1024 -smp 1 -nographic -no-reboot -net none \
	-kernel "$vmlinuz" -initrd initrd.gz -append "console=ttyS0 panic=-1 loglevel=4" </dev/null >console.log 2>&1 || true
grep -q "XEVF-MTTY: init" console.log || fail "the VM did not start our init; QEMU said: $(head -c 2000 console.log)"

# ---- what must have happened --------------------------------------------------------------
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
expect "abort mid-stream (the target stopped answering): the send ends at once with the reason" \
	"XEVF-MTTY:   .*SendState at /run/a/migration.sock: ABORTED: .*aborted"
expect "... and the real source device walked back to RUNNING without a reset" \
	"AGENT-A: .*event=save_failed migration=m3 .*device_state=RUNNING"
expect "SIGTERM stopped both agents cleanly" "XEVF-MTTY: agents exit 0 0"
echo "vm-mtty: $checks passed, 0 failed (tcg, $(($(date +%s) - t0)) s)"
