"""VF preparation on the simulated host, with the simulated kernel reacting to
sriov_numvfs, drivers_probe and unbind writes, and a module tree indexed by the
real depmod: what an operator sees in ListAndWatch and in the log."""

import json
import os
import signal
import subprocess
import time

import grpc
import pytest
from conftest import AGENT
from simhost import SIM_RELEASE, SimKernel

RESOURCE = "intel.com/xe_vf"


@pytest.fixture
def node(world, tmp_path):
    kernels = []

    def make(pfs=2, vfs=0, modules=("xe_vfio_pci", "vfio_pci"), pools=None, extra=(), admin=False, before=None):
        world.create_host(pfs=pfs, vfs=vfs, vf_driver=None)
        if admin:  # xe 6.19+: sriov_admin/ on each PF
            for pf in [a for a in os.listdir(world.host.devices) if os.path.exists(os.path.join(world.host.devdir(a), "sriov_numvfs"))]:
                os.makedirs(os.path.join(world.host.devdir(pf), "sriov_admin"), exist_ok=True)
        if before:
            before(world.host)
        modules_root = world.host.add_modules(modules) if modules else str(tmp_path / "no-modules")
        kernel = SimKernel(world.host)
        kernel.start()
        kernels.append(kernel)
        proc = tmp_path / "proc"
        proc.mkdir(exist_ok=True)
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"pools": pools or [{"resourceName": RESOURCE, "numVFs": 3}]}))
        world.start_kubelet()
        agent = world.start_agent("--config", str(config), "--modules-root", modules_root,
                                  "--kernel-release", SIM_RELEASE, "--proc-root", str(proc), *extra)
        return agent, kernel, config, proc

    yield make
    for k in kernels:
        k.stop()


def healthy(n):
    return lambda d: len(d) == n and all(h == "Healthy" for h, _ in d.values())


def test_numvfs_enables_vfs_and_binds_xe_vfio_pci(world, node):
    agent, kernel, _, _ = node(pfs=2, vfs=0)
    world.kubelet.wait_registration(RESOURCE)
    _, devices = world.kubelet.watch_of(RESOURCE).wait_for(healthy(6), timeout=10)
    assert sorted(devices)[:3] == ["0000:03:00.1", "0000:03:00.2", "0000:03:00.3"]
    agent.wait_log(r"event=numvfs_set pf=0000:03:00.0 vfs=3")
    agent.wait_log(r"event=vf_bound pci=0000:13:00.3 driver=xe-vfio-pci module=xe_vfio_pci migratable=true")
    assert "numvfs 0000:03:00.0 3" in kernel.log
    assert "bind 0000:03:00.1 xe-vfio-pci" in kernel.log
    # sriov_drivers_autoprobe was turned off before VFs were created
    with open(os.path.join(world.host.devdir("0000:03:00.0"), "sriov_drivers_autoprobe")) as f:
        assert f.read().strip() == "0"


