"""KubeVirt's node hooks (VEP-190 Plugins) and the watch of its migrations
(#13): virt-handler is played by an independent grpcio client built from
KubeVirt's hook API messages (tests/sim/virt_handler_sim.py), the API server
by FakeKubeVirtAPI, the kubelets' PodResources by PodResourcesSim. Two agents,
node-a (source) and node-b (target), each serving the hooks on its socket."""
import os
import re
import shutil
import sys
import tempfile
import time

import grpc
import pytest

from test_migration import (FakeKubeVirtAPI, MIGRATION_UID, RESOURCE, _hold, certs, launcher_pod, nodes,  # noqa: F401
                            phases)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
from podresources_sim import PodResourcesSim  # noqa: E402
from virt_handler_sim import VirtHandler, migrating_vmi  # noqa: E402

SOURCE_POD, TARGET_POD = "virt-launcher-db-src12", "virt-launcher-db-tgt34"


class KubeVirtCluster:
    """node-a runs VM prod/db on its second VF (the source pod holds it and its QEMU has it open); both
    agents ask the API server, serve the node hooks, and have a kubelet's PodResources."""

    def __init__(self, nodes, tmp_path):
        self.api = FakeKubeVirtAPI()
        self.socks = tempfile.mkdtemp(prefix="xevf-hk-")  # unix socket paths stay short
        token = tmp_path / "token"
        token.write_text("test-token\n")
        kube = ["--kube-api", self.api.url, "--kube-api-allow-http", "true", "--kube-token-file", str(token),
                "--peer-namespace", "xevf"]
        self.proc_a = tmp_path / "proc-a"
        self.proc_a.mkdir()
        self.src = nodes("node-a", extra=kube + ["--node-hook-socket", self.socks + "/a.sock",
                                                  "--proc-root", str(self.proc_a)])
        self.dst = nodes("node-b", vfs=3, extra=kube + ["--node-hook-socket", self.socks + "/b.sock"])
        self.vf = self.src.vfs()[1]
        self.podres_a = PodResourcesSim(str(self.src.dir / "pod-resources.sock")).start()
        self.podres_a.pods = [("prod", SOURCE_POD, [("compute", RESOURCE, [self.vf])])]
        self.podres_b = PodResourcesSim(str(self.dst.dir / "pod-resources.sock")).start()
        self.src.plugin().allocate([[self.vf]])
        self.qemu = _hold(self.src, self.proc_a, self.vf, 5101)
        self.api.vmis[("prod", "db")] = {"metadata": {"namespace": "prod", "name": "db", "uid": "vmi-uid-1"},
                                         "status": {"nodeName": "node-a"}}
        self.api.add_pod(launcher_pod(SOURCE_POD, "node-a", "Running", "vmi-uid-1"))
        self.api.add_pod(launcher_pod("xevf-agent-a1b2c", "node-a", "Running", None,
                                      labels={"app.kubernetes.io/name": "xevf-agent"},
                                      ports=[{"name": "migration", "containerPort": self.src.port}]))
        for node in (self.src, self.dst):
            node.agent.wait_log(r"event=node_hooks_serving socket=\S+ hooks=")
            node.agent.wait_log(r"event=migration_outcomes_watching")
        self.handler_a = VirtHandler(self.socks + "/a.sock", "node-a")
        self.handler_b = VirtHandler(self.socks + "/b.sock", "node-b")
        self.vmi = migrating_vmi(MIGRATION_UID, "node-a", "node-b", SOURCE_POD, TARGET_POD, RESOURCE)

    def target_pod_comes(self):
        """virt-controller makes the target pod; node-b's agent reserves a VF for it by itself."""
        self.api.add_pod(launcher_pod(TARGET_POD, "node-b", "Pending", "vmi-uid-1", migration=MIGRATION_UID))
        _, line = self.dst.agent.wait_log(r"event=migration_target_reserved migration=%s .* vf=(\S+)" % MIGRATION_UID)
        return re.search(r"vf=(\S+)", line).group(1)

    def target_pod_gets(self, vf):
        """The kubelet allocates vf to the target pod, and PodResources says so."""
        self.dst.plugin().allocate([[vf]])
        self.podres_b.pods = [("prod", TARGET_POD, [("compute", RESOURCE, [vf])])]

    def close(self):
        self.handler_a.close()
        self.handler_b.close()
        self.api.stop()
        self.podres_a.stop()
        self.podres_b.stop()
        shutil.rmtree(self.socks, ignore_errors=True)


