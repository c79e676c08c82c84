"""Live migration between two agents on two simulated hosts, each with its own
kubelet simulator, on one machine. The source and target agents serve the
Migration service on a unix socket and on a TCP port with mutual TLS; VFIO
devices are the strict simulated devices (--vfio-sim), whose state lives in
files the tests read and write."""
import os
import pathlib
import re
import shutil
import tempfile
import subprocess
import sys
import time

import grpc
import http.server
import json
import threading
import urllib.parse

import pytest

from conftest import AGENT, AGENT_SIM, World

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
from migration_client import MigrationClient, mig_api  # noqa: E402
from kubelet_sim import api  # noqa: E402

RESOURCE = "intel.com/xe_vf"
ENV = "PCI_RESOURCE_INTEL_COM_XE_VF"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(d, name, ca, uri=None, usage="serverAuth,clientAuth", hosts="DNS:localhost,IP:127.0.0.1"):
    """A certificate of the docs/certificates.md profile (or, with other
    arguments, one that breaks it)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + name, cwd=d)
    sans = hosts + (",URI:" + uri if uri else "")
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (sans, usage))
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return tuple(os.path.join(d, name + s) for s in (".crt", ".key"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    out = {}
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".crt",
                "-days", "2", "-subj", "/CN=" + ca, cwd=d)
    out["ca"] = os.path.join(d, "ca.crt")
    out["ca-itself"] = (os.path.join(d, "ca.crt"), os.path.join(d, "ca.key"))
    for name in ("agent-a", "agent-b"):
        out[name] = make_cert(d, name, "ca", uri="urn:xevf:node:" + name)
    out["operator"] = make_cert(d, "operator", "ca", uri="urn:xevf:operator")
    # what the chart's cert-manager Certificate makes: one for all agents, named for no host
    out["shared"] = make_cert(d, "shared", "ca", uri="urn:xevf:agent", hosts="DNS:xevf-agent")
    out["no-identity"] = make_cert(d, "no-identity", "ca")
    out["stranger"] = make_cert(d, "stranger", "ca", uri="urn:example:stranger")
    out["server-only"] = make_cert(d, "server-only", "ca", uri="urn:xevf:operator", usage="serverAuth")
    out["rogue"] = make_cert(d, "rogue", "rogue-ca", uri="urn:xevf:operator")
    return out


class Node:
    """A simulated node: host, kubelet simulator, agent with the Migration service."""

    def __init__(self, tmp, name, certs, device_ids=None, vfs=2, extra=(), cert=None):
        self.name = name
        # unix socket paths must stay under 108 bytes: pytest's tmp_path is too deep
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="xevf-%s-" % name[-1]))
        self.world = World(self.dir)
        self.world.create_host(pfs=1, vfs=vfs, device_ids=device_ids, extra_devices=False)
        self.world.start_kubelet()
        self.sim = str(self.dir / "vfio-sim")
        os.makedirs(self.sim)
        self.sock = str(self.dir / "migration.sock")
        self.certs = certs
        self.cert = certs[cert or ("agent-a" if name == "node-a" else "agent-b")]
        self.agent = None
        self.port = None
        self.extra = list(extra)

    def vfs(self):
        return sorted(self.world.host.vfs_of("0000:03:00.0"))

    def state_file(self, vf):
        return os.path.join(self.sim, vf + ".state")

    def start(self):
        args = self.world.agent_args(
            "--node-name", self.name, "--vfio-sim", self.sim, "--migration-address", "127.0.0.1:0",
            "--tls-ca", self.certs["ca"], "--tls-cert", self.cert[0], "--tls-key", self.cert[1], *self.extra)
        args[args.index("--migration-socket") + 1] = self.sock
        args[args.index("--state-dir") + 1] = str(self.dir / "state")
        self.agent = self.world.start_agent(args=args, binary=AGENT_SIM)
        _, line = self.agent.wait_log(r"event=migration_serving .*tcp_port=(\d+)", timeout=10)
        self.port = int(re.search(r"tcp_port=(\d+)", line).group(1))
        self.world.kubelet.wait_registration(RESOURCE)
        return self

    def restart(self):
        self.agent.stop()
        return self.start()

    def give_state(self, vf, data):
        """What the VM did with the GPU: the simulated device loads it when the restarted agent opens it."""
        with open(self.state_file(vf), "wb") as f:
            f.write(data)
        self.restart()

    def local(self):
        return MigrationClient(self.sock)

    def remote(self, cert=None, ca=None):
        """A peer on the TCP port (another agent, by default with a valid certificate)."""
        crt, key = cert or self.certs["operator"]
        return MigrationClient("127.0.0.1:%d" % self.port, tls=(ca or self.certs["ca"], crt, key))

    def plugin(self):
        return self.world.client()

    def close(self):
        if self.agent and self.agent.proc.poll() is None:
            self.agent.stop()  # fails on sanitizer findings
        self.world.close()
        if not os.environ.get("XEVF_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nodes(tmp_path, certs):
    api()
    mig_api()
    made = []

    def make(name, **kw):
        n = Node(tmp_path, name, certs, **kw)
        made.append(n)
        return n.start()

    yield make
    for n in made:
        n.close()


def cli(*args, check=True):
    r = subprocess.run([AGENT, "migrate", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("migrate %s failed (%d): %s%s" % (args[0], r.returncode, r.stdout, r.stderr))
    return r


def tls_args(node):
    crt, key = node.certs["operator"]
    return ["--tls-ca", node.certs["ca"], "--tls-cert", crt, "--tls-key", key]


def phases(client):
    return {m.migration_id: (m.role, m.vf, m.phase, m.device_state) for m in client.list()}


@pytest.mark.parametrize("kind", ["xe", "p2p-pre-copy"])
def test_full_migration_with_the_cli(nodes, kind):
    """xe: the flags xe-vfio-pci reports (STOP_COPY | P2P); p2p-pre-copy: mtty's, with a PRE_COPY phase."""
    src = nodes("node-a", extra=("--vfio-sim-flags", kind))
    dst = nodes("node-b", extra=("--vfio-sim-flags", kind))
    vf = src.vfs()[0]
    state = os.urandom(3 * 1024 * 1024 + 17)  # the VM's GPU state, several chunks
    src.give_state(vf, state)
    # the source VM's pod holds the VF
    resp = src.plugin().allocate([[vf]])
    assert resp.container_responses[0].envs[ENV] == vf
    target = "127.0.0.1:%d" % dst.port

    out = cli("check", "--vf", vf, "--source", src.sock, "--target", target, *tls_args(dst)).stdout
    assert "2 of 2 VFs on %s can take %s" % (target, vf) in out

    out = cli("reserve", "--id", "mig-1", "--vf", vf, "--vm", "default/vm1", "--ttl", "120", "--source", src.sock,
              "--target", target, *tls_args(dst)).stdout
    reserved = re.search(r"reserved (\S+) on", out).group(1)
    assert reserved in dst.vfs()
    # the target pod (virt-launcher) is admitted: the kubelet asks, the agent prefers the reserved VF
    pref = dst.plugin().preferred(dst.vfs(), [], 1)
    assert list(pref.container_responses[0].deviceIDs) == [reserved]
    resp = dst.plugin().allocate([[reserved]])
    assert resp.container_responses[0].envs[ENV] == reserved
    dst.agent.wait_log(r"event=reservation_claimed migration=mig-1 vf=" + re.escape(reserved))

    out = cli("send", "--id", "mig-1", "--vf", vf, "--source", src.sock, "--target", target, "--chunk-size", "65536",
              *tls_args(dst)).stdout
    assert "restored into %s" % reserved in out and "(device STOP)" in out
    # agent to agent: the target was reached by the source agent, with the source agent's certificate
    dst.agent.wait_log(r"event=restore_started migration=mig-1 vf=%s peer=urn:xevf:node:agent-a" % re.escape(reserved))
    assert phases(src.local())["mig-1"][2] == "saved"
    assert phases(dst.local())["mig-1"][2] == "restored"

    out = cli("commit", "--id", "mig-1", "--source", src.sock, "--target", target, *tls_args(dst)).stdout
    assert "target VF %s: committed, device RUNNING" % reserved in out
    assert "source VF %s: committed, device RUNNING" % vf in out
    # the target VF runs exactly the source's state; the source VF was wiped
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == state
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == b""
    # the source VF is free and healthy again: another pod can have it
    src.agent.wait_log(r"event=vf_released_by_migration vf=" + re.escape(vf))
    pref = src.plugin().preferred(src.vfs(), [], 1)
    assert len(pref.container_responses[0].deviceIDs) == 1
    fp = src.local().describe(vf)
    assert fp.migratable and fp.node == "node-a"
    assert [m.phase for m in src.local().list()] == ["committed"]
    src.agent.wait_log(r"event=migration_committed migration=mig-1 role=source vf=%s device_state=RUNNING reset=yes"
                       % re.escape(vf))
    dst.agent.wait_log(r"event=migration_committed migration=mig-1 role=target vf=%s device_state=RUNNING reset=no"
                       % re.escape(reserved))


def test_the_largest_chunk_size_works(nodes):
    """#12: --chunk-size 4194304, the documented maximum, was refused by gRPC ("Received message larger than
    max (4194336 vs. 4194304)")."""
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    state = os.urandom(9 * 1024 * 1024)
    src.give_state(vf, state)
    target = "127.0.0.1:%d" % dst.port
    cli("reserve", "--id", "big-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
        *tls_args(dst))
    saved = str(dst.dir / "big-1.state")
    out = cli("save", "--id", "big-0", "--vf", vf, "--source", src.sock, "--to-file", saved, "--chunk-size",
              "4194304").stdout
    assert "saved %d bytes in 4 chunks" % (len(state) + 32) in out, out
    cli("abort", "--id", "big-0", "--source", src.sock)
    out = cli("send", "--id", "big-1", "--vf", vf, "--source", src.sock, "--target", target, "--chunk-size",
              "4194304").stdout
    assert "sent %d bytes" % (len(state) + 32) in out, out
    cli("commit", "--id", "big-1", "--source", src.sock, "--target", target, *tls_args(dst))
    reserved = [m.vf for m in dst.local().list() if m.migration_id == "big-1"][0]
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == state


