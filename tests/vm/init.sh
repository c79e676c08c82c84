#!/bin/busybox sh
# /init of the real-kernel test VM (busybox). Prints "XEVF-VM: ..." lines that
# tests/vm/run.sh checks; the agent's and kubelet_min's output go to the
# console too. Always powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run/plugins /etc/xevf
echo "XEVF-VM: init started, kernel $(uname -r)"

finish() {
	echo "XEVF-VM: end"
	sync
	poweroff -f
}

modprobe nvme || echo "XEVF-VM: FAIL modprobe nvme"
PF=""
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1b36 ] && [ "$(cat "$d/device")" = 0x0010 ]; then PF=$(basename "$d"); fi
done
[ -n "$PF" ] || { echo "XEVF-VM: FAIL no emulated NVMe PF"; finish; }
i=0
while [ ! -e "/sys/bus/pci/devices/$PF/driver" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "XEVF-VM: PF $PF totalvfs $(cat /sys/bus/pci/devices/$PF/sriov_totalvfs) driver $(basename "$(readlink /sys/bus/pci/devices/$PF/driver)")"

cat > /etc/xevf/config.json <<EOF
{
  "pools": [
    {
      "resourceName": "example.com/nvme_vf",
      "selector": {"pfAddresses": ["$PF"]},
      "numVFs": 2,
      "fallback": "vfio-pci"
    }
  ],
  "rescanIntervalMs": 600000
}
EOF

/bin/kubelet_min /run/plugins 2 240 &
KUBELET=$!
/bin/xevf-agent --config /etc/xevf/config.json --plugin-dir /run/plugins --state-dir /run/xevf-state &
AGENT=$!

wait_for() { # seconds, command...
	n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
vf_count() { ls -d /sys/bus/pci/devices/$PF/virtfn* 2>/dev/null | wc -l; }
bound_vfs() {
	c=0
	for v in /sys/bus/pci/devices/$PF/virtfn*; do
		[ "$(basename "$(readlink "$v/driver" 2>/dev/null)")" = vfio-pci ] && c=$((c + 1))
	done
	echo $c
}

vfs_bound_are() { [ "$(bound_vfs)" = "$1" ]; }
wait_for 120 vfs_bound_are 2 || echo "XEVF-VM: FAIL the VFs were not bound to vfio-pci"
grep -q '^vfio_pci ' /proc/modules && echo "XEVF-VM: lsmod has vfio_pci"
echo "XEVF-VM: vfio nodes $(ls /dev/vfio/* | tr '\n' ' ')"
sleep 3

VF1=$(basename "$(readlink /sys/bus/pci/devices/$PF/virtfn0)")
# the full rescan is ten minutes away: only the kernel's uevent can tell
echo "XEVF-VM: unbinding $VF1 from vfio-pci at $(cut -d' ' -f1 /proc/uptime)"
echo "$VF1" > /sys/bus/pci/drivers/vfio-pci/unbind
sleep 4

echo "XEVF-VM: removing the VFs of $PF"
echo 0 > "/sys/bus/pci/devices/$PF/sriov_numvfs"
sleep 3
if kill -0 $AGENT 2>/dev/null; then echo "XEVF-VM: agent alive after VF removal"; fi
# numVFs is configuration: the agent restores it and binds the new VFs
if wait_for 60 vfs_bound_are 2; then echo "XEVF-VM: VFs restored"; fi
sleep 2

# The Migration service asks the real device: plain vfio-pci has no migration
# support, so VFIO_DEVICE_FEATURE_MIGRATION answers ENOTTY. (A host loads the
# type1 IOMMU backend on first use; this initramfs has no usermode modprobe.)
modprobe vfio_iommu_type1 2>/dev/null
VF0=$(basename "$(readlink /sys/bus/pci/devices/$PF/virtfn0)")
echo "XEVF-VM: describe $VF0: $(/bin/xevf-agent migrate describe --vf "$VF0" 2>&1 | tr '\n' ' ')"

kill -TERM $AGENT
wait $AGENT
echo "XEVF-VM: agent exit $?"
kill $KUBELET 2>/dev/null
finish