def test_missing_xe_vfio_pci_without_fallback(world, node):
    agent, _, _, _ = node(pfs=1, vfs=0, modules=("vfio_pci",),
                          pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    _, devices = world.kubelet.watch_of(RESOURCE).wait_for(
        lambda d: len(d) == 2 and all(h == "Unhealthy" for h, _ in d.values()), timeout=10)
    _, line = agent.wait_log(r"event=vfio_variant_missing")
    assert "xe-vfio-pci is missing. CONFIG_XE_VFIO_PCI is off by default in the kernel and must be enabled " \
           "(kernel %s)" % SIM_RELEASE in line
    assert 'action="no fallback configured' in line
    with pytest.raises(grpc.RpcError) as e:
        world.client().allocate([["0000:03:00.1"]])
    assert e.value.details() == (
        "device 0000:03:00.1 is unhealthy: no VFIO variant driver: xe-vfio-pci is missing from kernel %s "
        "(CONFIG_XE_VFIO_PCI is off by default; enable it), and pool intel.com/xe_vf has no fallback "
        "(set fallback: vfio-pci to use it without live migration)" % SIM_RELEASE)


def test_fallback_binds_vfio_pci_not_migratable(world, node):
    agent, kernel, _, _ = node(pfs=1, vfs=0, modules=("vfio_pci",),
                               pools=[{"resourceName": RESOURCE, "numVFs": 2, "fallback": "vfio-pci"}])
    world.kubelet.wait_registration(RESOURCE)
    world.kubelet.watch_of(RESOURCE).wait_for(healthy(2), timeout=10)
    _, line = agent.wait_log(r"event=vfio_variant_missing")
    assert 'action="binding to vfio-pci (fallback: vfio-pci), not migratable"' in line
    agent.wait_log(r"event=vf_bound pci=0000:03:00.2 driver=vfio-pci module=vfio_pci migratable=false")
    out = json.loads(subprocess.run([AGENT, "discover", "--json", "--sysfs-root", world.host.sys, "--dev-root",
                                     world.host.dev], capture_output=True, text=True, check=True).stdout)
    vf = out["pfs"][0]["vfs"][0]
    assert (vf["driver"], vf["driverKind"], vf["migrationCapable"]) == ("vfio-pci", "vfio-pci", False)


def test_numvfs_change_refused_while_a_vm_holds_a_vf(world, node):
    agent, kernel, config, proc = node(pfs=1, vfs=0, pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(2), timeout=10)
    # a QEMU (pid 4242) holds the VFIO group of VF 0000:03:00.2 open
    group = world.host.group_of("0000:03:00.2")
    (proc / "4242" / "fd").mkdir(parents=True)
    os.symlink("/dev/vfio/" + group, proc / "4242" / "fd" / "17")
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 4}]}))
    mark = agent.log_count()
    agent.signal(signal.SIGHUP)
    _, line = agent.wait_log(r"event=numvfs_refused", after=mark)
    assert "pf=0000:03:00.0" in line and "current=2 wanted=4 vf=0000:03:00.2" in line
    assert "holds its VFIO device open" in line
    time.sleep(0.5)
    assert world.host.vfs_of("0000:03:00.0") == ["0000:03:00.1", "0000:03:00.2"]
    assert world.client().allocate([["0000:03:00.1"]]).container_responses[0].envs
    # the VM is gone, but VF 1 was just allocated: still refused
    os.unlink(proc / "4242" / "fd" / "17")
    mark = agent.log_count()
    agent.signal(signal.SIGHUP)
    _, line = agent.wait_log(r"event=numvfs_refused", after=mark)
    assert "vf=0000:03:00.1 reason=\"it was allocated to a container in the last minutes\"" in line


def test_numvfs_change_when_nothing_is_in_use(world, node):
    agent, kernel, config, _ = node(pfs=1, vfs=0, pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(2), timeout=10)
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 4}]}))
    agent.signal(signal.SIGHUP)
    watch.wait_for(healthy(4), timeout=10)
    # through 0, as the kernel requires
    assert kernel.log.index("numvfs 0000:03:00.0 0") < kernel.log.index("numvfs 0000:03:00.0 4")


def test_pf_unbound_makes_its_vfs_unhealthy(world, node):
    node(pfs=2, vfs=0, pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(4), timeout=10)
    t0 = time.monotonic()
    world.host.unbind("0000:13:00.0")
    t1, d = watch.wait_for(lambda d: d["0000:13:00.1"][0] == "Unhealthy" and d["0000:13:00.2"][0] == "Unhealthy")
    assert t1 - t0 < 1.0
    assert d["0000:03:00.1"][0] == "Healthy"
    world.agents[0].wait_log(r"event=vf_unhealthy .*pci=0000:13:00.1 reason=\"its PF 0000:13:00.0 is not bound")
    world.host.bind("0000:13:00.0", "xe")
    watch.wait_for(healthy(4), timeout=3)


def test_pf_removed_keeps_its_vfs_listed_unhealthy(world, node):
    agent, _, _, _ = node(pfs=2, vfs=0, pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(4), timeout=10)
    world.host.remove_pf("0000:13:00.0")
    try:
        _, d = watch.wait_for(lambda d: d.get("0000:13:00.2", ("",))[0] == "Unhealthy", timeout=10)
    except TimeoutError:
        raise AssertionError("no Unhealthy 0000:13:00.2 after the PF went; agent log:\n" + "\n".join(agent.lines[-40:]))
    assert len(d) == 4 and d["0000:03:00.2"][0] == "Healthy"
    agent.wait_log(r"event=vf_unhealthy .*pci=0000:13:00.2 reason=\"its PF 0000:13:00.0 is gone")
    assert agent.proc.poll() is None