def test_incompatible_target_is_refused_with_its_reason(nodes):
    src = nodes("node-a")
    dst = nodes("node-b", device_ids=[0xE212])
    vf = src.vfs()[0]
    fp = src.local().describe(vf)
    peer = dst.remote()
    check = peer.check(fp)
    assert len(check.candidates) == 2
    for c in check.candidates:
        assert not c.compatible
        assert c.reason == "device id 0xe212 differs from the source's 0xe211"
    with pytest.raises(grpc.RpcError) as e:
        peer.reserve("mig-x", fp)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no compatible free VF on node node-b for migration mig-x" in e.value.details()
    assert "device id 0xe212 differs" in e.value.details()
    # the CLI says the same, and fails
    r = cli("check", "--vf", vf, "--source", src.sock, "--target", "127.0.0.1:%d" % dst.port, *tls_args(dst),
            check=False)
    assert r.returncode == 1 and "0 of 2 VFs" in r.stdout and "device id 0xe212 differs" in r.stdout


def test_not_migratable_vf_says_why(nodes):
    src = nodes("node-a")
    vf = src.vfs()[1]
    src.world.host.bind(vf, "vfio-pci")
    deadline = time.monotonic() + 5
    while src.local().describe(vf).driver != "vfio-pci":  # the next rescan sees it
        assert time.monotonic() < deadline, "the agent did not see the VF move to vfio-pci"
        time.sleep(0.1)
    fp = src.local().describe(vf)
    assert not fp.migratable
    # the agent asked the device itself: VFIO_DEVICE_FEATURE_MIGRATION answers ENOTTY on plain vfio-pci
    assert fp.not_migratable_reason == (
        "%s: not migratable: its driver (vfio-pci) offers no VFIO migration (VFIO_DEVICE_FEATURE_MIGRATION: "
        "Inappropriate ioctl for device); Xe VFs migrate only when bound to xe-vfio-pci (CONFIG_XE_VFIO_PCI)" % vf)
    # a VF on no VFIO driver at all
    src.world.host.unbind(src.vfs()[0])
    deadline = time.monotonic() + 5
    while src.local().describe(src.vfs()[0]).driver != "":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "not migratable: bound to no driver, not to a VFIO driver" in \
        src.local().describe(src.vfs()[0]).not_migratable_reason
    r = cli("reserve", "--id", "m", "--vf", vf, "--vm", "a/b", "--source", src.sock, "--target", src.sock,
            check=False)
    assert r.returncode == 1 and "not migratable" in r.stderr


def test_abort_mid_stream_keeps_the_source_running_and_frees_the_reservation(nodes):
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    state = os.urandom(4 * 1024 * 1024)
    src.give_state(vf, state)
    fp = src.local().describe(vf)
    peer = dst.remote()
    reserved = peer.reserve("mig-2", fp, ttl=120).vf
    # a slow reader: without BDP probing the transport's window stays at 64 KiB, so the source cannot have sent
    # the whole 4 MiB before the abort arrives (with it, the window can grow past the state and the save end first)
    slow = MigrationClient(src.sock, options=[("grpc.http2.bdp_probe", 0)])
    save = slow.save("mig-2", vf, chunk_size=16384)
    got = [next(save) for _ in range(5)]
    assert all(len(c.data) == 16384 for c in got)
    # the orchestrator gives up: abort on both sides while the stream runs
    assert src.local().abort("mig-2").phase in ("aborting", "aborted")
    assert peer.abort("mig-2").phase == "aborted"
    with pytest.raises(grpc.RpcError) as e:
        for _ in save:
            pass
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert "aborted" in e.value.details() and "the source VF is RUNNING" in e.value.details()
    src.agent.wait_log(r"event=save_failed migration=mig-2 .*device_state=RUNNING")
    assert phases(src.local())["mig-2"][2] == "aborted"
    # the VM's state is untouched and the VF runs: a new save starts from RUNNING and carries it whole
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == state
    chunks = list(src.local().save("mig-3", vf, chunk_size=1 << 20))
    assert b"".join(c.data for c in chunks)[24:-8] == state  # the simulated stream: header, state, checksum
    assert src.local().abort("mig-3").phase == "aborted"
    # the reservation is gone: the VF is free for others
    assert all(c.compatible for c in peer.check(fp).candidates)
    assert "mig-2" not in [m.migration_id for m in dst.local().list() if m.phase == "reserved"]
    assert reserved in dst.vfs()


def test_a_device_a_migration_holds_stays_open(nodes):
    """#10.6: xe-vfio-pci resets a device's migration state when it is closed (the simulated device, xe's
    flags by default, does too). A Describe of the saved source VF (the CLI's reserve does one) must not
    close it: the source stays in STOP with its state until commit or abort."""
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    state = os.urandom(200000)
    src.give_state(vf, state)
    fp = src.local().describe(vf)
    dst.remote().reserve("m6", fp)
    chunks = list(src.local().save("m6", vf))
    assert phases(src.local())["m6"][2:] == ("saved", "STOP")
    again = src.local().describe(vf)
    assert again.vf == vf and again.device_id == fp.device_id
    assert phases(src.local())["m6"][2:] == ("saved", "STOP")
    # the saved state still moves and runs on the target; the source's abort walks it back to RUNNING
    assert _restore(dst.remote(), "m6", chunks).migration_id == "m6"
    assert src.local().abort("m6").device_state == "RUNNING"
    src.agent.wait_log(r"event=migration_aborted migration=m6 role=source vf=%s device_state=RUNNING reset=no"
                       % re.escape(vf))
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == state


def _hold(node, proc, vf, pid):
    """A VM's QEMU (pid) holds the VF's VFIO group open, as /proc shows it."""
    fds = proc / str(pid) / "fd"
    fds.mkdir(parents=True)
    os.symlink("/dev/vfio/" + node.world.host.group_of(vf), fds / "21")
    return fds / "21"


