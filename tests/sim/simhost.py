#!/usr/bin/env python3
"""Simulated host for xevf tests: a generated sysfs and /dev tree.

The layout follows the kernel's: real device directories under
sys/devices/pci0000:00/, symlinks to them from sys/bus/pci/devices/, PFs with
sriov_* attributes and virtfnN links, VFs with a physfn link, driver links into
sys/bus/pci/drivers/<name>/, iommu_group links into sys/kernel/iommu_groups/N,
and a config file that libpci reads. /dev/vfio nodes are plain files: the agent
only checks that they exist and hands their paths to the kubelet.

Use it as a module (SimHost) or from the shell:
  simhost.py create ROOT [--pfs 2] [--vfs 7] [--vf-driver xe-vfio-pci] [--cdev] [--first-group N]
  simhost.py set-driver ROOT PCI DRIVER|none
  simhost.py remove-group-node ROOT PCI | add-group-node ROOT PCI
  simhost.py remove-vfs ROOT PF
"""

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

INTEL = 0x8086
# Battlemage G21 (Arc Pro B60, B50), ids from the kernel's include/drm/intel/pciids.h: Xe parts
# that do SR-IOV in xe (Data Center GPU Flex does not).
DEFAULT_DEVICE_IDS = [0xE211, 0xE212]
DISPLAY_CLASS = 0x030000
REVISION = 0x08
FIRST_GROUP = 10
SIM_RELEASE = "6.99.0-sim"
# module name -> (PCI driver name, vfio_pci aliases)
MODULES = {
    # Battlemage (Arc Pro) and a Panther Lake id, as xe-vfio-pci's table lists them
    "xe_vfio_pci": ("xe-vfio-pci", ["vfio_pci:v00008086d0000E211sv*sd*bc*sc*i*",
                                    "vfio_pci:v00008086d0000E212sv*sd*bc*sc*i*",
                                    "vfio_pci:v00008086d0000B080sv*sd*bc*sc*i*"]),
    "vfio_pci": ("vfio-pci", ["vfio_pci:v*d*sv*sd*bc*sc*i*"]),
}


def pf_address(index):
    return "0000:%02x:00.0" % (0x03 + index * 0x10)


def vf_address(pf, n):
    """Address of VF n (0-based) of a PF: routing id PF + 1 + n (offset 1, stride 1)."""
    dom, bus, devfn = pf[:4], int(pf[5:7], 16), (int(pf[8:10], 16) << 3) | int(pf[11], 16)
    rid = (bus << 8 | devfn) + 1 + n
    return "%s:%02x:%02x.%x" % (dom, rid >> 8, (rid & 0xFF) >> 3, rid & 7)


def config_space(vendor, device, revision, klass, size=256):
    head = struct.pack("<HHHHB", vendor, device, 0x0406, 0x0010, revision)
    head += bytes([klass & 0xFF, (klass >> 8) & 0xFF, (klass >> 16) & 0xFF])
    return head + bytes(size - len(head))


