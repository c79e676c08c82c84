#!/bin/busybox sh
# PID 1 of the L1 VM (tests/vm/qemu.sh): loads 9p, VFIO and mtty, mounts the
# root served over virtio-9p and switches to it (tests/vm/qemu-l1.sh).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
echo "XEVF-QEMU: init"
for m in 9pnet_virtio 9p vfio vfio_iommu_type1 mdev mtty; do
	modprobe $m || echo "XEVF-QEMU: FAIL modprobe $m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 root /newroot || echo "XEVF-QEMU: FAIL mounting the 9p root"
mount -t tmpfs tmp /newroot/tmp
mount -t tmpfs run /newroot/run
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /opt/xevf/qemu-l1.sh