def test_qemu_carries_the_state_and_the_agents_coordinate(nodes, tmp_path):
    """#11, the KubeVirt path: the VM's QEMU holds the source VF and moves its state in its own migration
    stream. The agents never open a VF a QEMU holds: they describe it from sysfs and the driver, reserve the
    target pod's VF, and commit around QEMU; the source VF is reset only once its QEMU is gone."""
    proc_a, proc_b = tmp_path / "proc-a", tmp_path / "proc-b"
    proc_a.mkdir()
    proc_b.mkdir()
    src = nodes("node-a", extra=("--proc-root", str(proc_a)))
    dst = nodes("node-b", extra=("--proc-root", str(proc_b)))
    vf = src.vfs()[0]
    state = os.urandom(100000)
    src.give_state(vf, state)
    target = "127.0.0.1:%d" % dst.port
    # the source VM's pod got the VF and its QEMU holds it
    src.plugin().allocate([[vf]])
    qemu_src = _hold(src, proc_a, vf, 5001)
    # 1. described without opening: migratable by its driver, the device's flags left to QEMU
    fp = src.local().describe(vf)
    assert fp.migratable and fp.migration_flags == 0 and fp.driver == "xe-vfio-pci"
    # 2. node-b reserves; the target pod gets the reserved VF and its QEMU starts on it (-incoming)
    out = cli("reserve", "--id", "kv-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
              *tls_args(dst)).stdout
    reserved = re.search(r"reserved (\S+) on", out).group(1)
    assert list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs) == [reserved]
    dst.plugin().allocate([[reserved]])
    qemu_dst = _hold(dst, proc_b, reserved, 6001)
    out = cli("handover", "--id", "kv-1", "--vf", vf, "--source", src.sock).stdout
    assert "migration kv-1 source VF %s: handed-over" % vf in out
    # 3. QEMU migrates: the simulated target QEMU loads what the source VM had
    with open(dst.state_file(reserved), "wb") as f:
        f.write(state)
    # 4. commit: the target's does not touch its VF (QEMU runs it); the source's waits until QEMU is gone
    r = cli("commit", "--id", "kv-1", "--source", src.sock, "--target", target, *tls_args(dst), check=False)
    assert r.returncode == 1
    assert "migration kv-1 target VF %s: committed, VM default/vm1" % reserved in r.stdout
    assert "VF %s is in use: a process (a VM's QEMU) holds its VFIO device open; it was left as it is" % vf in r.stderr
    assert phases(src.local())["kv-1"][2] == "handed-over"
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == state
    os.unlink(qemu_src)  # the source QEMU quits after the migration
    out = cli("commit", "--id", "kv-1", "--source", src.sock).stdout
    assert "migration kv-1 source VF %s: committed, device RUNNING" % vf in out
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == b""  # wiped for the next pod
    src.agent.wait_log(r"event=vf_released_by_migration vf=" + re.escape(vf))
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == state  # the target was never opened
    # 5. an incompatible target makes QEMU's migration fail: the source VM runs on, abort frees the target
    src.give_state(vf, state)
    qemu_src = _hold(src, proc_a, vf, 5002)
    src.local().handover("kv-2", vf)
    other = dst.remote().reserve("kv-2", src.local().describe(vf)).vf
    assert other != reserved
    # the target pod got it, and its QEMU, whose incoming migration failed, is still exiting: the abort frees
    # the reservation all the same (nothing of the device is touched)
    dst.plugin().allocate([[other]])
    qemu_dst2 = _hold(dst, proc_b, other, 6002)
    assert dst.remote().abort("kv-2").phase == "aborted"
    os.unlink(qemu_dst2)
    assert src.local().abort("kv-2").phase == "aborted"
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == state
    # no longer reserved: only its pod's fresh allocation keeps it from another migration now
    why = {c.vf: c.reason for c in dst.remote().check(fp).candidates}
    assert "allocated to a container in the last minutes" in why[other] and "reserved" not in why[other]
    # Handover is the source node's own call, and never for a VF bound to vfio-pci
    with pytest.raises(grpc.RpcError) as e:
        src.remote().handover("kv-3", vf, timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    os.unlink(qemu_src)
    os.unlink(qemu_dst)
    other_vf = src.vfs()[1]
    src.world.host.bind(other_vf, "vfio-pci")
    deadline = time.monotonic() + 10
    while src.local().describe(other_vf).driver != "vfio-pci" and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as e:
        src.local().handover("kv-4", other_vf)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bound to vfio-pci: QEMU cannot migrate it" in e.value.details()


def test_a_vf_a_vm_holds_is_never_reserved_restored_into_or_run(nodes, tmp_path):
    """Busy means a process holds the VF's VFIO device (not only "allocated by
    this agent lately", which a restart forgets): such a VF is never reserved,
    restored into, reset or run with a foreign state."""
    proc = tmp_path / "proc"
    proc.mkdir()
    src, dst = nodes("node-a"), nodes("node-b", vfs=2, extra=("--proc-root", str(proc)))
    vf = src.vfs()[0]
    src.give_state(vf, b"the VM's memory")
    fp = src.local().describe(vf)
    peer = dst.remote()
    held, free = dst.vfs()
    link = _hold(dst, proc, held, 4242)
    cands = {c.vf: c for c in peer.check(fp).candidates}
    assert not cands[held].compatible
    assert cands[held].reason == "in use: a process (a VM's QEMU) holds its VFIO device open"
    assert cands[free].compatible
    assert peer.reserve("mig-h", fp).vf == free
    # the agent restarts: it remembers no allocation, /proc still tells
    dst.restart()
    peer = dst.remote()
    with pytest.raises(grpc.RpcError) as e:
        peer.reserve("mig-h2", fp)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert held + ": in use: a process (a VM's QEMU) holds its VFIO device open" in e.value.details()
    os.unlink(link)
    # a VM starts on the reserved VF before the state arrives: nothing is written into it
    link = _hold(dst, proc, free, 4343)
    chunks = list(src.local().save("mig-h", vf))
    with pytest.raises(grpc.RpcError) as e:
        peer.restore(iter(chunks))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "in use: a process (a VM's QEMU) holds its VFIO device open; nothing was written" in e.value.details()
    assert phases(peer)["mig-h"][2] == "reserved"
    # once the VM is gone the state goes in; a VM taking the VF before the commit: it is not run
    os.unlink(link)
    assert peer.restore(iter(chunks)).vf == free
    link = _hold(dst, proc, free, 4444)
    with pytest.raises(grpc.RpcError) as e:
        peer.commit("mig-h")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "VF %s is in use" % free in e.value.details()
    assert phases(peer)["mig-h"][2] == "restored"
    os.unlink(link)
    assert peer.commit("mig-h").phase == "committed"
    assert src.local().commit("mig-h").phase == "committed"


def test_reserve_and_release_are_acknowledged_only_once_on_disk(nodes):
    """A full disk or a state path that is not a file: the caller gets an error
    and nothing changes, in memory as on disk."""
    src, dst = nodes("node-a"), nodes("node-b", vfs=2)
    fp = src.local().describe(src.vfs()[0])
    peer = dst.remote()
    path = dst.dir / "state" / "migrations.json"
    path.mkdir()  # rename(2) cannot put the file there
    with pytest.raises(grpc.RpcError) as e:
        peer.reserve("mig-d", fp)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "migration mig-d: nothing reserved: " in e.value.details() and str(path) in e.value.details()
    assert phases(peer) == {}
    path.rmdir()
    assert peer.reserve("mig-d", fp).phase == "reserved"
    path.unlink()
    path.mkdir()
    with pytest.raises(grpc.RpcError) as e:
        peer.release("mig-d")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "migration mig-d: still reserved: " in e.value.details()
    assert phases(peer)["mig-d"][2] == "reserved"
    path.rmdir()
    assert peer.release("mig-d").phase == "released"
    dst.restart()
    assert "mig-d" not in phases(dst.remote())


def test_kept_strings_are_bounded_and_an_unreadable_state_file_is_set_aside(nodes):
    """A ~900 KB VM name once made the state file unreadable at the next start,
    losing every reservation: names follow Kubernetes' rules, and a file that
    cannot be read is moved aside before anything is written over it."""
    src, dst = nodes("node-a"), nodes("node-b", vfs=2)
    fp = src.local().describe(src.vfs()[0])
    peer = dst.remote()
    for vm in (("default", "v" * 900000), ("Default", "vm1"), ("default", "vm\n1")):
        with pytest.raises(grpc.RpcError) as e:
            peer.reserve("mig-b", fp, vm=vm)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert peer.reserve("mig-b", fp, vm=("prod", "db-0.a")).phase == "reserved"
    dst.agent.stop()
    path = dst.dir / "state" / "migrations.json"
    path.write_text(" " * (5 << 20))  # larger than the agent reads
    dst.start()
    dst.agent.wait_log(r"event=state_corrupt .*is larger than .*moved_to=.*migrations\.json\.corrupt-")
    assert dst.remote().reserve("mig-c", fp).phase == "reserved"
    assert "mig-c" in path.read_text()


def test_target_restart_keeps_the_reservation(nodes):
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    src.give_state(vf, b"state before the restart" * 100)
    fp = src.local().describe(vf)
    reserved = dst.remote().reserve("mig-4", fp, vm=("prod", "db"), ttl=300).vf
    dst.restart()
    dst.agent.wait_log(r"event=state_loaded .*migrations=1")
    st = phases(dst.local())["mig-4"]
    assert st[:3] == ("target", reserved, "reserved")
    check = {c.vf: c for c in dst.remote().check(fp).candidates}
    assert not check[reserved].compatible and check[reserved].reason == "reserved for migration mig-4"
    # and the migration completes after the restart
    out = cli("send", "--id", "mig-4", "--vf", vf, "--source", src.sock, "--target", "127.0.0.1:%d" % dst.port,
              *tls_args(dst)).stdout
    assert "restored into " + reserved in out
    cli("commit", "--id", "mig-4", "--source", src.sock, "--target", "127.0.0.1:%d" % dst.port, *tls_args(dst))
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == b"state before the restart" * 100


def test_wrong_client_certificate_is_refused(nodes, certs):
    dst = nodes("node-b")
    vf = dst.vfs()[0]
    # a certificate from another CA
    with pytest.raises(grpc.RpcError) as e:
        dst.remote(cert=certs["rogue"]).describe(vf, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    # no client certificate at all
    ch = grpc.secure_channel("127.0.0.1:%d" % dst.port,
                             grpc.ssl_channel_credentials(root_certificates=open(certs["ca"], "rb").read()))
    pb = mig_api()
    call = ch.unary_unary("/xevf.migration.v1.Migration/Describe", request_serializer=pb.DescribeRequest.SerializeToString,
                          response_deserializer=pb.Fingerprint.FromString)
    with pytest.raises(grpc.RpcError) as e:
        call(pb.DescribeRequest(vf=vf), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    # plaintext to the TLS port
    plain = grpc.insecure_channel("127.0.0.1:%d" % dst.port)
    with pytest.raises(grpc.RpcError):
        plain.unary_unary("/xevf.migration.v1.Migration/List", request_serializer=pb.ListRequest.SerializeToString,
                          response_deserializer=pb.ListResponse.FromString)(pb.ListRequest(), timeout=5)
    # none of them reached the service (it logs every call it answers with an error or a stream);
    # a valid peer does
    with open(dst.agent.log_path) as f:
        assert "migration_call_refused" not in f.read()
    assert dst.remote().describe(vf).vf == vf
    # the CLI refuses TCP without TLS files
    r = cli("list", "--source", "127.0.0.1:%d" % dst.port, check=False)
    assert r.returncode == 1 and "mutual TLS" in r.stderr


def test_one_certificate_shared_by_all_agents(nodes, certs):
    """The chart's cert-manager profile: every agent has the same certificate, whose DNS name is no node's;
    --tls-server-name tells the agents and the CLI which name to expect."""
    shared = ("--tls-server-name", "xevf-agent")
    src = nodes("node-a", cert="shared", extra=shared)
    dst = nodes("node-b", cert="shared", extra=shared)
    vf = src.vfs()[0]
    src.give_state(vf, b"shared-certificate state" * 1000)
    target = "127.0.0.1:%d" % dst.port
    crt, key = certs["shared"]
    tls = ["--tls-ca", certs["ca"], "--tls-cert", crt, "--tls-key", key]
    # without the name, 127.0.0.1 is not what the certificate names
    r = cli("reserve", "--id", "sh-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target, *tls, check=False)
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr
    cli("reserve", "--id", "sh-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target, *tls, *shared)
    out = cli("send", "--id", "sh-1", "--vf", vf, "--source", src.sock, "--target", target, *tls, *shared).stdout
    assert "restored into" in out
    dst.agent.wait_log(r"event=restore_started migration=sh-1 .* peer=urn:xevf:agent")
    cli("commit", "--id", "sh-1", "--source", src.sock, "--target", target, *tls, *shared)
    assert phases(dst.local())["sh-1"][2] == "committed"


def _denied(call, *words):
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    for w in words:
        assert w in e.value.details()
    return e.value.details()


def test_tls_callers_are_judged_by_their_certificate(nodes, certs):
    """#10.19: the CA's own certificate, one without clientAuth and one without an allowed identity are
    refused, whatever they call; the refusal says why."""
    dst = nodes("node-b")
    vf = dst.vfs()[0]
    # without clientAuth the TLS handshake itself fails (and peer_identify would refuse it too: unit test)
    with pytest.raises(grpc.RpcError) as e:
        dst.remote(cert=certs["server-only"]).describe(vf, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    for name, why in (("ca-itself", "is a CA's certificate"),
                      ("no-identity", "has no URI subject alternative name"),
                      ("stranger", "names no allowed identity")):
        text = _denied(lambda: dst.remote(cert=certs[name]).describe(vf, timeout=5), "node node-b refuses the caller", why)
        assert "certificate /CN=%s " % (name if name != "ca-itself" else "ca") in text, text
        dst.agent.wait_log(r"event=migration_call_refused method=/xevf.migration.v1.Migration/Describe peer=tls .*%s"
                           % re.escape(why))
    # the agents' and the operator's identities are welcome
    for name in ("agent-a", "operator"):
        assert dst.remote(cert=certs[name]).describe(vf).vf == vf


def test_other_identities_can_be_allowed(nodes, certs):
    dst = nodes("node-b", extra=("--peer-identities", "urn:example:*"))
    vf = dst.vfs()[0]
    assert dst.remote(cert=certs["stranger"]).describe(vf).vf == vf
    _denied(lambda: dst.remote(cert=certs["operator"]).describe(vf, timeout=5), "names no allowed identity")


def test_source_side_and_others_reservations_stay_with_the_node(nodes, certs):
    """#10.19: over TCP, nobody saves or sends a VF's state, ends a source migration, or touches another
    caller's reservation; the node-local socket can do all of it."""
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    src.give_state(vf, b"the source VM's GPU state" * 100)
    operator = src.remote(cert=certs["operator"])
    # before, any certificate of the CA could read a VF's state over TCP
    _denied(lambda: list(operator.save("steal-1", vf, timeout=5)), "SaveState may be called only on node node-a's local socket")
    pb = mig_api()
    send = operator.channel.unary_unary("/xevf.migration.v1.Migration/SendState",
                                        request_serializer=pb.SendStateRequest.SerializeToString,
                                        response_deserializer=pb.SendStateResponse.FromString)
    _denied(lambda: send(pb.SendStateRequest(migration_id="steal-2", vf=vf, target="127.0.0.1:%d" % dst.port),
                         timeout=5), "SendState may be called only")
    # a source migration started on the node: no TCP caller commits (wipes) or aborts it
    fp = src.local().describe(vf)
    reservation = dst.remote(cert=certs["operator"]).reserve("mig-s", fp)
    chunks = list(src.local().save("mig-s", vf))
    assert chunks and chunks[-1].last
    for name in ("operator", "agent-b"):
        for end in ("commit", "abort"):
            _denied(lambda: getattr(src.remote(cert=certs[name]), end)("mig-s", timeout=5),
                    "may end only the target reservations it made")
    assert phases(src.local())["mig-s"][2] == "saved"
    # node-b: the operator's reservation is the operator's; agent-a neither sees nor ends it
    agent_a = dst.remote(cert=certs["agent-a"])
    for end in ("release", "commit", "abort"):
        _denied(lambda: getattr(agent_a, end)("mig-s", timeout=5))
    assert "mig-s" not in phases(agent_a)
    assert phases(dst.remote(cert=certs["operator"]))["mig-s"][:2] == ("target", reservation.vf)
    with pytest.raises(grpc.RpcError) as e:
        agent_a.reserve("mig-s", fp, timeout=5)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS and "another caller's reservation" in e.value.details()
    # the owner may end it; the source's own socket ends the source side
    assert dst.remote(cert=certs["operator"]).release("mig-s").phase == "released"
    assert src.local().abort("mig-s").phase == "aborted"
    # a restart keeps who owns what
    reservation = dst.remote(cert=certs["operator"]).reserve("mig-t", fp)
    dst.restart()
    _denied(lambda: dst.remote(cert=certs["agent-a"]).release("mig-t", timeout=5))
    assert dst.remote(cert=certs["operator"]).release("mig-t").phase == "released"


def _restore(peer, mid, chunks):
    pb = mig_api()
    return peer.restore([pb.StateChunk(migration_id=mid, offset=c.offset, data=c.data, phase=c.phase, last=c.last,
                                       total_bytes=c.total_bytes, sha256=c.sha256) for c in chunks])


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "reordered"])
def test_damaged_state_stream_is_rejected_and_nothing_resumes(nodes, damage):
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    src.give_state(vf, os.urandom(200000))
    fp = src.local().describe(vf)
    peer = dst.remote()
    reserved = peer.reserve("mig-5", fp).vf
    with open(dst.state_file(reserved), "wb") as f:
        f.write(b"the target's own state")
    # the caller is done before the agent restarts (an agent stopped 2 ms after a TLS call once left gRPC's TLS
    # teardown unfinished at exit, which LeakSanitizer reported: 904 bytes from CRYPTO_zalloc)
    peer.close()
    dst.restart()
    chunks = list(src.local().save("mig-5", vf, chunk_size=32768))
    assert chunks[-1].last and len(chunks[-1].sha256) == 64
    if damage == "truncated":
        chunks = chunks[:-2]
        expect = "without its final chunk (truncated); nothing is resumed"
    elif damage == "corrupted":
        data = bytearray(chunks[2].data)
        data[100] ^= 0x01
        chunks[2].data = bytes(data)
        expect = "corrupted in transit; nothing is resumed"
    else:
        chunks[1], chunks[2] = chunks[2], chunks[1]
        expect = "lost or reordered data"
    with pytest.raises(grpc.RpcError) as e:
        _restore(dst.remote(), "mig-5", chunks)
    assert e.value.code() == grpc.StatusCode.DATA_LOSS
    assert expect in e.value.details()
    # the target VF never ran the partial state; the reservation stands for a retry
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() in (b"the target's own state", b"")
    st = phases(dst.local())["mig-5"]
    assert st[2] == "reserved"
    dst.agent.wait_log(r"event=restore_failed migration=mig-5 .*reset=yes")
    # a clean retry goes through (the saved source is in STOP: STOP -> STOP_COPY again)
    good = list(src.local().save("mig-5", vf, chunk_size=32768))
    assert _restore(dst.remote(), "mig-5", good).bytes == good[-1].total_bytes
    assert dst.remote().commit("mig-5").device_state == "RUNNING"


def test_corrupt_state_file_is_set_aside(nodes):
    dst = nodes("node-b")
    dst.agent.stop()
    state = dst.dir / "state" / "migrations.json"
    state.write_text('{"version": 1, "migrations": [{"id": "x", "role": "target"')
    dst.start()
    dst.agent.wait_log(r"event=state_corrupt .*moved_to=.*migrations\.json\.corrupt-")
    assert not state.exists()
    aside = [p for p in os.listdir(dst.dir / "state") if ".corrupt-" in p]
    assert len(aside) == 1
    assert (dst.dir / "state" / aside[0]).read_text().startswith('{"version": 1')  # kept for inspection
    assert len(dst.local().list()) == 0  # nothing from it was trusted
    # and the service works: a reservation is written to a fresh, valid file
    fp = dst.local().describe(dst.vfs()[0])
    dst.local().reserve("after-corruption", fp)
    assert '"id":"after-corruption"' in state.read_text().replace(" ", "")


def test_reservations_steer_allocations_and_expire(nodes):
    src, dst = nodes("node-a"), nodes("node-b", vfs=3)
    fp = src.local().describe(src.vfs()[0])
    peer = dst.remote()
    r1 = peer.reserve("mig-6", fp, ttl=300).vf
    # the target pod's allocation gets the reserved VF
    assert list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs) == [r1]
    dst.plugin().allocate([[r1]])
    # once its target pod has it, a reserved VF is offered to nobody else while unreserved ones remain
    # (e.g. the target pod restarted and the kubelet lists the VF as available again)
    others = [v for v in dst.vfs() if v != r1]
    for _ in range(3):
        got = list(dst.plugin().preferred(dst.vfs(), [], 2).container_responses[0].deviceIDs)
        assert sorted(got) == others
    # ... and only when nothing else is left
    got = list(dst.plugin().preferred(dst.vfs(), [], 3).container_responses[0].deviceIDs)
    assert sorted(got) == dst.vfs()
    # a reservation expires after its ttl; the VF is free again
    r2 = peer.reserve("mig-7", fp, ttl=1).vf
    assert r2 != r1
    dst.agent.wait_log(r"event=reservation_expired migration=mig-7 vf=" + re.escape(r2), timeout=5)
    cands = {c.vf: c for c in peer.check(fp).candidates}
    assert cands[r2].compatible
    assert "mig-7" not in [m.migration_id for m in peer.list() if m.phase == "reserved"]
    # Release ends a reservation at once
    assert peer.release("mig-6").phase == "released"


def test_migration_ids_with_a_nul_byte_are_refused(nodes):
    """"m\0one" and "m\0two" are not the same migration "m": both are refused."""
    src, dst = nodes("node-a"), nodes("node-b", vfs=3)
    fp = src.local().describe(src.vfs()[0])
    peer = dst.remote()
    for mid in ("m\0one", "m\0two"):
        with pytest.raises(grpc.RpcError) as e:
            peer.reserve(mid, fp)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [m.migration_id for m in peer.list()] == []
    assert peer.reserve("m", fp).migration_id == "m"


def _provision(node, vf_index, **values):
    prof = os.path.join(node.world.host.devdir("0000:03:00.0"), "sriov_admin", "vf%d" % vf_index, "profile")
    os.makedirs(prof, exist_ok=True)
    for k, v in values.items():
        with open(os.path.join(prof, k), "w") as f:
            f.write(v + "\n")


def _guc(node, version):
    d = os.path.join(node.world.host.sys, "kernel", "debug", "dri", "0000:03:00.0", "gt0", "uc")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "guc_info"), "w") as f:
        f.write("GuC firmware: xe/bmg_guc_70.bin\n\tstatus: RUNNING\n\tversion: wanted 70.44.1, found %s\n" % version)


def test_firmware_and_provisioning_take_part_in_compatibility(nodes):
    src, dst = nodes("node-a"), nodes("node-b")
    for n in (src, dst):
        _guc(n, "70.44.1")
        for i in (1, 2):
            _provision(n, i, vram_quota="4294967296", exec_quantum_ms="25")
    vf = src.vfs()[0]
    time.sleep(0.6)  # the next rescan reads the provisioning
    fp = src.local().describe(vf)
    assert fp.firmware_version == "70.44.1"
    assert {kv.key: kv.value for kv in fp.provisioning} == {"exec_quantum_ms": "25", "vram_quota": "4294967296"}
    assert all(c.compatible for c in dst.remote().check(fp).candidates)
    # one target VF with another VRAM quota: compatible once provisioned like the source, which Reserve does (#13)
    _provision(dst, 1, vram_quota="2147483648")
    time.sleep(0.6)
    cands = {c.vf: c for c in dst.remote().check(fp).candidates}
    assert cands[dst.vfs()[0]].compatible
    assert cands[dst.vfs()[0]].reason == "provisioned like the source when reserved: vram_quota 2147483648 -> 4294967296"
    assert cands[dst.vfs()[1]].compatible and cands[dst.vfs()[1]].reason == ""
    # a key xevf does not set: not compatible, and the reason says which value differs
    _provision(dst, 2, ggtt_size="268435456")
    time.sleep(0.6)
    cands = {c.vf: c for c in dst.remote().check(fp).candidates}
    assert cands[dst.vfs()[1]].reason == ("provisioning ggtt_size is 268435456, the source has (unset), and a value "
                                          "cannot be unset")
    _guc(dst, "70.45.0")
    reasons = {c.reason for c in dst.remote().check(fp).candidates}
    assert "GuC firmware 70.45.0 differs from the source's 70.44.1" in reasons


def test_save_to_a_file_restore_from_it_and_metrics(nodes):
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[1]
    state = os.urandom(700000)
    src.give_state(vf, state)
    target = "127.0.0.1:%d" % dst.port
    cli("reserve", "--id", "cold-1", "--vf", vf, "--vm", "ns/stopped-vm", "--source", src.sock, "--target", target,
        *tls_args(dst))
    saved = str(dst.dir / "cold-1.state")
    out = cli("save", "--id", "cold-1", "--vf", vf, "--source", src.sock, "--to-file", saved).stdout
    assert "saved 700032 bytes" in out  # header, state and checksum of the simulated device
    # a damaged file is refused before anything reaches the target
    with open(saved, "rb") as f:
        blob = f.read()
    with open(saved + ".cut", "wb") as f:
        f.write(blob[:-5])
    r = cli("restore", "--id", "cold-1", "--from-file", saved + ".cut", "--target", target, *tls_args(dst), check=False)
    assert r.returncode == 1 and "the file ends inside a record (truncated)" in r.stderr
    out = cli("restore", "--id", "cold-1", "--from-file", saved, "--target", target, *tls_args(dst)).stdout
    assert "restored 700032 bytes into" in out and "(device STOP)" in out
    out = cli("list", "--source", target, *tls_args(dst)).stdout
    assert "migration cold-1 target VF" in out and "restored" in out and "VM ns/stopped-vm" in out
    cli("commit", "--id", "cold-1", "--source", src.sock, "--target", target, *tls_args(dst))
    reserved = [m.vf for m in dst.local().list() if m.migration_id == "cold-1"][0]
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == state
    # a second, aborted one; then the counters by outcome
    cli("reserve", "--id", "cold-2", "--vf", src.vfs()[0], "--vm", "ns/other", "--source", src.sock,
        "--target", target, *tls_args(dst))
    out = cli("abort", "--id", "cold-2", "--target", target, *tls_args(dst)).stdout
    assert "target VF" in out and "aborted" in out
    for node, want in ((src, {"committed": 1}), (dst, {"committed": 1, "aborted": 1})):
        _, line = node.agent.wait_log(r"event=http_serving .*port=(\d+)")
        port = int(re.search(r"port=(\d+)", line).group(1))
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
        got = {}
        for fam in text_string_to_metric_families(text):
            if fam.name == "xevf_migrations":
                for s in fam.samples:
                    if s.name == "xevf_migrations_total":
                        got[s.labels["outcome"]] = s.value
        assert got == want, (node.name, got)


class FakeAPIServer:
    """The Kubernetes API server's pod list, as far as the agent asks it."""

    def __init__(self, delay=0, tls=None):
        self.pods = []
        self.seen = []
        self.delay = delay
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append((self.path, self.headers.get("Authorization")))
                time.sleep(outer.delay)
                body = json.dumps({"kind": "PodList", "apiVersion": "v1", "items": outer.pods}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        if tls:  # (certificate, key): HTTPS, as a real API server
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def pod(ns, name, resource=RESOURCE, labels=None, phase="Pending"):
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "spec": {"nodeName": "node-b", "containers": [
                {"name": "compute", "resources": {"limits": {resource: "1"}, "requests": {resource: "1"}}}]},
            "status": {"phase": phase}}


# the agent keeps an answer of the API server this long (kube_cache.h), plus a margin
KUBE_FRESH_S = 1.3


def _nodes_with_api_server(nodes, api_server, tmp_path, ca=None):
    """node-a, and node-b asking api_server (plain HTTP, or HTTPS checked against ca; a test token)."""
    token = tmp_path / "token"
    token.write_text("test-token\n")
    src = nodes("node-a")
    tls = ["--kube-ca-file", ca] if ca else ["--kube-api-allow-http", "true"]
    dst = nodes("node-b", vfs=3, extra=["--kube-api", api_server.url, *tls, "--kube-token-file", str(token)])
    return src, dst


def test_the_api_server_is_asked_over_https_and_its_certificate_is_checked(nodes, tmp_path, certs):
    """The agent's HTTP client (libevent with OpenSSL) checks the API server's certificate against
    --kube-ca-file and the address it asked (here the IP SAN 127.0.0.1). A server whose certificate another
    CA signed is not asked anything: the agent says why, in OpenSSL's words."""
    genuine, rogue = FakeAPIServer(tls=certs["agent-a"]), FakeAPIServer(tls=certs["rogue"])
    try:
        src, dst = _nodes_with_api_server(nodes, genuine, tmp_path, ca=certs["ca"])
        fp = src.local().describe(src.vfs()[0])
        reserved = dst.remote().reserve("mig-tls", fp, vm=("prod", "db")).vf
        genuine.pods = [pod("prod", "web-7d9f", labels={"app": "web"})]
        got = list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs)
        assert got != [reserved]
        dst.agent.wait_log(r"event=reservation_withheld vf=%s vm=prod/db pending_pods=1" % re.escape(reserved))
        assert genuine.seen[-1][1] == "Bearer test-token"
        dst.agent.stop()
        dst = nodes("node-b2", vfs=3, extra=["--kube-api", rogue.url, "--kube-ca-file", certs["ca"],
                                            "--kube-token-file", str(tmp_path / "token")])
        dst.remote().reserve("mig-rogue", fp, vm=("prod", "db"))
        dst.plugin().preferred(dst.vfs(), [], 1)
        dst.agent.wait_log(r'event=kube_pods_unavailable reason="[^"]*TLS: [^"]*certificate verify failed')
        assert rogue.seen == []
    finally:
        genuine.stop()
        rogue.stop()