def test_missing_module_tree_is_named(world, node):
    agent, _, _, _ = node(pfs=1, vfs=0, modules=None, pools=[{"resourceName": RESOURCE, "numVFs": 1}])
    _, line = agent.wait_log(r"event=modules_unavailable")
    assert "no modules for kernel %s" % SIM_RELEASE in line and "mount the host's /lib/modules" in line
    world.kubelet.wait_registration(RESOURCE)
    world.kubelet.watch_of(RESOURCE).wait_for(lambda d: d.get("0000:03:00.1", ("",))[0] == "Unhealthy")


def test_provisioning_is_read_where_exposed(world):
    world.create_host(pfs=1, vfs=2)
    prof = os.path.join(world.host.devdir("0000:03:00.0"), "sriov_admin", "vf2", "profile")
    os.makedirs(prof)
    for k, v in {"exec_quantum_ms": "25", "preempt_timeout_us": "500000", "sched_priority": "low [normal] high",
                 "vram_quota": "4294967296"}.items():
        with open(os.path.join(prof, k), "w") as f:
            f.write(v + "\n")
    out = json.loads(subprocess.run([AGENT, "discover", "--json", "--sysfs-root", world.host.sys, "--dev-root",
                                     world.host.dev], capture_output=True, text=True, check=True).stdout)
    pf = out["pfs"][0]
    assert pf["provisioningExposed"] is True
    assert pf["vfs"][1]["provisioning"] == {"exec_quantum_ms": "25", "preempt_timeout_us": "500000",
                                            "sched_priority": "low [normal] high", "vram_quota": "4294967296"}
    assert pf["vfs"][0]["provisioning"] == {}
    world.create_host(pfs=1, vfs=1)
    out = json.loads(subprocess.run([AGENT, "discover", "--json", "--sysfs-root", world.host.sys, "--dev-root",
                                     world.host.dev], capture_output=True, text=True, check=True).stdout)
    assert out["pfs"][0]["provisioningExposed"] is False and out["pfs"][0]["vfs"][0]["provisioning"] is None


def test_resource_name_without_config_leaves_numvfs_alone(world, tmp_path):
    """`--resource-name` with no config file names the default pool and sets no
    VF count: the agent once wrote sriov_numvfs=0 to every Xe PF here (the
    pool's numVFs was 0 rather than unset), removing every free VF."""
    world.create_host(pfs=2, vfs=3)
    kernel = SimKernel(world.host)
    kernel.start()
    try:
        world.start_kubelet()
        agent = world.start_agent("--resource-name", "intel.com/xe_vf_a", "--proc-root", str(tmp_path))
        world.kubelet.wait_registration("intel.com/xe_vf_a")
        agent.wait_log(r"event=vf_added resource=intel.com/xe_vf_a pci=0000:13:00.3")
        time.sleep(1.0)  # several rescans and the start-up preparation pass are over
        assert kernel.log == []
        assert not any("numvfs_setting" in line for line in agent.lines)
        for pf in ("0000:03:00.0", "0000:13:00.0"):
            assert len(world.host.vfs_of(pf)) == 3
            with open(os.path.join(world.host.devdir(pf), "sriov_numvfs")) as f:
                assert f.read().strip() == "3"
    finally:
        kernel.stop()


def test_preparation_never_holds_up_serving_registration_or_shutdown(world, tmp_path):
    """4 PFs whose VFs never appear kept the agent unregistered for 61 s
    (/healthz 503: the chart's liveness probe killed it at ~40 s), and SIGTERM
    during a pass took 45.7 s. Preparation now runs beside serving, and a
    shutdown stops it at its next step."""
    import urllib.request
    world.create_host(pfs=4, vfs=0, vf_driver=None)  # no simulated kernel: sriov_numvfs makes no VF
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 2}]}))
    world.start_kubelet()
    started = time.monotonic()
    agent = world.start_agent("--config", str(config), "--proc-root", str(tmp_path))
    world.kubelet.wait_registration(RESOURCE, timeout=10)
    assert time.monotonic() - started < 3
    _, line = agent.wait_log(r"event=http_serving .*port=(\d+)")
    port = int(line.split("port=")[1].split()[0])
    agent.wait_log(r"event=numvfs_setting pf=0000:03:00.0")  # a pass waits for VFs that do not come
    assert urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5).read() == b"ok\n"
    stopping = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - stopping < 5


