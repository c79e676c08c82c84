"""`xevf-agent doctor`: what stands in the way of live migration on a host,
per PF and VF, as an operator reads it (#13)."""

import json
import os
import subprocess

import pytest
from conftest import AGENT
from simhost import SIM_RELEASE

MIGRATION_BLOCKED = 3


def doctor(world, *extra):
    h = world.host
    return subprocess.run([AGENT, "doctor", "--sysfs-root", h.sys, "--dev-root", h.dev,
                           "--boot-root", os.path.join(h.root, "boot"), "--proc-root", os.path.join(h.root, "proc"),
                           "--modules-root", os.path.join(h.root, "lib", "modules"), "--kernel-release", SIM_RELEASE,
                           *extra], capture_output=True, text=True, timeout=30)


@pytest.fixture
def host(world):
    """Two Battlemage PFs: PF 1 on new GuC with sriov_admin/, VF 2 on plain vfio-pci; PF 2 on old GuC."""
    h = world.create_host(pfs=2, vfs=2)
    h.add_modules()
    h.add_kernel_config(xe_vfio_pci="m")
    h.set_guc("0000:03:00.0", "70.54.0")
    h.set_guc("0000:13:00.0", "70.44.1")
    os.makedirs(os.path.join(h.devdir("0000:03:00.0"), "sriov_admin"))
    h.bind("0000:03:00.2", "vfio-pci")
    return h


def vf_line(out, vf):
    return next(line.strip() for line in out.splitlines() if line.strip().startswith("VF " + vf))


def test_doctor_names_what_blocks_each_vf(world, host):
    r = doctor(world)
    assert r.returncode == MIGRATION_BLOCKED, r.stdout + r.stderr
    out = r.stdout
    assert "ok       kernel config       CONFIG_XE_VFIO_PCI=m (%s/boot/config-%s)" % (host.root, SIM_RELEASE) in out
    assert "note     iommufd             kernel %s has no IOMMUFD" % SIM_RELEASE in out
    assert "enable-migration=on and x-device-dirty-page-tracking=off" in out
    assert "PF 0000:03:00.0  Battlemage 0xe211  driver xe" in out
    assert "ok       guc                 GuC 70.54.0" in out
    assert "ok       xe-vfio-pci module  " in out
    assert vf_line(out, "0000:03:00.1").split() == ["VF", "0000:03:00.1", "xe-vfio-pci", "migratable"]
    assert vf_line(out, "0000:03:00.2").startswith("VF 0000:03:00.2  vfio-pci     not migratable: vf driver: "
                                                   "bound to plain vfio-pci: usable by a VM, not migratable")
    # the second PF's old firmware blocks both of its VFs, and no sriov_admin/ is a note only
    assert "blocks   guc                 GuC 70.44.1: xe-vfio-pci offers migration with GuC 70.54 or newer" in out
    assert "note     provisioning        no sriov_admin/" in out
    for vf in ("0000:13:00.1", "0000:13:00.2"):
        assert "not migratable: guc: GuC 70.44.1" in vf_line(out, vf)
    assert out.rstrip().endswith("1 of 4 VFs can migrate")


def test_doctor_says_the_kernel_lacks_xe_vfio_pci(world, host):
    host.add_kernel_config(xe_vfio_pci=None)  # Debian's kernels: "# CONFIG_XE_VFIO_PCI is not set"
    r = doctor(world)
    assert r.returncode == MIGRATION_BLOCKED
    assert ("blocks   kernel config       kernel %s is built without CONFIG_XE_VFIO_PCI (%s/boot/config-%s: not set)"
            % (SIM_RELEASE, host.root, SIM_RELEASE)) in r.stdout
    assert "not migratable: kernel config: kernel %s is built without CONFIG_XE_VFIO_PCI" % SIM_RELEASE \
        in vf_line(r.stdout, "0000:03:00.1")


def test_doctor_reads_proc_config_gz_and_says_when_it_cannot_tell(world, host):
    os.unlink(os.path.join(host.root, "boot", "config-" + SIM_RELEASE))
    host.add_kernel_config(xe_vfio_pci="m", iommufd="y", where="proc")
    r = doctor(world, "--json")
    report = json.loads(r.stdout)
    kernel = [f for f in report["host"]["findings"] if f["check"] == "kernel config"][0]
    assert kernel["verdict"] == "ok" and kernel["detail"].endswith("/proc/config.gz)")
    assert not [f for f in report["host"]["findings"] if f["check"] == "iommufd"]  # built: nothing to say
    vfs = {v["address"]: v for pf in report["pfs"] for v in pf["vfs"]}
    assert vfs["0000:03:00.1"]["verdict"] == "migratable" and vfs["0000:03:00.1"]["because"] is None
    assert report["migratableVfs"] == 1 and report["vfs"] == 4

    os.unlink(os.path.join(host.root, "proc", "config.gz"))
    r = doctor(world)
    assert ("unknown  kernel config       the configuration of kernel %s is neither in %s/boot/config-%s nor in "
            "%s/proc/config.gz" % (SIM_RELEASE, host.root, SIM_RELEASE, host.root)) in r.stdout
    assert vf_line(r.stdout, "0000:03:00.1").startswith("VF 0000:03:00.1  xe-vfio-pci  cannot tell: kernel config:")


def test_doctor_knows_panther_lake_and_data_center_gpu_flex(world):
    h = world.create_host(pfs=2, vfs=1, device_ids=[0xB080, 0x56C0])
    h.add_modules()
    h.add_kernel_config(xe_vfio_pci="m", iommufd="y")
    for pf in ("0000:03:00.0", "0000:13:00.0"):
        h.set_guc(pf, "70.55.1")
    r = doctor(world)
    assert r.returncode == MIGRATION_BLOCKED
    assert "PF 0000:03:00.0  Panther Lake 0xb080  driver xe" in r.stdout
    assert vf_line(r.stdout, "0000:03:00.1").split() == ["VF", "0000:03:00.1", "xe-vfio-pci", "migratable"]
    assert "blocks   platform            Data Center GPU Flex (0x56c0): xe has no SR-IOV for it" in r.stdout
    assert "not migratable: platform: Data Center GPU Flex" in vf_line(r.stdout, "0000:13:00.1")