def test_the_api_server_tells_the_target_pod_from_others(nodes, tmp_path):
    api_server = FakeAPIServer()
    try:
        src, dst = _nodes_with_api_server(nodes, api_server, tmp_path)
        dst.agent.wait_log(r"event=kube_api url=%s node=node-b" % re.escape(api_server.url))
        fp = src.local().describe(src.vfs()[0])
        reserved = dst.remote().reserve("mig-k", fp, vm=("prod", "db")).vf
        # another pod (not the VM's) is being admitted: it does not get the reserved VF
        api_server.pods = [pod("prod", "web-7d9f", labels={"app": "web"}),
                           pod("prod", "virt-launcher-other-x1y2z", labels={"kubevirt.io/domain": "other"}),
                           pod("prod", "db-backup", resource="example.com/other", labels={})]
        time.sleep(KUBE_FRESH_S)  # the agent's answer from the API server is at most this old
        got = list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs)
        assert got != [reserved] and len(got) == 1
        dst.agent.wait_log(r"event=reservation_withheld vf=%s vm=prod/db pending_pods=2 first=prod/web-7d9f"
                           % re.escape(reserved))
        # the VM's target virt-launcher pod is being admitted: it gets the reserved VF
        api_server.pods.append(pod("prod", "virt-launcher-db-abcde", labels={"kubevirt.io/domain": "db"}))
        time.sleep(KUBE_FRESH_S)
        got = list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs)
        assert got == [reserved]
        dst.agent.wait_log(r"event=reservation_preferred vf=%s pod=prod/virt-launcher-db-abcde" % re.escape(reserved))
        # launcher pods are also known by name alone
        api_server.pods = [pod("prod", "virt-launcher-db-q8w7e")]
        time.sleep(KUBE_FRESH_S)
        assert list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs) == [reserved]
        # what the agent asked: this node's pending pods, with its token
        path, auth = api_server.seen[-1]
        q = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        assert urllib.parse.urlparse(path).path == "/api/v1/pods"
        assert q["fieldSelector"] == ["spec.nodeName=node-b,status.phase=Pending"]
        assert auth == "Bearer test-token"
        # no answer from the API server: the next allocation is taken to be the target pod's, and it says so
        api_server.stop()
        api_server = None
        time.sleep(KUBE_FRESH_S)
        assert list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs) == [reserved]
        dst.agent.wait_log(r"event=kube_pods_unavailable .*action=\"offering reserved VFs to the next allocation\"")
    finally:
        if api_server:
            api_server.stop()


