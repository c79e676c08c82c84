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

# ---- two agents on three fresh mtty devices (mtty's state is sticky) ----
ip link set lo up
x=5a1d7f3c-0000-4000-8000-00000000000d
y=5a1d7f3c-0000-4000-8000-00000000000e
z=5a1d7f3c-0000-4000-8000-00000000000f
for u in $x $y $z; do echo $u >$types/mtty-2/create; done
gx=$(group $x) gy=$(group $y) gz=$(group $z)
echo "0000:03:00.1 $x $gx" >/tmp/map-a
printf '0000:03:00.1 %s %s\n0000:03:00.2 %s %s\n' $y $gy $z $gz >/tmp/map-b
/bin/mig_engine_check uart-write $x $gx 0x5a
start_agent() { # node, port
	mkdir -p /run/$1/plugins /run/$1/state
	/bin/xevf-agent-sim --mtty-map /tmp/map-$1 --sysfs-root /hosts/$1/sys --dev-root /hosts/$1/dev \
		--plugin-dir /run/$1/plugins --modules-root /nonexistent --kernel-release test --http-port -1 \
		--status-socket "" --migration-socket /run/$1/migration.sock --migration-address 127.0.0.1:$2 \
		--tls-ca /etc/xevf/ca.crt --tls-cert /etc/xevf/$1.crt --tls-key /etc/xevf/$1.key \
		--state-dir /run/$1/state --node-name node-$1 >/tmp/agent-$1.log 2>&1 &
}
start_agent a 9501
pa=$!
start_agent b 9502
pb=$!
for i in $(seq 150); do
	grep -q event=migration_serving /tmp/agent-a.log && grep -q event=migration_serving /tmp/agent-b.log && break
	sleep 0.2
done
grep -q event=migration_serving /tmp/agent-b.log && say "agents serving"
S="--source /run/a/migration.sock"
T="--target 127.0.0.1:9502"
TLS="--tls-ca /etc/xevf/ca.crt --tls-cert /etc/xevf/operator.crt --tls-key /etc/xevf/operator.key"
run() { # the operator's CLI; its output on the console
	echo "XEVF-MTTY: \$ migrate $*"
	/bin/xevf-agent-sim migrate "$@" >/tmp/out 2>&1
	echo "XEVF-MTTY:   exit $?"
	sed 's/^/XEVF-MTTY:   /' /tmp/out
}
run describe --vf 0000:03:00.1 $S
run check --vf 0000:03:00.1 $S $T $TLS
run reserve --id m1 --vf 0000:03:00.1 --vm default/vm1 $S $T $TLS
got=$(sed -n 's/.*reserved \(0000:03:00\.[12]\) on.*/\1/p' /tmp/out)
run send --id m1 --vf 0000:03:00.1 $S $T
run commit --id m1 $S $T $TLS
set -- $(grep "^$got " /tmp/map-b)
[ -n "${2:-}" ] && /bin/mig_engine_check uart-read $2 $3
# the state leaves again, then the orchestrator gives up: abort on both sides
run reserve --id m2 --vf 0000:03:00.1 --vm default/vm2 $S $T $TLS
run send --id m2 --vf 0000:03:00.1 $S $T
run abort --id m2 $S $T $TLS
# abort mid-stream: node-b stops answering (SIGSTOP) while node-a streams the state to it
run reserve --id m3 --vf 0000:03:00.1 --vm default/vm3 $S $T $TLS
kill -STOP $pb
/bin/xevf-agent-sim migrate send --id m3 --vf 0000:03:00.1 $S $T >/tmp/send3 2>&1 &
ps=$!
sleep 3
run abort --id m3 $S
wait $ps
echo "XEVF-MTTY: send m3 exit $?"
sed 's/^/XEVF-MTTY:   /' /tmp/send3
kill -CONT $pb
run abort --id m3 $T $TLS
kill -TERM $pa $pb
wait $pa
ea=$?
wait $pb
say "agents exit $ea $?"
sed 's/^/AGENT-A: /' /tmp/agent-a.log
sed 's/^/AGENT-B: /' /tmp/agent-b.log
poweroff -f