class SimHost:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.sys = os.path.join(self.root, "sys")
        self.dev = os.path.join(self.root, "dev")
        self.devices = os.path.join(self.sys, "devices", "pci0000:00")
        self.bus = os.path.join(self.sys, "bus", "pci")
        # Where to send the uevents a kernel would for each change (an agent's
        # --inject-uevents socket); None: changes are silent, as on a host
        # whose agent has no uevents.
        self.uevent_socket = None
        self.uevent_seq = 0

    def uevent(self, action, addr, subsystem="pci", **extra):
        """Sends one uevent in the kernel's format ("ACTION@DEVPATH" then KEY=VALUE, NUL-separated)."""
        if not self.uevent_socket:
            return
        self.uevent_seq += 1
        devpath = "/devices/pci0000:00/" + addr
        fields = {"ACTION": action, "DEVPATH": devpath, "SUBSYSTEM": subsystem, "PCI_SLOT_NAME": addr,
                  "SEQNUM": str(self.uevent_seq), **extra}
        msg = ("%s@%s\0" % (action, devpath) + "".join("%s=%s\0" % kv for kv in fields.items())).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(msg, self.uevent_socket)

    # ---- paths -------------------------------------------------------------
    def devdir(self, addr):
        return os.path.join(self.devices, addr)

    def busdir(self, addr):
        return os.path.join(self.bus, "devices", addr)

    def _write(self, path, text, mode=None):
        with open(path, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(path, mode)

    def _link(self, target, link):
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.relpath(target, os.path.dirname(link)), link)

    # ---- building ----------------------------------------------------------
    def create(self, pfs=2, vfs=7, vf_driver="xe-vfio-pci", pf_driver="xe", device_ids=None,
               numa=True, cdev=False, extra_devices=True, iommufd=False, first_group=FIRST_GROUP):
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(os.path.join(self.bus, "devices"))
        os.makedirs(self.devices)
        for drv in ("xe", "xe-vfio-pci", "vfio-pci", "i915", "nvme", "lpc_ich"):
            d = os.path.join(self.bus, "drivers", drv)
            os.makedirs(d)
            self._write(os.path.join(d, "bind"), "")
            self._write(os.path.join(d, "unbind"), "")
        self._write(os.path.join(self.bus, "drivers_probe"), "")
        os.makedirs(os.path.join(self.sys, "kernel", "iommu_groups"))
        os.makedirs(os.path.join(self.dev, "vfio", "devices"))
        self._write(os.path.join(self.dev, "vfio", "vfio"), "")
        if iommufd or cdev:
            self._write(os.path.join(self.dev, "iommu"), "")
        device_ids = device_ids or DEFAULT_DEVICE_IDS
        self.next_group = first_group
        self.next_cdev = 0
        if extra_devices:
            # Devices that must not be taken for Xe PFs: an Intel ISA bridge, an
            # Intel display device without SR-IOV, and a non-Intel GPU with SR-IOV.
            self.add_device("0000:00:1f.0", INTEL, 0x7A84, 0x060100, driver="lpc_ich")
            self.add_device("0000:00:02.0", INTEL, 0x4680, DISPLAY_CLASS, driver="i915")
            other = self.add_device("0000:65:00.0", 0x10DE, 0x20B5, DISPLAY_CLASS, driver=None)
            self._write(os.path.join(other, "sriov_totalvfs"), "4\n")
        for i in range(pfs):
            self.add_pf(pf_address(i), device_ids[i % len(device_ids)], vfs,
                        numa=(i % 2 if numa else -1), pf_driver=pf_driver, vf_driver=vf_driver, cdev=cdev)
        return self

    def add_device(self, addr, vendor, device, klass, driver=None, numa=-1, revision=REVISION):
        d = self.devdir(addr)
        os.makedirs(d)
        self._write(os.path.join(d, "vendor"), "0x%04x\n" % vendor)
        self._write(os.path.join(d, "device"), "0x%04x\n" % device)
        self._write(os.path.join(d, "class"), "0x%06x\n" % klass)
        self._write(os.path.join(d, "revision"), "0x%02x\n" % revision)
        self._write(os.path.join(d, "subsystem_vendor"), "0x%04x\n" % vendor)
        self._write(os.path.join(d, "subsystem_device"), "0x0000\n")
        self._write(os.path.join(d, "numa_node"), "%d\n" % numa)
        self._write(os.path.join(d, "irq"), "0\n")
        self._write(os.path.join(d, "resource"), "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 7)
        self._write(os.path.join(d, "config"), config_space(vendor, device, revision, klass))
        self._write(os.path.join(d, "modalias"),
                    "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X\n"
                    % (vendor, device, vendor, 0, klass >> 16, (klass >> 8) & 0xFF, klass & 0xFF))
        self._write(os.path.join(d, "driver_override"), "(null)\n")
        self._link(d, self.busdir(addr))
        if driver:
            self.bind(addr, driver)
        return d

    def add_pf(self, addr, device_id, vfs, numa=0, pf_driver="xe", vf_driver="xe-vfio-pci", cdev=False):
        d = self.add_device(addr, INTEL, device_id, DISPLAY_CLASS, driver=pf_driver, numa=numa)
        self._write(os.path.join(d, "sriov_totalvfs"), "%d\n" % max(vfs, 1) if vfs else "7\n")
        self._write(os.path.join(d, "sriov_numvfs"), "%d\n" % vfs)
        self._write(os.path.join(d, "sriov_drivers_autoprobe"), "0\n")
        self._write(os.path.join(d, "sriov_offset"), "1\n")
        self._write(os.path.join(d, "sriov_stride"), "1\n")
        self._write(os.path.join(d, "sriov_vf_device"), "%x\n" % device_id)
        for n in range(vfs):
            self.add_vf(addr, n, device_id, numa, vf_driver, cdev)

    def _next_free(self, directory, prefix=""):
        taken = [int(x[len(prefix):]) for x in os.listdir(directory)
                 if x.startswith(prefix) and x[len(prefix):].isdigit()] if os.path.isdir(directory) else []
        return max(taken + [FIRST_GROUP - 1 if not prefix else -1]) + 1

    def add_vf(self, pf, n, device_id, numa, driver, cdev=False):
        addr = vf_address(pf, n)
        if not hasattr(self, "next_group"):
            self.next_group = self._next_free(os.path.join(self.sys, "kernel", "iommu_groups"))
            self.next_cdev = self._next_free(os.path.join(self.dev, "vfio", "devices"), "vfio")
        d = self.add_device(addr, INTEL, device_id, DISPLAY_CLASS, driver=None, numa=numa)
        self._link(self.devdir(pf), os.path.join(d, "physfn"))
        self._link(d, os.path.join(self.devdir(pf), "virtfn%d" % n))
        group = self.next_group
        self.next_group += 1
        gdir = os.path.join(self.sys, "kernel", "iommu_groups", str(group))
        os.makedirs(os.path.join(gdir, "devices"))
        self._link(d, os.path.join(gdir, "devices", addr))
        self._link(gdir, os.path.join(d, "iommu_group"))
        self._write(os.path.join(self.dev, "vfio", str(group)), "")
        if cdev:
            node = "vfio%d" % self.next_cdev
            self.next_cdev += 1
            os.makedirs(os.path.join(d, "vfio-dev", node))
            self._write(os.path.join(self.dev, "vfio", "devices", node), "")
        self.uevent("add", addr)
        if driver:
            self.bind(addr, driver)
        return addr

    # ---- kernel modules ---------------------------------------------------------
    def add_modules(self, names=("xe_vfio_pci", "vfio_pci"), loaded=True):
        """A module tree for kernel SIM_RELEASE under ROOT/lib/modules, indexed by
        the real depmod from tiny ELF objects that carry only a .modinfo section,
        and (loaded=True) the modules shown as loaded in sys/module/."""
        base = os.path.join(self.root, "lib", "modules", SIM_RELEASE)
        kdir = os.path.join(base, "kernel", "drivers", "vfio", "pci")
        os.makedirs(kdir, exist_ok=True)
        for name in names:
            driver, aliases = MODULES[name]
            src = "".join('__attribute__((section(".modinfo"), used, aligned(1))) static const char m%d[] = "%s";\n'
                          % (i, line) for i, line in enumerate(["alias=" + a for a in aliases]
                                                                + ["name=" + name, "license=GPL"]))
            with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as f:
                f.write(src)
            try:
                subprocess.run(["cc", "-c", f.name, "-o", os.path.join(kdir, name.replace("_", "-") + ".ko")],
                               check=True)
            finally:
                os.unlink(f.name)
            if loaded:
                os.makedirs(os.path.join(self.sys, "module", name, "drivers", "pci:" + driver), exist_ok=True)
        subprocess.run(["depmod", "-b", self.root, SIM_RELEASE], check=True, stderr=subprocess.DEVNULL)
        return os.path.join(self.root, "lib", "modules")

    # ---- firmware and kernel build ---------------------------------------------
    def set_guc(self, pf, version):
        """The GuC firmware version xe shows in debugfs for a PF."""
        d = os.path.join(self.sys, "kernel", "debug", "dri", pf, "gt0", "uc")
        os.makedirs(d, exist_ok=True)
        self._write(os.path.join(d, "guc_info"),
                    "GuC firmware: xe/bmg_guc_70.bin\n\tstatus: RUNNING\n\tversion: wanted 70.44.1, found %s\n" % version)

    def quota_dir(self, pf, n):
        """xe's debugfs quotas of the PF's VF n (from 1): dri/<pf>/gt0/vf<n>/."""
        return os.path.join(self.sys, "kernel", "debug", "dri", pf, "gt0", "vf%d" % n)

    def expose_quotas(self, pf):
        """debugfs mounted and xe showing the PF's VFs' quotas; SimKernel keeps them as VFs come and go."""
        os.makedirs(os.path.join(self.sys, "kernel", "debug", "dri", pf, "gt0"), exist_ok=True)
        for n in range(1, len(self.vfs_of(pf)) + 1):
            self._quotas(pf, n)

    def _quotas(self, pf, n):
        d = self.quota_dir(pf, n)
        if not os.path.isdir(d):
            os.makedirs(d)
            for k, v in QUOTA_DEFAULTS.items():
                self._write(os.path.join(d, k), v + "\n")

    def add_kernel_config(self, release=SIM_RELEASE, xe_vfio_pci="m", iommufd=None, where="boot"):
        """The kernel's build configuration, as /boot/config-<release> (where="boot") or
        /proc/config.gz (where="proc"); a value None is written "is not set"."""
        lines = ["# Linux/x86 %s Kernel Configuration" % release, "CONFIG_VFIO=m", "CONFIG_VFIO_PCI=m", "CONFIG_DRM_XE=m"]
        for sym, val in (("CONFIG_XE_VFIO_PCI", xe_vfio_pci), ("CONFIG_IOMMUFD", iommufd)):
            lines.append("%s=%s" % (sym, val) if val else "# %s is not set" % sym)
        text = ("\n".join(lines) + "\n").encode()
        if where == "boot":
            os.makedirs(os.path.join(self.root, "boot"), exist_ok=True)
            self._write(os.path.join(self.root, "boot", "config-" + release), text)
        else:
            import gzip
            os.makedirs(os.path.join(self.root, "proc"), exist_ok=True)
            self._write(os.path.join(self.root, "proc", "config.gz"), gzip.compress(text))

    # ---- changing the host --------------------------------------------------
    def bind(self, addr, driver):
        link = os.path.join(self.devdir(addr), "driver")
        if os.path.lexists(link):
            os.unlink(link)
            self.uevent("unbind", addr)
        if driver and driver != "none":
            ddir = os.path.join(self.bus, "drivers", driver)
            os.makedirs(ddir, exist_ok=True)
            self._link(self.devdir(addr), os.path.join(ddir, addr))
            self._link(ddir, link)
            self.uevent("bind", addr, DRIVER=driver)

    def unbind(self, addr):
        self.bind(addr, None)

    def group_of(self, addr):
        return os.path.basename(os.readlink(os.path.join(self.devdir(addr), "iommu_group")))

    def remove_group_node(self, addr):
        os.unlink(os.path.join(self.dev, "vfio", self.group_of(addr)))

    def add_group_node(self, addr):
        self._write(os.path.join(self.dev, "vfio", self.group_of(addr)), "")

    def vfs_of(self, pf):
        d = self.devdir(pf)
        out = []
        for name in os.listdir(d):
            if name.startswith("virtfn"):
                out.append((int(name[6:]), os.path.basename(os.readlink(os.path.join(d, name)))))
        return [a for _, a in sorted(out)]

    def remove_vfs(self, pf):
        for n, addr in enumerate(self.vfs_of(pf)):
            os.unlink(os.path.join(self.devdir(pf), "virtfn%d" % n))
            os.unlink(self.busdir(addr))
            shutil.rmtree(self.devdir(addr))
            self.uevent("remove", addr)
        self._write(os.path.join(self.devdir(pf), "sriov_numvfs"), "0\n")

    def remove_pf(self, pf):
        """Hot-unplug: the PF and its VFs disappear."""
        for addr in self.vfs_of(pf):
            os.unlink(self.busdir(addr))
            shutil.rmtree(self.devdir(addr))
        os.unlink(self.busdir(pf))
        shutil.rmtree(self.devdir(pf))

    def all_vfs(self):
        out = []
        for name in sorted(os.listdir(self.devices)):
            if os.path.lexists(os.path.join(self.devices, name, "physfn")):
                out.append(name)
        return out

    def describe(self):
        return {"root": self.root, "sysfs": self.sys, "dev": self.dev, "vfs": self.all_vfs()}


PROFILE_DEFAULTS = {"exec_quantum_ms": "0", "preempt_timeout_us": "0", "sched_priority": "low [normal] high"}
# xe's debugfs quotas of an auto-provisioned VF (a fair share; values as xe shows them: decimal)
QUOTA_DEFAULTS = {"ggtt_quota": "268435456", "lmem_quota": "0", "contexts_quota": "1024", "doorbells_quota": "32"}
PRIORITIES = ("low", "normal", "high")


class SimKernel(threading.Thread):
    """What the kernel does when the agent writes sysfs: sriov_numvfs creates or
    removes VFs (unbound: sriov_drivers_autoprobe is honoured as 0),
    drivers_probe binds a device to its driver_override, a driver's unbind file
    unbinds; on a PF with sriov_admin/ (xe 6.19+), each VF has a profile, reset
    to xe's defaults when the VFs are re-created, and sched_priority reads back
    as xe shows a choice ("low normal [high]"). Polls every 10 ms; records what
    it did in .log (a list)."""

    def __init__(self, host, device_ids=None):
        super().__init__(daemon=True)
        self.host = host
        self.stop_event = threading.Event()
        self.log = []

    def _read(self, path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return None

    def _clear(self, path):
        with open(path, "w"):
            pass

    def step(self):
        h = self.host
        for name in sorted(os.listdir(h.devices)):
            d = os.path.join(h.devices, name)
            want = self._read(os.path.join(d, "sriov_numvfs"))
            if want is None or not want.isdigit():
                continue
            have = h.vfs_of(name)
            if int(want) != len(have):
                if have:
                    for n, addr in enumerate(have):
                        os.unlink(os.path.join(d, "virtfn%d" % n))
                        os.unlink(h.busdir(addr))
                        shutil.rmtree(h.devdir(addr))
                    self.log.append("numvfs %s 0" % name)
                # the new VFs' profiles (xe's defaults) exist before the VFs show, as sriov_admin/vfN does
                self._reset_profiles(d, int(want))
                self._profiles(d, int(want))
                if int(want):
                    dev_id = int(self._read(os.path.join(d, "device")), 16)
                    numa = int(self._read(os.path.join(d, "numa_node")))
                    for n in range(int(want)):
                        h.add_vf(name, n, dev_id, numa, None)
                    self.log.append("numvfs %s %s" % (name, want))
                # the file keeps the count, as the kernel's does
                with open(os.path.join(d, "sriov_numvfs"), "w") as f:
                    f.write(want + "\n")
            self._profiles(d, len(h.vfs_of(name)))
        probe = os.path.join(h.bus, "drivers_probe")
        addr = self._read(probe)
        if addr:
            override = self._read(os.path.join(h.devdir(addr), "driver_override"))
            if override and override != "(null)" and os.path.isdir(os.path.join(h.bus, "drivers", override)):
                h.bind(addr, override)
                self.log.append("bind %s %s" % (addr, override))
            self._clear(probe)
        for drv in os.listdir(os.path.join(h.bus, "drivers")):
            unbind = os.path.join(h.bus, "drivers", drv, "unbind")
            addr = self._read(unbind)
            if addr:
                if os.path.isdir(h.devdir(addr)):
                    h.unbind(addr)
                    self.log.append("unbind %s %s" % (addr, drv))
                self._clear(unbind)

    def _reset_profiles(self, pf_dir, count):
        """VFs re-created: their profiles and quotas are xe's defaults again."""
        admin = os.path.join(pf_dir, "sriov_admin")
        pf = os.path.basename(pf_dir)
        for n in range(1, count + 1):
            prof = os.path.join(admin, "vf%d" % n, "profile")
            if os.path.isdir(admin) and os.path.isdir(prof):
                shutil.rmtree(prof)
            if os.path.isdir(self.host.quota_dir(pf, n)):
                shutil.rmtree(self.host.quota_dir(pf, n))

    def _profiles(self, pf_dir, count):
        pf = os.path.basename(pf_dir)
        if os.path.isdir(os.path.dirname(self.host.quota_dir(pf, 1))):
            for n in range(1, count + 1):
                self.host._quotas(pf, n)
        admin = os.path.join(pf_dir, "sriov_admin")
        if not os.path.isdir(admin):
            return
        for n in range(1, count + 1):
            prof = os.path.join(admin, "vf%d" % n, "profile")
            if not os.path.isdir(prof):
                os.makedirs(prof)
                for k, v in PROFILE_DEFAULTS.items():
                    with open(os.path.join(prof, k), "w") as f:
                        f.write(v + "\n")
            prio = os.path.join(prof, "sched_priority")
            got = self._read(prio) if os.path.isfile(prio) else None
            if got in PRIORITIES:  # a choice written: shown back with the set one bracketed
                with open(prio, "w") as f:
                    f.write(" ".join("[%s]" % p if p == got else p for p in PRIORITIES) + "\n")

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.step()
            except OSError:
                pass  # a file replaced under us; next round
            time.sleep(0.01)

    def stop(self):
        self.stop_event.set()
        self.join(5)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("root")
    c.add_argument("--pfs", type=int, default=2)
    c.add_argument("--vfs", type=int, default=7)
    c.add_argument("--vf-driver", default="xe-vfio-pci")
    c.add_argument("--pf-driver", default="xe")
    c.add_argument("--cdev", action="store_true")
    c.add_argument("--no-numa", action="store_true")
    c.add_argument("--no-extra-devices", action="store_true")
    c.add_argument("--first-group", type=int, default=FIRST_GROUP,
                   help="the first VF's IOMMU group (e.g. the real mdevs' groups in the QEMU VM test)")
    s = sub.add_parser("set-driver")
    s.add_argument("root")
    s.add_argument("pci")
    s.add_argument("driver")
    for name in ("remove-group-node", "add-group-node"):
        x = sub.add_parser(name)
        x.add_argument("root")
        x.add_argument("pci")
    r = sub.add_parser("remove-vfs")
    r.add_argument("root")
    r.add_argument("pf")
    m = sub.add_parser("add-modules")
    m.add_argument("root")
    m.add_argument("modules", nargs="*", default=["xe_vfio_pci", "vfio_pci"])
    m.add_argument("--not-loaded", action="store_true")
    k = sub.add_parser("kernel", help="run the simulated kernel for SECONDS")
    k.add_argument("root")
    k.add_argument("seconds", type=float)
    args = ap.parse_args(argv)
    host = SimHost(args.root)
    if args.cmd == "create":
        host.create(pfs=args.pfs, vfs=args.vfs, vf_driver=None if args.vf_driver == "none" else args.vf_driver,
                    pf_driver=args.pf_driver, cdev=args.cdev, numa=not args.no_numa,
                    extra_devices=not args.no_extra_devices, first_group=args.first_group)
        print(json.dumps(host.describe()))
    elif args.cmd == "set-driver":
        host.bind(args.pci, args.driver)
    elif args.cmd == "remove-group-node":
        host.remove_group_node(args.pci)
    elif args.cmd == "add-group-node":
        host.add_group_node(args.pci)
    elif args.cmd == "remove-vfs":
        host.remove_vfs(args.pf)
    elif args.cmd == "add-modules":
        print(host.add_modules(args.modules, loaded=not args.not_loaded))
    elif args.cmd == "kernel":
        kernel = SimKernel(host)
        kernel.start()
        time.sleep(args.seconds)
        kernel.stop()
        print("\n".join(kernel.log))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