def test_a_slow_api_server_never_holds_up_allocations(nodes, tmp_path):
    """The API-server client blocked the serving thread up to 2 s a call (4
    queued preferred allocations took 8 s). It is asked on a thread of its
    own; an allocation waits for a fresh answer 0.3 s at most."""
    api_server = FakeAPIServer(delay=5)
    try:
        src, dst = _nodes_with_api_server(nodes, api_server, tmp_path)
        fp = src.local().describe(src.vfs()[0])
        reserved = dst.remote().reserve("mig-slow", fp, vm=("prod", "db")).vf
        started = time.monotonic()
        for _ in range(4):
            got = list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs)
            assert got == [reserved]  # nobody can tell: the next allocation is taken to be the target pod's
        assert time.monotonic() - started < 3
        assert dst.plugin().allocate([[reserved]]).container_responses[0].envs
    finally:
        api_server.delay = 0
        api_server.stop()


def test_send_state_takes_host_and_port_only(nodes):
    """SendState dialed any gRPC target syntax, which made it a probe: only
    HOST:PORT is taken, resolved by the agent, and every target that cannot
    be reached gets the same answer."""
    src = nodes("node-a")
    vf = src.vfs()[0]
    for target in ("dns:///127.0.0.1:1", "ipv4:127.0.0.1:1", "vsock:3:1", "unix-abstract:x", "unix:/tmp/x",
                   "/tmp/x", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "host name:1"):
        r = cli("send", "--id", "mig-p", "--vf", vf, "--source", src.sock, "--target", target, check=False)
        assert r.returncode == 1 and "SendState needs the target agent's HOST:PORT" in r.stderr, (target, r.stderr)
    answers = set()
    for target in ("127.0.0.1:1", "no-such-host.invalid:9481", "[::1]:1"):
        r = cli("send", "--id", "mig-p", "--vf", vf, "--source", src.sock, "--target", target, check=False)
        assert r.returncode == 1
        answers.add(r.stderr.replace(target, "TARGET"))
    assert len(answers) == 1 and "cannot be reached" in answers.pop()