PROFILE = {"execQuantumMs": 25, "preemptTimeoutUs": 500000, "schedPriority": "high"}


def profile_of(world, pf, n):
    d = os.path.join(world.host.devdir(pf), "sriov_admin", "vf%d" % n, "profile")
    out = {}
    for k in ("exec_quantum_ms", "preempt_timeout_us", "sched_priority"):
        p = os.path.join(d, k)
        if os.path.isfile(p):
            with open(p) as f:
                out[k] = f.read().strip()
    return out


def metrics_text(agent):
    import urllib.request
    _, line = agent.wait_log(r"event=http_serving .*port=(\d+)")
    port = int(line.split("port=")[1].split()[0])
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()


def eventually(what, ok, timeout=5, step=0.05):
    """Polls what() until ok(its value); fails with the last value after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not ok(value := what()):
        assert time.monotonic() < deadline, value
        time.sleep(step)
    return value


def profile_metric(agent, pci, key, value):
    """/metrics comes to show that VF's profile value."""
    sample = 'xevf_vf_profile_info{resource="%s",pci="%s",key="%s",value="%s"} 1' % (RESOURCE, pci, key, value)
    eventually(lambda: metrics_text(agent), lambda text: sample in text, step=0.2)


WANTED = {"exec_quantum_ms": "25", "preempt_timeout_us": "500000", "sched_priority": "low normal [high]"}


def test_pool_profile_is_set_on_vfs_and_again_when_they_are_recreated(world, node):
    """#13: a pool's profile reaches xe's sriov_admin/ for each VF, shows in discover and /metrics, and is
    set again when the VFs are re-created (xe gives new VFs its defaults)."""
    agent, kernel, config, _ = node(pfs=1, vfs=0, admin=True,
                                    pools=[{"resourceName": RESOURCE, "numVFs": 2, "profile": PROFILE}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(2), timeout=10)
    agent.wait_log(r"event=vf_profile_set pci=0000:03:00.1 resource=intel.com/xe_vf key=exec_quantum_ms value=25 was=0")
    eventually(lambda: profile_of(world, "0000:03:00.0", 2), lambda p: p == WANTED)
    assert profile_of(world, "0000:03:00.0", 1) == WANTED
    out = json.loads(subprocess.run([AGENT, "discover", "--json", "--sysfs-root", world.host.sys, "--dev-root",
                                     world.host.dev], capture_output=True, text=True, check=True).stdout)
    assert out["pfs"][0]["vfs"][0]["provisioning"]["sched_priority"] == "low normal [high]"
    profile_metric(agent, "0000:03:00.2", "sched_priority", "high")
    # numVFs 2 -> 3: xe re-creates every VF with its defaults; the agent sets the profile again
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 3, "profile": PROFILE}]}))
    agent.signal(signal.SIGHUP)
    watch.wait_for(healthy(3), timeout=10)
    eventually(lambda: [profile_of(world, "0000:03:00.0", n) for n in (1, 2, 3)], lambda ps: ps == [WANTED] * 3)


def quotas_of(world, pf, n):
    d = world.host.quota_dir(pf, n)
    return {k: open(os.path.join(d, k)).read().strip() for k in sorted(os.listdir(d))} if os.path.isdir(d) else {}


