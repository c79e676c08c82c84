#!/bin/sh
# After switch_root in the L1 VM: the test (qemu_l1.py), then power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
/opt/xevf/bin/busybox ip link set lo up
python3 /opt/xevf/qemu_l1.py
/opt/xevf/bin/busybox poweroff -f