def _flood(port, count, source="127.0.0.2"):
    """count idle TCP connections to port from another loopback address."""
    import resource
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
    held = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(s)
    return held


def test_health_and_the_migration_service_hold_up_under_a_connection_flood(nodes):
    """~1,100 held connections to the Migration or HTTP port made /healthz fail
    (libmicrohttpd on select() refuses descriptors >= 1024). 2,000 on each
    port now, from one address: /healthz answers, the Migration service too."""
    import urllib.request
    node = nodes("node-a")
    _, line = node.agent.wait_log(r"event=http_serving .*port=(\d+)")
    http = int(line.split("port=")[1].split()[0])
    held = _flood(http, 2000) + _flood(node.port, 2000)
    try:
        time.sleep(1)
        t0 = time.monotonic()
        assert urllib.request.urlopen("http://127.0.0.1:%d/healthz" % http, timeout=5).read() == b"ok\n"
        assert time.monotonic() - t0 < 2
        assert node.local().describe(node.vfs()[0]).vf == node.vfs()[0]
        assert node.remote().check(node.local().describe(node.vfs()[0])).candidates
    finally:
        for s in held:
            s.close()
    assert node.agent.proc.poll() is None


def _threads(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def _restore_too_large(src, dst, mid, size):
    """A state of size bytes saved on src and restored into a VF reserved on dst, which refuses it as too large:
    the VF, its fingerprint, the dst peer and the refusal's text."""
    vf = src.vfs()[0]
    src.give_state(vf, os.urandom(size))
    fp = src.local().describe(vf)
    peer = dst.remote()
    peer.reserve(mid, fp)
    chunks = list(src.local().save(mid, vf, chunk_size=65536))
    with pytest.raises(grpc.RpcError) as e:
        _restore(peer, mid, chunks)
    assert e.value.code() == grpc.StatusCode.DATA_LOSS
    return vf, fp, peer, e.value.details()


def test_a_state_far_larger_than_the_device_reports_is_refused(nodes):
    """#10.15: a RestoreState takes about what the target device says its own state takes
    (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE): twice that plus 1 MiB, below --max-state-bytes."""
    src = nodes("node-a")
    dst = nodes("node-b", extra=("--vfio-sim-state-size", "1000000"))
    vf, fp, peer, details = _restore_too_large(src, dst, "mig-size", 4 << 20)
    assert ("larger than 3048576 bytes (twice the size the device reports for its own state, plus 1 MiB)"
            in details), details
    dst.agent.wait_log(r"event=restore_started migration=mig-size .*limit_bytes=3048576")
    assert phases(peer)["mig-size"][2] == "reserved"
    # a state of the size the device reports passes
    src.local().abort("mig-size")
    src.give_state(vf, os.urandom(900000))
    chunks = list(src.local().save("mig-size-2", vf, chunk_size=65536))
    peer.reserve("mig-size-2", fp)
    assert _restore(peer, "mig-size-2", chunks).bytes == sum(len(c.data) for c in chunks)


def test_calls_and_state_streams_are_bounded(nodes):
    """One OS thread per Migration call with no cap (5,000 idle calls: 5,012
    threads) and no cap on a RestoreState's size: at most 32 calls at once
    (the rest are told to retry) and --max-state-bytes."""
    src, dst = nodes("node-a"), nodes("node-b", extra=("--max-state-bytes", "1048576"))
    _, _, peer, details = _restore_too_large(src, dst, "mig-b1", 2 << 20)
    assert "larger than 1048576 bytes (--max-state-bytes)" in details
    assert phases(peer)["mig-b1"][2] == "reserved"
    # idle calls: streams opened that never send a chunk
    hold = threading.Event()

    def idle():
        hold.wait(30)
        return
        yield

    # one connection carries at most 16 calls at once: 20 connections of their own
    pb = mig_api()
    clients = [grpc.insecure_channel("unix:" + dst.sock, options=[("grpc.use_local_subchannel_pool", 1)])
               for _ in range(20)]
    restores = [c.stream_unary("/xevf.migration.v1.Migration/RestoreState",
                               request_serializer=pb.StateChunk.SerializeToString,
                               response_deserializer=pb.RestoreStateResponse.FromString) for c in clients]
    base = _threads(dst.agent.proc.pid)
    calls = [restores[i % 20].future(idle(), timeout=30) for i in range(200)]
    exhausted = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and exhausted < 150:
        exhausted = sum(1 for c in calls if c.done() and c.exception() and
                        c.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED)
        time.sleep(0.1)
    assert exhausted >= 150
    assert _threads(dst.agent.proc.pid) <= base + 40
    hold.set()
    for c in calls:
        c.cancel()
    for c in clients:
        c.close()
    assert dst.local().list() is not None


class StalledTarget:
    """A target agent that takes a RestoreState stream, reads its first chunk
    and then stops reading, as a hung or hostile peer would (Python grpcio,
    mutual TLS with a certificate of the agents' CA)."""

    def __init__(self, certs):
        from concurrent import futures
        self.release = threading.Event()
        self.first = threading.Event()
        pb = mig_api()

        def restore(chunks, context):
            next(chunks)
            self.first.set()
            self.release.wait(60)
            return pb.RestoreStateResponse()

        handler = grpc.method_handlers_generic_handler("xevf.migration.v1.Migration", {
            "RestoreState": grpc.stream_unary_rpc_method_handler(
                restore, request_deserializer=pb.StateChunk.FromString,
                response_serializer=pb.RestoreStateResponse.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        with open(certs["ca"], "rb") as ca, open(certs["agent-b"][0], "rb") as crt, open(certs["agent-b"][1], "rb") as key:
            creds = grpc.ssl_server_credentials([(key.read(), crt.read())], root_certificates=ca.read(),
                                                require_client_auth=True)
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def stop(self):
        self.release.set()
        self.server.stop(grace=None)


@pytest.fixture
def stalled_target(certs):
    t = StalledTarget(certs)
    yield t
    t.stop()


def _send(src, vf, target, mid):
    return subprocess.Popen([AGENT, "migrate", "send", "--id", mid, "--vf", vf, "--source", src.sock, "--target", target,
                             "--chunk-size", "16384"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_stalled_target_fails_the_send_and_the_source_runs_on(nodes, stalled_target):
    """SendState to a target that stops reading left the source VF in STOP_COPY
    (its VM frozen) up to the 600 s deadline: now no byte moving for
    --stream-idle-timeout fails it and the source runs again."""
    src = nodes("node-a", extra=("--stream-idle-timeout", "1000"))
    vf = src.vfs()[0]
    state = os.urandom(16 << 20)
    src.give_state(vf, state)
    started = time.monotonic()
    proc = _send(src, vf, "127.0.0.1:%d" % stalled_target.port, "mig-s1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert time.monotonic() - started < 15
    src.agent.wait_log(r"event=save_failed migration=mig-s1 .*device_state=RUNNING")
    assert phases(src.local())["mig-s1"][2] == "failed"
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == state


def test_abort_and_shutdown_end_a_stalled_send_at_once(nodes, stalled_target):
    """Abort changed nothing while SendState waited on a target that stopped
    reading, and SIGTERM could not finish: both now end the stream at once."""
    src = nodes("node-a")  # the default idle deadline (30 s) is far away
    vf = src.vfs()[0]
    src.give_state(vf, os.urandom(16 << 20))
    target = "127.0.0.1:%d" % stalled_target.port
    proc = _send(src, vf, target, "mig-s2")
    assert stalled_target.first.wait(10)
    time.sleep(0.5)  # the window fills; the source waits on the target
    t0 = time.monotonic()
    assert src.local().abort("mig-s2").phase in ("aborting", "aborted")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and time.monotonic() - t0 < 5, (out, err)
    src.agent.wait_log(r"event=save_failed migration=mig-s2 .*device_state=RUNNING")
    assert phases(src.local())["mig-s2"][2] == "aborted"
    stalled_target.first.clear()
    proc = _send(src, vf, target, "mig-s3")
    assert stalled_target.first.wait(10)
    time.sleep(0.5)
    t0 = time.monotonic()
    assert src.agent.stop() == 0
    assert time.monotonic() - t0 < 10
    proc.communicate(timeout=20)


def test_a_stalled_restore_fails_and_the_ttl_ends_its_reservation(nodes):
    """A RestoreState that stalled after one chunk pinned the reservation in
    'restoring' forever (the ttl applied to 'reserved' only)."""
    src, dst = nodes("node-a"), nodes("node-b", extra=("--stream-idle-timeout", "1000"))
    vf = src.vfs()[0]
    src.give_state(vf, os.urandom(1 << 20))
    fp = src.local().describe(vf)
    peer = dst.remote()
    reserved = peer.reserve("mig-s4", fp, ttl=4).vf
    chunks = list(src.local().save("mig-s4", vf, chunk_size=65536))
    hold = threading.Event()

    def stall():
        yield chunks[0]
        hold.wait(30)

    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError):
        peer.restore(stall(), timeout=30)
    hold.set()
    assert time.monotonic() - t0 < 10
    dst.agent.wait_log(r"event=restore_failed migration=mig-s4 ")
    assert phases(peer)["mig-s4"][2] == "reserved"
    dst.agent.wait_log(r"event=reservation_expired migration=mig-s4 vf=" + re.escape(reserved), timeout=10)
    assert phases(peer)["mig-s4"][2] == "expired"


def test_a_restored_state_left_uncommitted_is_reset_when_the_ttl_ends(nodes, tmp_path):
    """#10.8: the ttl counts in every phase before commit; a restored state nobody commits is reset,
    never run, and the reservation ends; never while a VM holds the VF."""
    proc = tmp_path / "proc"
    proc.mkdir()
    src, dst = nodes("node-a"), nodes("node-b", extra=("--proc-root", str(proc)))
    vf = src.vfs()[0]
    state = os.urandom(300000)
    src.give_state(vf, state)
    fp = src.local().describe(vf)
    peer = dst.remote()
    reserved = peer.reserve("mig-r8", fp, ttl=3).vf
    with open(dst.state_file(reserved), "wb") as f:
        f.write(b"what the target VF held before")
    chunks = list(src.local().save("mig-r8", vf))
    assert _restore(peer, "mig-r8", chunks).device_state == "STOP"
    assert phases(peer)["mig-r8"][2] == "restored"
    # a VM takes the VF before the ttl ends: nothing is reset under it, the reservation waits
    link = _hold(dst, proc, reserved, 4545)
    dst.agent.wait_log(r"event=reservation_expiry_failed migration=mig-r8 reason=\"VF %s is in use: a process "
                       r"\(a VM's QEMU\) holds its VFIO device open" % re.escape(reserved), timeout=15)
    assert phases(peer)["mig-r8"][2] == "restored"
    os.unlink(link)
    dst.agent.wait_log(r"event=reservation_expired migration=mig-r8 vf=%s phase=restored "
                       r"action=\"the restored state was reset, never run\"" % re.escape(reserved), timeout=15)
    assert phases(peer)["mig-r8"][2] == "expired"
    with open(dst.state_file(reserved), "rb") as f:
        assert f.read() == b""  # reset: neither the old state nor the foreign one
    # the VF is free again
    assert peer.reserve("mig-r9", fp).vf in dst.vfs()


def test_a_target_that_refuses_the_state_leaves_the_source_running(nodes):
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[0]
    src.give_state(vf, b"keep me" * 1000)
    # no reservation on the target for this migration
    r = cli("send", "--id", "mig-none", "--vf", vf, "--source", src.sock, "--target", "127.0.0.1:%d" % dst.port,
            check=False)
    assert r.returncode == 1
    assert "target 127.0.0.1:%d did not take the state" % dst.port in r.stderr
    assert "migration mig-none has no reservation on node node-b" in r.stderr
    assert "(the source VF is RUNNING)" in r.stderr
    assert phases(src.local())["mig-none"][2] == "failed"
    with open(src.state_file(vf), "rb") as f:
        assert f.read() == b"keep me" * 1000
    # a target that does not answer (#10.23: the same words for every such target)
    r = cli("send", "--id", "mig-none", "--vf", vf, "--source", src.sock, "--target", "127.0.0.1:1", check=False)
    assert r.returncode == 1
    assert "target 127.0.0.1:1 cannot be reached; the source VF was left running" in r.stderr


def test_reserve_provisions_the_target_vf_like_the_source(nodes):
    """#13: a target VF whose xe provisioning differs from the source's is provisioned like it before it is
    reserved (xe-vfio-pci refuses a state from a VF provisioned otherwise); where the kernel refuses, the
    reservation fails naming the value."""
    src, dst = nodes("node-a"), nodes("node-b")
    for n in (src, dst):
        for i in (1, 2):
            _provision(n, i, exec_quantum_ms="0", sched_priority="low [normal] high")
    _provision(src, 1, exec_quantum_ms="25", sched_priority="low normal [high]")
    time.sleep(0.6)
    vf = src.vfs()[0]
    target = "127.0.0.1:%d" % dst.port
    out = cli("reserve", "--id", "prov-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
              *tls_args(dst)).stdout
    reserved = [m.vf for m in dst.local().list() if m.migration_id == "prov-1"][0]
    prof = os.path.join(dst.world.host.devdir("0000:03:00.0"), "sriov_admin",
                        "vf%d" % (dst.vfs().index(reserved) + 1), "profile")
    with open(os.path.join(prof, "exec_quantum_ms")) as f:
        assert f.read().strip() == "25"
    with open(os.path.join(prof, "sched_priority")) as f:
        assert f.read().strip() == "high"  # written as xe takes it (the simulated sysfs keeps the text)
    dst.agent.wait_log(r"event=target_provisioned vf=%s key=exec_quantum_ms value=25 was=0" % reserved)
    cli("abort", "--id", "prov-1", "--target", target, *tls_args(dst))
    # the kernel refuses a value on every free target VF: no reservation, and the reason names it
    for i in (1, 2):
        p = os.path.join(dst.world.host.devdir("0000:03:00.0"), "sriov_admin", "vf%d" % i, "profile")
        for k, v in (("exec_quantum_ms", "0"), ("sched_priority", "low [normal] high")):
            with open(os.path.join(p, k), "w") as f:
                f.write(v + "\n")
        os.unlink(os.path.join(p, "exec_quantum_ms"))
        os.makedirs(os.path.join(p, "exec_quantum_ms"))  # not writable: as a value xe refuses
    time.sleep(0.6)
    r = cli("reserve", "--id", "prov-2", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
            *tls_args(dst), check=False)
    assert r.returncode != 0
    assert "provisioning exec_quantum_ms could not be made the source's 25" in r.stderr, r.stderr


def test_reserve_gives_the_target_vf_the_sources_ggtt_size(nodes):
    """#13: xe-vfio-pci restores a state only into a VF whose GGTT has the source's size: a target VF whose
    debugfs quotas differ is given the source's before it is reserved; where xe refuses, nothing is reserved and
    the reason names the quota."""
    src, dst = nodes("node-a"), nodes("node-b")
    for n in (src, dst):
        n.world.host.expose_quotas("0000:03:00.0")
    vf = src.vfs()[0]
    with open(os.path.join(src.world.host.quota_dir("0000:03:00.0", 1), "ggtt_quota"), "w") as f:
        f.write("536870912\n")

    def ggtt(node, v):
        return dict((p.key, p.value) for p in node.local().describe(v).provisioning).get("ggtt_quota")
    deadline = time.monotonic() + 10
    # both agents have read the quotas (their next rescan)
    while ggtt(src, vf) != "536870912" or any(ggtt(dst, v) != "268435456" for v in dst.vfs()):
        assert time.monotonic() < deadline, "the agents did not read the quotas"
        time.sleep(0.1)
    target = "127.0.0.1:%d" % dst.port
    cli("reserve", "--id", "ggtt-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
        *tls_args(dst))
    reserved = [m.vf for m in dst.local().list() if m.migration_id == "ggtt-1"][0]
    qdir = dst.world.host.quota_dir("0000:03:00.0", dst.vfs().index(reserved) + 1)
    with open(os.path.join(qdir, "ggtt_quota")) as f:
        assert f.read().strip() == "536870912"
    dst.agent.wait_log(r"event=target_provisioned vf=%s key=ggtt_quota value=536870912 was=268435456" % reserved)
    cli("abort", "--id", "ggtt-1", "--target", target, *tls_args(dst))
    # xe refuses the GGTT size on every free target VF (too little GGTT left): no reservation, and why. The
    # quota reads the fair share but cannot be written (a file outside sysfs, which the agent never writes).
    for i in (1, 2):
        q = os.path.join(dst.world.host.quota_dir("0000:03:00.0", i), "ggtt_quota")
        outside = str(dst.dir / ("ggtt-%d" % i))
        with open(outside, "w") as f:
            f.write("268435456\n")
        os.unlink(q)
        os.symlink(outside, q)
    deadline = time.monotonic() + 10
    while any(ggtt(dst, v) != "268435456" for v in dst.vfs()):
        assert time.monotonic() < deadline, "the target agent did not read the quotas again"
        time.sleep(0.1)
    r = cli("reserve", "--id", "ggtt-2", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
            *tls_args(dst), check=False)
    assert r.returncode != 0
    assert "provisioning ggtt_quota could not be made the source's 536870912" in r.stderr, r.stderr


def test_a_reserved_target_vf_keeps_the_sources_provisioning_when_the_pool_is_prepared_again(nodes, tmp_path):
    """#13: the target's pool has a profile of its own; the VF reserved for a migration was provisioned like the
    source, and a later preparation pass (here a SIGHUP) must leave it so: xe-vfio-pci would refuse the state."""
    import signal
    config = tmp_path / "pools.json"
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "profile": {"execQuantumMs": 10}}]}))
    src, dst = nodes("node-a"), nodes("node-b", extra=("--config", str(config)))
    for i in (1, 2):
        _provision(src, i, exec_quantum_ms="0")
        _provision(dst, i, exec_quantum_ms="0")
    _provision(src, 1, exec_quantum_ms="25")

    def quantum(i):
        with open(os.path.join(dst.world.host.devdir("0000:03:00.0"), "sriov_admin", "vf%d" % i, "profile",
                               "exec_quantum_ms")) as f:
            return f.read().strip()

    def settle(want):
        deadline = time.monotonic() + 10
        while [quantum(1), quantum(2)] != want:
            assert time.monotonic() < deadline, [quantum(1), quantum(2)]
            time.sleep(0.1)
    time.sleep(0.6)  # both agents see sriov_admin/ (their next rescan)
    dst.agent.signal(signal.SIGHUP)  # a pass: the pool's profile on both free VFs
    settle(["10", "10"])
    deadline = time.monotonic() + 5
    while dict((p.key, p.value) for p in src.local().describe(src.vfs()[0]).provisioning).get("exec_quantum_ms") != "25":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    target = "127.0.0.1:%d" % dst.port
    cli("reserve", "--id", "keep-1", "--vf", src.vfs()[0], "--vm", "default/vm1", "--source", src.sock, "--target",
        target, *tls_args(dst))
    reserved = [m.vf for m in dst.local().list() if m.migration_id == "keep-1"][0]
    n = dst.vfs().index(reserved) + 1
    assert quantum(n) == "25"
    after = len(dst.agent.lines)
    dst.agent.signal(signal.SIGHUP)  # another pass: the reserved VF is left as the source's
    dst.agent.wait_log(r"event=vf_profile_deferred pci=%s resource=intel.com/xe_vf reason=\"a live migration relies on "
                       r"it" % reserved, after=after)
    assert quantum(n) == "25", "the pool's profile was written over the migration's provisioning"
    assert quantum(3 - n) == "10"
    # once the migration is aborted the VF is the pool's again, without waiting for another reason to prepare
    cli("abort", "--id", "keep-1", "--target", target, *tls_args(dst))
    dst.agent.wait_log(r"event=vf_profile_set pci=%s resource=intel.com/xe_vf key=exec_quantum_ms value=10 was=25"
                       % reserved)
    settle(["10", "10"])


def test_reserve_prefers_the_vf_at_the_source_vfs_address(nodes):
    """#13: the target VF at the source VF's own PCI address comes first: with it, the address in the source's
    domain stays right on the target (KubeVirt does not rewrite it yet); another compatible VF otherwise."""
    src, dst = nodes("node-a"), nodes("node-b")
    vf = src.vfs()[1]
    target = "127.0.0.1:%d" % dst.port
    cli("reserve", "--id", "same-1", "--vf", vf, "--vm", "default/vm1", "--source", src.sock, "--target", target,
        *tls_args(dst))
    assert [m.vf for m in dst.local().list() if m.migration_id == "same-1"] == [vf]
    cli("reserve", "--id", "same-2", "--vf", vf, "--vm", "default/vm2", "--source", src.sock, "--target", target,
        *tls_args(dst))
    assert [m.vf for m in dst.local().list() if m.migration_id == "same-2"] == [dst.vfs()[0]]


class FakeKubeVirtAPI:
    """The API server as far as the agents ask it about a KubeVirt migration:
    the watch of migration target pods, the pending pods, a VMI, the source
    pod, the agents' pods; and the Events the agent writes."""

    def __init__(self, vmi_delay=0):
        self.pods, self.vmis, self.events, self.watchers = [], {}, [], []
        self.vmim_events = []  # (ADDED|MODIFIED|DELETED, VirtualMachineInstanceMigration)
        self.vmi_delay = vmi_delay
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        outer = self

        def selected(pod, q):
            meta = pod["metadata"]
            for sel in q.get("labelSelector", [""])[0].split(","):
                if not sel:
                    continue
                k, _, v = sel.partition("=")
                if k not in meta.get("labels", {}) or (v and meta["labels"][k] != v):
                    return False
            for sel in q.get("fieldSelector", [""])[0].split(","):
                k, _, v = sel.partition("=")
                if k == "spec.nodeName" and pod["spec"].get("nodeName") != v:
                    return False
                if k == "status.phase" and pod["status"].get("phase") != v:
                    return False
            return True

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                parts = u.path.strip("/").split("/")
                if q.get("watch") == ["true"] and parts[-1] == "virtualmachineinstancemigrations":
                    return self._watch_migrations()
                if q.get("watch") == ["true"]:
                    return self._watch(q)
                if parts[:4] == ["apis", "kubevirt.io", "v1", "namespaces"] and parts[5] == "virtualmachineinstances":
                    time.sleep(outer.vmi_delay)
                    vmi = outer.vmis.get((parts[4], parts[6]))
                    return self._send(200, vmi) if vmi else self._send(404, {"kind": "Status", "code": 404})
                ns = parts[3] if parts[:3] == ["api", "v1", "namespaces"] else None
                with outer.lock:
                    items = [p for p in outer.pods if (ns is None or p["metadata"]["namespace"] == ns) and selected(p, q)]
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items})

            def _stream(self, take):
                """A watch: the events take(seen) gives (with the next seen), until the test ends."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                seen = 0
                while not outer.stopping.is_set():
                    with outer.lock:
                        new, seen = take(seen)
                    try:
                        for kind, obj in new:
                            self.wfile.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.02)

            def _watch(self, q):
                self._stream(lambda seen: ([("ADDED", p) for p in outer.pods[seen:] if selected(p, q)],
                                           len(outer.pods)))

            def _watch_migrations(self):
                self._stream(lambda seen: (outer.vmim_events[seen:], len(outer.vmim_events)))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.events.append((self.path, body))
                self._send(201, body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_pod(self, pod):
        with self.lock:
            self.pods.append(pod)

    def migration(self, kind, uid, phase, name="db-migration", namespace="prod"):
        """KubeVirt's VMIM of VMI prod/db goes to phase (Running, Succeeded, Failed), or is deleted."""
        vmim = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"namespace": namespace, "name": name, "uid": uid},
                "spec": {"vmiName": "db"}, "status": {"phase": phase}}
        with self.lock:
            self.vmim_events.append((kind, vmim))

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def launcher_pod(name, node, phase, vmi_uid, migration=None, ports=None, labels=None):
    lab = dict(labels or {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_uid,
                          "vm.kubevirt.io/name": "db"})
    if migration:
        lab["kubevirt.io/migrationJobUID"] = migration
    return {"metadata": {"namespace": "prod" if not ports else "xevf", "name": name, "uid": "uid-" + name,
                         "labels": lab, "annotations": {"kubevirt.io/domain": "db"} if not ports else {}},
            "spec": {"nodeName": node, "containers": [
                {"name": "compute", "ports": ports or [],
                 "resources": {"limits": {RESOURCE: "1"} if not ports else {}}}]},
            "status": {"phase": phase, "podIP": "127.0.0.1"}}