def test_pool_quotas_go_to_xe_debugfs_and_again_when_vfs_are_recreated(world, node):
    """#13: a pool's GGTT, context and doorbell quotas reach xe's debugfs (gt0/vfN/*_quota) on a kernel without
    sriov_admin/, show in discover, and are set again when xe re-creates the VFs with its fair shares."""
    quotas = {"ggttQuota": 536870912, "contextsQuota": 512, "doorbellsQuota": 16}
    want = {"contexts_quota": "512", "doorbells_quota": "16", "ggtt_quota": "536870912", "lmem_quota": "0"}
    agent, _, config, _ = node(pfs=1, vfs=0, before=lambda host: host.expose_quotas("0000:03:00.0"),
                               pools=[{"resourceName": RESOURCE, "numVFs": 2, "profile": quotas}])
    world.kubelet.wait_registration(RESOURCE)
    watch = world.kubelet.watch_of(RESOURCE)
    watch.wait_for(healthy(2), timeout=10)
    agent.wait_log(r"event=vf_profile_set pci=0000:03:00.1 resource=intel.com/xe_vf key=ggtt_quota value=536870912 "
                   r"was=268435456")
    eventually(lambda: quotas_of(world, "0000:03:00.0", 2), lambda q: q == want)
    assert quotas_of(world, "0000:03:00.0", 1) == want
    out = json.loads(subprocess.run([AGENT, "discover", "--json", "--sysfs-root", world.host.sys, "--dev-root",
                                     world.host.dev], capture_output=True, text=True, check=True).stdout)
    assert out["pfs"][0]["provisioningExposed"] is True
    assert out["pfs"][0]["vfs"][1]["provisioning"] == want
    profile_metric(agent, "0000:03:00.2", "ggtt_quota", "536870912")
    # numVFs 2 -> 3: xe re-creates every VF with its fair shares; the agent sets the quotas again
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 3, "profile": quotas}]}))
    agent.signal(signal.SIGHUP)
    watch.wait_for(healthy(3), timeout=10)
    eventually(lambda: [quotas_of(world, "0000:03:00.0", n) for n in (1, 2, 3)], lambda qs: qs == [want] * 3)


def test_a_refused_profile_value_is_named_and_the_vf_keeps_serving(world, node):
    def refuse_on_vf2(host):
        prof = os.path.join(host.devdir("0000:03:00.0"), "sriov_admin", "vf2", "profile")
        os.makedirs(os.path.join(prof, "preempt_timeout_us"))  # not a file the agent may write: refused
        for k in ("exec_quantum_ms", "sched_priority"):
            with open(os.path.join(prof, k), "w") as f:
                f.write({"exec_quantum_ms": "0", "sched_priority": "low [normal] high"}[k] + "\n")
    agent, _, _, _ = node(pfs=1, vfs=2, admin=True, before=refuse_on_vf2,
                          pools=[{"resourceName": RESOURCE, "profile": PROFILE}])
    world.kubelet.wait_registration(RESOURCE)
    _, line = agent.wait_log(r"event=vf_profile_refused pci=0000:03:00.2 ")
    assert "key=preempt_timeout_us value=500000" in line and "preempt_timeout_us" in line.split("reason=")[1]
    assert 'action="the VF serves with the kernel\'s value; correct the pool\'s profile"' in line
    # the rest of the VF's profile, and the other VF, are set; both VFs serve
    world.kubelet.watch_of(RESOURCE).wait_for(healthy(2), timeout=10)
    deadline = time.monotonic() + 5
    while profile_of(world, "0000:03:00.0", 2).get("exec_quantum_ms") != "25" or \
            profile_of(world, "0000:03:00.0", 1) != WANTED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "xevf_vf_profile_refused_total 1" in metrics_text(agent)


def test_a_profile_change_leaves_a_vf_a_vm_holds_alone(world, node):
    agent, _, config, proc = node(pfs=1, vfs=0, admin=True,
                                  pools=[{"resourceName": RESOURCE, "numVFs": 2}])
    world.kubelet.wait_registration(RESOURCE)
    world.kubelet.watch_of(RESOURCE).wait_for(healthy(2), timeout=10)
    # a QEMU (pid 4242) holds VF 0000:03:00.1's VFIO group
    group = world.host.group_of("0000:03:00.1")
    (proc / "4242" / "fd").mkdir(parents=True)
    os.symlink("/dev/vfio/" + group, proc / "4242" / "fd" / "17")
    config.write_text(json.dumps({"pools": [{"resourceName": RESOURCE, "numVFs": 2, "profile": PROFILE}]}))
    agent.signal(signal.SIGHUP)
    agent.wait_log(r"event=vf_profile_set pci=0000:03:00.2 .*key=sched_priority value=high")
    time.sleep(0.3)
    assert profile_of(world, "0000:03:00.0", 1) == {"exec_quantum_ms": "0", "preempt_timeout_us": "0",
                                                     "sched_priority": "low [normal] high"}
    assert not [line for line in agent.lines if "event=vf_profile_set pci=0000:03:00.1" in line]
