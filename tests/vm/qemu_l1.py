#!/usr/bin/python3
"""Runs inside the L1 VM of tests/vm/qemu.sh: a real QEMU (>= 8.1, VFIO
migration v2) live-migrates a small VM holding an mtty device, the way
KubeVirt drives it, while two xevf agents (node-a, node-b) coordinate around
it and never open a device a QEMU holds.

Prints "XEVF-QEMU: ok <what>: <details>" or "XEVF-QEMU: FAIL <what>: <why>"
per step and "XEVF-QEMU: done, N failed" at the end. The kubelets are the
Python kubelet simulator (tests/sim/kubelet_sim.py), the operator is the
agent's own CLI over mutual TLS.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

OPT = "/opt/xevf"
sys.path.insert(0, os.path.join(OPT, "sim"))
os.environ["XEVF_PY_GEN"] = os.path.join(OPT, "pygen")
from kubelet_sim import KubeletSim, PluginClient  # noqa: E402

AGENT = os.path.join(OPT, "bin", "xevf-agent-sim")
RESOURCE = "intel.com/xe_vf"
TYPES = "/sys/class/mdev_bus/mtty/mdev_supported_types"
MTTY_ID = "4348:3253"
UUIDS = {"A": "5a1d7f3c-0000-4000-8000-0000000000a1", "B": "5a1d7f3c-0000-4000-8000-0000000000b2",
         "C": "5a1d7f3c-0000-4000-8000-0000000000c3"}
failures = 0


def say(ok, what, details=""):
    global failures
    failures += not ok
    print("XEVF-QEMU: %s %s%s" % ("ok" if ok else "FAIL", what, ": " + details if details else ""), flush=True)
    return ok


class Qmp:
    """A QEMU's QMP socket (and its HMP through human-monitor-command)."""

    def __init__(self, path, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rwb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            msg = json.loads(self.file.readline())
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError("%s: %s" % (name, reply["error"].get("desc")))
        return reply["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})


class Vm:
    """A small VM (no guest OS: SeaBIOS assigns the BARs) holding one mtty device."""

    def __init__(self, name, uuid, incoming=None):
        self.name = name
        self.qmp_path = "/tmp/%s.qmp" % name
        args = ["qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-m", "64", "-nodefaults", "-vga", "none",
                "-net", "none", "-display", "none", "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-device", "vfio-pci,sysfsdev=/sys/bus/mdev/devices/%s,enable-migration=on,"
                "x-device-dirty-page-tracking=off" % uuid,
                # the VFIO migration states QEMU sets, in its log
                "-trace", "vfio_migration_set_state"]
        if incoming:
            args += ["-incoming", "defer"]  # listening once the capabilities are set
        self.log = open("/tmp/%s.log" % name, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.qmp = Qmp(self.qmp_path)
        if incoming:
            self.qmp.cmd("migrate-set-capabilities", capabilities=RETURN_PATH)
            self.qmp.cmd("migrate-incoming", uri=incoming)

    def bars(self, timeout=90):
        """The I/O ports of the mtty's two BARs, once the firmware assigned them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.qmp.hmp("info pci")
            block = text[text.find(MTTY_ID):] if MTTY_ID in text else ""
            found = re.findall(r"BAR(\d): I/O at (0x[0-9a-f]+)", block)
            ports = {int(n): int(a, 16) for n, a in found}
            if ports.get(0) and ports.get(1) and ports[0] < 0xffff and ports[1] < 0xffff:
                return ports[0], ports[1]
            time.sleep(0.5)
        raise RuntimeError("%s: the firmware assigned no I/O BARs to the mtty device: %s" % (self.name, text))

    def out(self, port, value):
        self.qmp.hmp("o /b 0x%x 0x%x" % (port, value))

    def inb(self, port):
        m = re.search(r"= (0x[0-9a-f]+)", self.qmp.hmp("i /b 0x%x" % port))
        return int(m.group(1), 16) if m else -1

    def states(self):
        """The VFIO migration states QEMU set so far (its trace)."""
        self.log.flush()
        with open("/tmp/%s.log" % self.name) as f:
            return re.findall(r"vfio_migration_set_state.*?new state (\w+)", f.read())

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def quit(self):
        if self.proc.poll() is None:
            try:
                self.qmp.cmd("quit")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_uart(vm, bar0, bar1, scr):
    vm.out(bar0 + 7, scr)
    vm.out(bar1 + 7, scr ^ 0xff)
    for c in b"xevf":
        vm.out(bar0, c)


def read_uart(vm, bar0, bar1):
    return vm.inb(bar0 + 7), vm.inb(bar1 + 7), bytes(vm.inb(bar0) & 0xff for _ in range(4))


def make_mdevs():
    for name, ports in (("A", 2), ("B", 2), ("C", 1)):
        with open("%s/mtty-%d/create" % (TYPES, ports), "w") as f:
            f.write(UUIDS[name])
    return {n: os.path.basename(os.readlink("/sys/bus/mdev/devices/%s/iommu_group" % u)) for n, u in UUIDS.items()}


def start_agent(node, port, mapping):
    with open("/tmp/map-%s" % node, "w") as f:
        for vf, (uuid, group) in mapping.items():
            f.write("%s %s %s\n" % (vf, uuid, group))
    for d in ("plugins", "state"):
        os.makedirs("/run/%s/%s" % (node, d), exist_ok=True)
    kubelet = KubeletSim("/run/%s/plugins" % node).start()
    args = [AGENT, "--mtty-map", "/tmp/map-" + node, "--sysfs-root", "%s/hosts/%s/sys" % (OPT, node),
            "--dev-root", "%s/hosts/%s/dev" % (OPT, node), "--plugin-dir", "/run/%s/plugins" % node,
            "--modules-root", "/nonexistent", "--kernel-release", "test", "--http-port", "-1", "--status-socket", "",
            "--migration-socket", "/run/%s/migration.sock" % node, "--migration-address", "127.0.0.1:%d" % port,
            "--tls-ca", OPT + "/certs/ca.crt", "--tls-cert", "%s/certs/%s.crt" % (OPT, node),
            "--tls-key", "%s/certs/%s.key" % (OPT, node), "--state-dir", "/run/%s/state" % node,
            "--node-name", "node-" + node, "--rescan-interval", "200"]
    log = open("/tmp/agent-%s.log" % node, "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    kubelet.wait_registration(RESOURCE, timeout=60)
    return proc, kubelet, PluginClient("/run/%s/plugins/xevf-intel.com_xe_vf.sock" % node)


TLS = ["--tls-ca", OPT + "/certs/ca.crt", "--tls-cert", OPT + "/certs/operator.crt",
       "--tls-key", OPT + "/certs/operator.key"]
SRC = ["--source", "/run/a/migration.sock"]
DST = ["--target", "127.0.0.1:9502"]


def migrate(*args):
    r = subprocess.run([AGENT, "migrate", *args], capture_output=True, text=True, timeout=120)
    return r.returncode, (r.stdout + r.stderr).strip()


# Both sides with a return path: the source then waits for the target's word that it loaded the state. Without
# it a target that refuses the device state after the last byte has gone leaves the source "completed" and paused
# (postmigrate) rather than failed and running; which of the two a run saw depended on timing.
RETURN_PATH = [{"capability": "return-path", "state": True}]


def live_migrate(src, dst_uri):
    src.qmp.cmd("migrate-set-capabilities", capabilities=RETURN_PATH)
    src.qmp.cmd("migrate", uri=dst_uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = src.qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.1)
    return {"status": "timeout"}


def main():
    groups = make_mdevs()
    # the simulated hosts were made with these groups: node-a's VF is A, node-b's are B and C
    if not say(groups == {"A": "0", "B": "1", "C": "2"}, "mtty devices A, B (2 ports) and C (1 port)",
               "groups %s" % groups):
        return
    agent_a, kubelet_a, plugin_a = start_agent("a", 9501, {"0000:03:00.1": (UUIDS["A"], "0")})
    agent_b, kubelet_b, plugin_b = start_agent("b", 9502, {"0000:03:00.1": (UUIDS["B"], "1"),
                                                           "0000:03:00.2": (UUIDS["C"], "2")})
    say(True, "both agents registered with their kubelets (the Python simulator)")
    vf = "0000:03:00.1"
    # the source VM's pod got the VF; its QEMU holds it
    plugin_a.allocate([[vf]])
    src = Vm("source", UUIDS["A"])
    bar0, bar1 = src.bars()
    write_uart(src, bar0, bar1, 0x5a)
    say(src.status() == "running", "the source VM runs with mtty A", "UART at 0x%x/0x%x written" % (bar0, bar1))
    # 1. described without opening it: QEMU holds it
    rc, out = migrate("describe", "--vf", vf, *SRC)
    say(rc == 0 and "migration flags 0x0, migratable" in out, "node-a describes the VF its QEMU holds without opening it",
        out)
    # 2. node-b checks and reserves; the target pod gets the reserved VF; the target QEMU waits for the state
    rc, out = migrate("reserve", "--id", "kv-1", "--vf", vf, "--vm", "default/vm1", *SRC, *DST, *TLS)
    m = re.search(r"reserved (\S+) on", out)
    say(rc == 0 and m and m.group(1) == "0000:03:00.1", "node-b reserves its 2-port VF", out)
    reserved = m.group(1) if m else "0000:03:00.1"
    got = list(plugin_b.preferred(["0000:03:00.1", "0000:03:00.2"], [], 1).container_responses[0].deviceIDs)
    plugin_b.allocate([got])
    say(got == [reserved], "the target pod's allocation gets the reserved VF", str(got))
    dst = Vm("target", UUIDS["B"], incoming="tcp:127.0.0.1:4444")
    rc, out = migrate("handover", "--id", "kv-1", "--vf", vf, *SRC)
    say(rc == 0 and "handed-over" in out, "node-a records its side without opening the VF", out)
    # 3. QEMU migrates the VM, the VF's state inside its own stream
    t0 = time.monotonic()
    info = live_migrate(src, "tcp:127.0.0.1:4444")
    took = time.monotonic() - t0
    say(info.get("status") == "completed", "QEMU live-migrates the VM with its VFIO device",
        "status %s, total %s ms, downtime %s ms, %.2f s here" % (info.get("status"), info.get("total-time"),
                                                                info.get("downtime"), took))
    for vm in (src, dst):
        say(True, "the %s QEMU walked its VFIO device through" % vm.name, " -> ".join(vm.states()))
    got = read_uart(dst, bar0, bar1)
    say(got == (0x5a, 0xa5, b"xevf") and dst.status() == "running",
        "the target VM's mtty B has the source's UART: scratch registers and FIFO",
        "scr0 0x%x scr1 0x%x fifo %r, target %s" % (got[0], got[1], got[2], dst.status()))
    # 4. commit: the source VF waits for its QEMU to go; the target's commit leaves its VF to QEMU
    rc, out = migrate("commit", "--id", "kv-1", *SRC)
    say(rc == 1 and "is in use" in out, "node-a refuses to reset the VF while the source QEMU holds it", out)
    rc, out = migrate("commit", "--id", "kv-1", *DST, *TLS)
    say(rc == 0 and "target VF %s: committed" % reserved in out, "node-b commits: the reservation is the pod's", out)
    src.quit()
    rc, out = migrate("commit", "--id", "kv-1", *SRC)
    say(rc == 0 and "source VF %s: committed, device RUNNING" % vf in out,
        "node-a resets the VF once the source QEMU released it", out)
    # 5. an incompatible target (1 port for a 2-port state): QEMU's migration fails, the source runs on
    src = Vm("source2", UUIDS["A"])
    bar0, bar1 = src.bars()
    write_uart(src, bar0, bar1, 0x3c)
    rc, out = migrate("reserve", "--id", "kv-2", "--vf", vf, "--vm", "default/vm2", *SRC, *DST, *TLS)
    m = re.search(r"reserved (\S+) on", out)
    say(rc == 0 and m and m.group(1) == "0000:03:00.2",
        "node-b reserves its other VF (the first is in use by the target VM)", out)
    bad = Vm("target2", UUIDS["C"], incoming="tcp:127.0.0.1:4445")
    rc, out = migrate("handover", "--id", "kv-2", "--vf", vf, *SRC)
    info = live_migrate(src, "tcp:127.0.0.1:4445")
    time.sleep(1)
    got = read_uart(src, bar0, bar1)
    say(info.get("status") == "failed" and src.status() == "running" and got[0] == 0x3c,
        "QEMU's migration to the 1-port device fails and the source VM runs on with its state",
        "status %s (%s), source %s, scr0 0x%x" % (info.get("status"), info.get("error-desc", ""), src.status(), got[0]))
    rc_b, out_b = migrate("abort", "--id", "kv-2", *DST, *TLS)
    rc_a, out_a = migrate("abort", "--id", "kv-2", *SRC)
    say(rc_a == 0 and rc_b == 0 and "aborted" in out_a and "aborted" in out_b,
        "abort frees the target VF and leaves the source VF to its VM", out_b + " / " + out_a)
    for vm in (src, bad, dst):
        vm.quit()
    for proc in (agent_a, agent_b):
        proc.terminate()
    codes = [p.wait(30) for p in (agent_a, agent_b)]
    say(codes == [0, 0], "SIGTERM stops both agents cleanly", str(codes))
    for k in (kubelet_a, kubelet_b):
        k.stop()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every miss is a reported failure
        say(False, "the test itself", "%s: %s" % (type(e).__name__, e))
    for node in ("a", "b"):
        if os.path.exists("/tmp/agent-%s.log" % node):
            with open("/tmp/agent-%s.log" % node) as f:
                for line in f:
                    print("AGENT-%s: %s" % (node.upper(), line.rstrip()))
    for name in ("source", "target", "source2", "target2"):
        if os.path.exists("/tmp/%s.log" % name):
            with open("/tmp/%s.log" % name) as f:
                for line in f:
                    print("QEMU-%s: %s" % (name, line.rstrip()))
    print("XEVF-QEMU: done, %d failed" % failures, flush=True)