MIGRATION_UID = "7f3c1e2a-0b4d-4e6f-9a8b-1c2d3e4f5a6b"


def _kubevirt_world(nodes, tmp_path, target_device_ids=None, vmi_delay=0):
    """node-a runs VM prod/db (its source pod holds node-a's second VF, as the
    kubelet's PodResources says); node-b watches for migration target pods."""
    from podresources_sim import PodResourcesSim
    api_server = FakeKubeVirtAPI(vmi_delay=vmi_delay)
    token = tmp_path / "token"
    token.write_text("test-token\n")
    src = nodes("node-a")
    podres = PodResourcesSim(str(src.dir / "pod-resources.sock")).start()
    podres.pods = [("prod", "virt-launcher-db-src12", [("compute", RESOURCE, [src.vfs()[1]])])]
    api_server.vmis[("prod", "db")] = {"metadata": {"namespace": "prod", "name": "db", "uid": "vmi-uid-1"},
                                       "status": {"nodeName": "node-a"}}
    api_server.add_pod(launcher_pod("virt-launcher-db-src12", "node-a", "Running", "vmi-uid-1"))
    api_server.add_pod(launcher_pod("xevf-agent-a1b2c", "node-a", "Running", None,
                                    labels={"app.kubernetes.io/name": "xevf-agent"},
                                    ports=[{"name": "metrics", "containerPort": 1},
                                           {"name": "migration", "containerPort": src.port}]))
    dst = nodes("node-b", vfs=3, device_ids=target_device_ids,
                extra=["--kube-api", api_server.url, "--kube-api-allow-http", "true",
                       "--kube-token-file", str(token), "--peer-namespace", "xevf"])
    dst.agent.wait_log(r"event=migration_targets_watching node=node-b")
    return api_server, podres, src, dst