@pytest.fixture
def cluster(nodes, tmp_path):
    c = KubeVirtCluster(nodes, tmp_path)
    yield c
    c.close()


def refused(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def record(node, mid=MIGRATION_UID):
    return phases(node.local()).get(mid)


def test_the_node_hooks_carry_a_migration_and_its_outcome_commits_the_source(cluster):
    c = cluster
    # PreMigrationTarget before the target pod is there: nothing reserved, and virt-handler is told why
    code, why = refused(lambda: c.handler_b.hook("PreMigrationTarget", c.vmi))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "no VF of %s is reserved on node node-b for migration %s of VMI prod/db" % (RESOURCE, MIGRATION_UID) in why
    reserved = c.target_pod_comes()
    assert reserved == c.vf  # the source VF's own address
    # reserved, but the kubelet has not given it to the target pod yet: try again
    code, why = refused(lambda: c.handler_b.hook("PreMigrationTarget", c.vmi))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "VF %s is reserved for migration %s, but the target pod has not got it yet" % (reserved, MIGRATION_UID) in why
    # the kubelet gave the target pod another VF: the hook says which and which it should have been
    other = [v for v in c.dst.vfs() if v != reserved][0]
    c.podres_b.pods = [("prod", TARGET_POD, [("compute", RESOURCE, [other])])]
    code, why = refused(lambda: c.handler_b.hook("PreMigrationTarget", c.vmi))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "target pod prod/%s got VF %s, not VF %s that was reserved for migration %s" % (
        TARGET_POD, other, reserved, MIGRATION_UID) in why
    # it got the reserved one: the target is ready, however often virt-handler asks
    c.target_pod_gets(reserved)
    c.handler_b.hook("PreMigrationTarget", c.vmi)
    c.handler_b.hook("PreMigrationTarget", c.vmi)
    assert record(c.dst)[:3] == ("target", reserved, "reserved")
    # PreMigrationSource: the source's QEMU carries the state; the agent records the Handover, never opens the VF
    c.handler_a.hook("PreMigrationSource", c.vmi)
    c.handler_a.hook("PreMigrationSource", c.vmi)
    assert record(c.src)[:3] == ("source", c.vf, "handed-over")
    c.src.agent.wait_log(r"event=node_hook_done hook=PreMigrationSource vmi=prod/db migration=%s" % MIGRATION_UID)
    # QEMU moved the VM; PostMigrationTarget commits the target's side
    c.handler_b.hook("PostMigrationTarget", c.vmi)
    assert record(c.dst)[2] == "committed"
    c.handler_b.hook("PostMigrationTarget", c.vmi)  # again: still fine
    # the VMIM succeeded: the source commits once its QEMU has let the VF go, not before
    c.api.migration("MODIFIED", MIGRATION_UID, "Succeeded")
    c.src.agent.wait_log(r"event=migration_outcome migration=%s vmim=prod/db-migration outcome=succeeded role=source "
                         r"vf=%s action=commit" % (MIGRATION_UID, c.vf))
    c.src.agent.wait_log(r"event=migration_end_deferred migration=%s commit=yes reason=\".*VF %s is in use"
                         % (MIGRATION_UID, c.vf))
    assert record(c.src)[2] == "handed-over"
    os.unlink(c.qemu)  # the source virt-launcher pod ends
    c.src.agent.wait_log(r"event=migration_committed migration=%s role=source vf=%s .*reset=yes" % (MIGRATION_UID, c.vf))
    assert record(c.src)[2] == "committed"


def test_a_failed_migration_aborts_both_sides_by_itself(cluster):
    """No hook fires when a migration fails: the VMIM's phase frees the target's VF and leaves the source's
    to the VM that runs on."""
    c = cluster
    reserved = c.target_pod_comes()
    c.target_pod_gets(reserved)
    c.handler_b.hook("PreMigrationTarget", c.vmi)
    c.handler_a.hook("PreMigrationSource", c.vmi)
    c.api.migration("MODIFIED", MIGRATION_UID, "Running")
    c.api.migration("MODIFIED", MIGRATION_UID, "Failed")
    c.dst.agent.wait_log(r"event=migration_aborted migration=%s role=target vf=%s" % (MIGRATION_UID, reserved))
    c.src.agent.wait_log(r"event=migration_aborted migration=%s role=source vf=%s" % (MIGRATION_UID, c.vf))
    assert record(c.dst)[2] == "aborted" and record(c.src)[2] == "aborted"
    # nothing was done to the VF the VM still runs on; the target's VF is free for the next pod
    assert os.path.islink(c.qemu)
    assert "reset=no" in c.src.agent.wait_log(r"event=migration_aborted migration=%s role=source" % MIGRATION_UID)[1]
    assert "reserved" not in [m.phase for m in c.dst.local().list()]


def test_a_cancelled_migration_is_aborted_too(cluster):
    """Cancelling a migration deletes its VMIM: the reservation goes."""
    c = cluster
    reserved = c.target_pod_comes()
    c.api.migration("DELETED", MIGRATION_UID, "Scheduling")
    c.dst.agent.wait_log(r"event=migration_outcome migration=%s vmim=prod/db-migration outcome=failed \(deleted\) "
                         r"role=target vf=%s action=abort" % (MIGRATION_UID, reserved))
    deadline = time.monotonic() + 5
    while record(c.dst)[2] != "aborted" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record(c.dst)[2] == "aborted"


def test_the_node_hooks_refuse_what_is_not_theirs_and_pass_what_has_no_vf(cluster):
    c = cluster
    # virt-handler of another node dialled the wrong socket
    code, why = refused(lambda: c.handler_a.hook("PreMigrationSource", c.vmi, node="node-b"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert why == "the hook is for node node-b; this agent serves node node-a"
    # a VMI that is no JSON object, or has no names
    code, why = refused(lambda: c.handler_a._execute(
        __import__("virt_handler_sim").api().ExecuteNodeHookRequest(hookPoint="PreMigrationSource", vmi=b"[1,2]"),
        timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and why == "the VMI is not a JSON object"
    # a VM without a VF of ours, and hook points xevf has nothing to do at: done, nothing recorded
    plain = migrating_vmi(MIGRATION_UID, "node-a", "node-b", SOURCE_POD, TARGET_POD, "nvidia.com/GA102GL")
    c.handler_a.hook("PreMigrationSource", plain)
    c.handler_a.hook("PreVMStart", c.vmi)
    assert record(c.src) is None
    # a VMI with a VF of ours but no migration: virt-handler is told what is missing
    still = dict(c.vmi, status={"nodeName": "node-a"})
    code, why = refused(lambda: c.handler_a.hook("PreMigrationSource", still))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert why == "VMI prod/db: status.migrationState.migrationUid is not set"
    # the source pod's VF is on plain vfio-pci: QEMU cannot migrate it, and the hook stops the migration saying so
    c.src.world.host.bind(c.vf, "vfio-pci")
    deadline = time.monotonic() + 5
    while c.src.local().describe(c.vf).driver != "vfio-pci":
        assert time.monotonic() < deadline, "the agent did not see the VF move to vfio-pci"
        time.sleep(0.1)
    code, why = refused(lambda: c.handler_a.hook("PreMigrationSource", c.vmi))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "VMI prod/db, VF %s: VF %s is bound to vfio-pci: QEMU cannot migrate it" % (c.vf, c.vf) in why
    assert record(c.src) is None
