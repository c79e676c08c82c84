#!/usr/bin/python3
"""Live demo: xevf-agent on a simulated host with two Xe PFs, talking to the
kubelet simulator. Shows registration, the device list, a preferred allocation,
an Allocate as KubeVirt would get it, and a VF turning unhealthy and back.

Usage: tests/demo.py PATH/TO/xevf-agent [--keep DIR]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "sim"))

from kubelet_sim import KubeletSim, PluginClient  # noqa: E402
from simhost import SimHost  # noqa: E402

RESOURCE = "intel.com/xe_vf"


def say(text):
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print("\n%s== %s%s" % (bold, text, plain), flush=True)


def show_devices(devices):
    for dev_id in sorted(devices):
        health, numa = devices[dev_id]
        print("   %-14s %-9s numa %s" % (dev_id, health, ",".join(map(str, numa)) or "-"), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("agent")
    ap.add_argument("--keep", help="build the simulated node in this directory and keep it")
    args = ap.parse_args()

    root = args.keep or tempfile.mkdtemp(prefix="xevf-demo-")
    host = SimHost(os.path.join(root, "host")).create(pfs=2, vfs=4)
    plugin_dir = os.path.join(root, "device-plugins")
    os.makedirs(plugin_dir, exist_ok=True)
    say("Simulated node in %s: 2 Intel Xe PFs (Flex 170 0x56c0, Flex 140 0x56c1), 4 VFs each on xe-vfio-pci"
        % root)
    subprocess.run([args.agent, "discover", "--sysfs-root", host.sys, "--dev-root", host.dev], check=True)

    say("Kubelet simulator serving %s/kubelet.sock" % plugin_dir)
    kubelet = KubeletSim(plugin_dir).start()

    say("Starting xevf-agent (its log lines are prefixed with 'agent |')")
    agent = subprocess.Popen([args.agent, "--plugin-dir", plugin_dir, "--sysfs-root", host.sys,
                              "--dev-root", host.dev, "--rescan-interval", "200",
                              "--status-socket", os.path.join(root, "status.sock"),
                              "--migration-socket", os.path.join(root, "migration.sock"),
                              "--state-dir", os.path.join(root, "state")],
                             stderr=subprocess.PIPE, text=True)

    def pump():
        for line in agent.stderr:
            print("   agent | " + line.rstrip(), flush=True)
    threading.Thread(target=pump, daemon=True).start()
    failures = []
    try:
        _, reg = kubelet.wait_registration(RESOURCE, timeout=10)
        say("Kubelet got Register: resource %s, endpoint %s, API %s"
            % (reg.resource_name, reg.endpoint, reg.version))
        watch = kubelet.watch_of(RESOURCE)
        _, devices = watch.wait_for(lambda d: len(d) == 8, timeout=5)
        say("ListAndWatch: %d devices" % len(devices))
        show_devices(devices)

        client = PluginClient(os.path.join(plugin_dir, reg.endpoint))
        pref = client.preferred(sorted(devices), [], 2)
        chosen = list(pref.container_responses[0].deviceIDs)
        say("GetPreferredAllocation for 2 VFs: %s (one NUMA node, one PF)" % ", ".join(chosen))

        resp = client.allocate([chosen])
        c = resp.container_responses[0]
        say("Allocate -> what virt-launcher's container gets")
        for k, v in c.envs.items():
            print("   env  %s=%s" % (k, v))
        for d in c.devices:
            print("   dev  %s (%s)" % (d.host_path, d.permissions))

        victim = "0000:13:00.2"
        say("Unbinding %s from its VFIO driver (as an operator or a driver crash would)" % victim)
        t0 = time.monotonic()
        host.unbind(victim)
        t1, devices = watch.wait_for(lambda d: d[victim][0] == "Unhealthy", timeout=3)
        print("   ListAndWatch reported %s Unhealthy after %.0f ms" % (victim, (t1 - t0) * 1000))
        if t1 - t0 >= 1.0:
            failures.append("unhealthy took %.2f s" % (t1 - t0))
        say("Binding it back to xe-vfio-pci")
        t0 = time.monotonic()
        host.bind(victim, "xe-vfio-pci")
        t1, devices = watch.wait_for(lambda d: d[victim][0] == "Healthy", timeout=3)
        print("   ListAndWatch reported %s Healthy after %.0f ms" % (victim, (t1 - t0) * 1000))
        show_devices(devices)
        client.close()
    except Exception as e:  # noqa: BLE001 - the demo reports any failure and exits non-zero
        failures.append(repr(e))
    finally:
        say("Stopping the agent with SIGTERM")
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(15)
        time.sleep(0.2)
        kubelet.stop()
        print("   agent exit status %d; plugin dir now holds: %s" % (rc, sorted(os.listdir(plugin_dir)) or "nothing"))
        if rc != 0:
            failures.append("agent exit status %d" % rc)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if failures:
        say("Demo FAILED: " + "; ".join(failures))
        return 1
    say("Demo finished: registration, listing, allocation and live health all worked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