def _targets_metric(node):
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request
    _, line = node.agent.wait_log(r"event=http_serving .*port=(\d+)")
    port = int(re.search(r"port=(\d+)", line).group(1))
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    return {s.labels["outcome"]: s.value for fam in text_string_to_metric_families(text)
            if fam.name == "xevf_migration_targets" for s in fam.samples if s.name.endswith("_total")}


def test_a_migration_target_pod_gets_a_compatible_vf_by_itself(nodes, tmp_path):
    """No `migrate reserve`: the target pod's labels lead the agent to the VMI,
    its source pod and node, the source agent describes the VF that pod holds
    (PodResources), and the target pod's allocation gets the VF at the same
    address, even when the kubelet asks while the agent is still finding it."""
    api_server, podres, src, dst = _kubevirt_world(nodes, tmp_path, vmi_delay=0.5)
    try:
        api_server.add_pod(launcher_pod("virt-launcher-db-tgt34", "node-b", "Pending", "vmi-uid-1",
                                        migration=MIGRATION_UID))
        time.sleep(0.2)  # the watch has it; the VMI's answer is 0.3 s away: the kubelet asks now
        got = list(dst.plugin().preferred(dst.vfs(), [], 1).container_responses[0].deviceIDs)
        _, line = dst.agent.wait_log(r"event=migration_target_reserved migration=%s pod=prod/virt-launcher-db-tgt34 "
                                     r"vm=db vf=(\S+)" % MIGRATION_UID)
        reserved = re.search(r"vf=(\S+)", line).group(1)
        assert reserved == src.vfs()[1]  # the source VF's own address: the domain's address stays valid
        assert got == [reserved] and reserved != dst.vfs()[0]  # not the VF the pool would have offered first
        assert [m.vf for m in dst.local().list() if m.migration_id == MIGRATION_UID] == [reserved]
        # the user sees it on the pod
        path, ev = api_server.events[-1]
        assert path == "/api/v1/namespaces/prod/events"
        assert ev["type"] == "Normal" and ev["reason"] == "XevfVFReserved"
        assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "prod",
                                        "name": "virt-launcher-db-tgt34", "uid": "uid-virt-launcher-db-tgt34"}
        assert reserved in ev["message"] and MIGRATION_UID in ev["message"]
        assert _targets_metric(dst) == {"reserved": 1}
        assert "List" in podres.calls  # the source agent asked its kubelet which VF the pod holds
    finally:
        api_server.stop()
        podres.stop()


def test_no_compatible_vf_for_a_migration_target_is_told_on_the_pod(nodes, tmp_path):
    api_server, podres, src, dst = _kubevirt_world(nodes, tmp_path, target_device_ids=[0xE212])
    try:
        api_server.add_pod(launcher_pod("virt-launcher-db-tgt56", "node-b", "Pending", "vmi-uid-1",
                                        migration=MIGRATION_UID))
        dst.agent.wait_log(r"event=migration_target_unmatched migration=%s pod=prod/virt-launcher-db-tgt56 vm=db "
                           r"outcome=no_compatible_vf reason=\".*device id" % MIGRATION_UID)
        deadline = time.monotonic() + 5
        while not api_server.events and time.monotonic() < deadline:
            time.sleep(0.05)
        _, ev = api_server.events[-1]
        assert ev["type"] == "Warning" and ev["reason"] == "XevfNoCompatibleVF"
        assert "device id" in ev["message"] and "node-b" in ev["message"]
        assert _targets_metric(dst) == {"no_compatible_vf": 1}
        assert not [m for m in dst.local().list() if m.migration_id == MIGRATION_UID]
    finally:
        api_server.stop()
        podres.stop()
