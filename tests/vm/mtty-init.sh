#!/bin/busybox sh
# PID 1 of the mtty VM (tests/vm/mtty.sh): loads mtty, makes three devices
# (two with 2 ports, one with 1) and runs the engine checks on them.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
echo "XEVF-MTTY: init"
say() { echo "XEVF-MTTY: $*"; }
for m in vfio vfio_iommu_type1 mdev mtty; do
	modprobe $m || say "FAIL modprobe $m"
done
grep -q '^mtty ' /proc/modules && say "mtty loaded"
types=/sys/class/mdev_bus/mtty/mdev_supported_types
a=5a1d7f3c-0000-4000-8000-00000000000a
b=5a1d7f3c-0000-4000-8000-00000000000b
c=5a1d7f3c-0000-4000-8000-00000000000c
echo $a >$types/mtty-2/create
echo $b >$types/mtty-2/create
echo $c >$types/mtty-1/create
group() { basename "$(readlink /sys/bus/mdev/devices/$1/iommu_group)"; }
ga=$(group $a) gb=$(group $b) gc=$(group $c)
say "devices $a $b $c groups $ga $gb $gc"
ls -l /dev/vfio
/bin/mig_engine_check $a $ga $b $gb $c $gc
say "check exit $?"
poweroff -f
