#!/usr/bin/python3
"""Live demo: xevf-agent on a simulated host with two Xe PFs, talking to the
kubelet simulator. Shows registration, the device list, a preferred allocation,
an Allocate as KubeVirt would get it, a VF turning unhealthy and back, and the
allocated VF's state moved to a second simulated node's agent (live-migration
coordination over mutual TLS, simulated VFIO migration devices).

Usage: tests/demo.py PATH/TO/xevf-agent-sim [--keep DIR]

xevf-agent-sim is the test build of xevf-agent: the same agent, with simulated
VFIO migration devices (--vfio-sim) for the migration at the end.
"""

import argparse
import os
import re
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


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    """A CA and certificates for the two agents and the operator."""
    os.makedirs(d, exist_ok=True)
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=xevf-demo-ca")
    for name in ("node-a", "node-b", "operator"):
        # the profile of docs/certificates.md: the identity is a URI subject alternative name
        uri = "urn:xevf:operator" if name == "operator" else "urn:xevf:node:" + name
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n" % uri)
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name)
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".crt", "-days", "1", "-extfile", name + ".ext")


def demo_migration(agent_path, root, vf, failures):
    """The VM that got `vf` moves to node-b: check, reserve, the target pod's allocation, the state, commit."""
    say("Live migration: a second simulated node (node-b) with its own kubelet and agent; mutual TLS between them.")
    say("This shows the agent-moved path (SendState), for a VF no QEMU holds; in a KubeVirt live migration QEMU "
        "carries the state and the agents only check, reserve, hand over and commit (tests/vm/qemu.sh shows that "
        "with a real QEMU)")
    certs = os.path.join(root, "certs")
    host_b = SimHost(os.path.join(root, "host-b")).create(pfs=1, vfs=2, extra_devices=False)
    plugins_b = os.path.join(root, "device-plugins-b")
    os.makedirs(plugins_b, exist_ok=True)
    os.makedirs(os.path.join(root, "vfio-sim-b"), exist_ok=True)
    kubelet_b = KubeletSim(plugins_b).start()
    log_b = open(os.path.join(root, "agent-b.log"), "w")
    agent_b = subprocess.Popen([agent_path, "--plugin-dir", plugins_b, "--sysfs-root", host_b.sys, "--dev-root",
                                host_b.dev, "--http-port", "-1", "--status-socket", "", "--node-name", "node-b",
                                "--migration-socket", os.path.join(root, "migration-b.sock"),
                                "--state-dir", os.path.join(root, "state-b"),
                                "--vfio-sim", os.path.join(root, "vfio-sim-b"),
                                "--migration-address", "127.0.0.1:0", "--tls-ca", os.path.join(certs, "ca.crt"),
                                "--tls-cert", os.path.join(certs, "node-b.crt"),
                                "--tls-key", os.path.join(certs, "node-b.key")], stderr=log_b)
    try:
        kubelet_b.wait_registration(RESOURCE, timeout=10)
        port = None
        for _ in range(50):
            m = re.search(r"event=migration_serving .*tcp_port=(\d+)", open(log_b.name).read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.1)
        target = "127.0.0.1:%d" % port
        tls = ["--tls-ca", os.path.join(certs, "ca.crt"), "--tls-cert", os.path.join(certs, "operator.crt"),
               "--tls-key", os.path.join(certs, "operator.key")]
        source = ["--source", os.path.join(root, "migration.sock")]
        state = os.urandom(2 * 1024 * 1024)
        with open(os.path.join(root, "vfio-sim", vf + ".state"), "wb") as f:
            f.write(state)  # the simulated device's state: what the VM did with the GPU

        def migrate(*a):
            cmd = [agent_path, "migrate", *a]
            print("   $ xevf-agent migrate " + " ".join(x if "/" not in x or x == "default/vm1" else "..." for x in a),
                  flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            for line in (r.stdout + r.stderr).splitlines():
                print("     " + line, flush=True)
            if r.returncode != 0:
                raise RuntimeError("migrate %s failed" % a[0])
            return r.stdout

        migrate("describe", "--vf", vf, *source)
        migrate("check", "--vf", vf, *source, "--target", target, *tls)
        out = migrate("reserve", "--id", "demo-1", "--vf", vf, "--vm", "default/vm1", "--ttl", "120", *source,
                      "--target", target, *tls)
        reserved = re.search(r"reserved (\S+) on", out).group(1)
        client_b = PluginClient(os.path.join(plugins_b, "xevf-intel.com_xe_vf.sock"))
        pref = client_b.preferred(sorted(host_b.vfs_of("0000:03:00.0")), [], 1)
        got = list(pref.container_responses[0].deviceIDs)
        say("node-b's kubelet admits the target pod: GetPreferredAllocation -> %s (the reserved VF)" % got[0])
        resp = client_b.allocate([got])
        print("   env  %s" % dict(resp.container_responses[0].envs))
        client_b.close()
        if got != [reserved]:
            failures.append("the target pod did not get the reserved VF")
        say("node-a's agent streams the VF's state to node-b's agent (xe-vfio-pci's arcs: RUNNING_P2P, STOP, STOP_COPY -> RESUMING, SHA-256 "
            "checked, mutual TLS with its own certificate), then both commit")
        migrate("send", "--id", "demo-1", "--vf", vf, *source, "--target", target, "--chunk-size", "262144")
        migrate("commit", "--id", "demo-1", *source, "--target", target, *tls)
        with open(os.path.join(root, "vfio-sim-b", reserved + ".state"), "rb") as f:
            same = f.read() == state
        print("   node-b's %s now runs the 2 MiB state of node-a's %s: %s" % (reserved, vf, "identical" if same
                                                                              else "DIFFERENT"))
        if not same:
            failures.append("the state did not arrive intact")
    finally:
        agent_b.send_signal(signal.SIGTERM)
        agent_b.wait(15)
        kubelet_b.stop()
        log_b.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("agent")
    ap.add_argument("--keep", help="build the simulated node in this directory and keep it")
    args = ap.parse_args()

    root = args.keep or tempfile.mkdtemp(prefix="xevf-demo-")
    os.makedirs(os.path.join(root, "vfio-sim"), exist_ok=True)
    certs = os.path.join(root, "certs")
    make_certs(certs)  # the agents' mutual TLS, for the migration at the end
    host = SimHost(os.path.join(root, "host")).create(pfs=2, vfs=4)
    plugin_dir = os.path.join(root, "device-plugins")
    os.makedirs(plugin_dir, exist_ok=True)
    say("Simulated node in %s: 2 Intel Xe PFs (Arc Pro B60 0xe211, Arc Pro B50 0xe212: Battlemage), 4 VFs each on xe-vfio-pci"
        % root)
    subprocess.run([args.agent, "discover", "--sysfs-root", host.sys, "--dev-root", host.dev], check=True)

    say("Kubelet simulator serving %s/kubelet.sock" % plugin_dir)
    kubelet = KubeletSim(plugin_dir).start()

    say("Starting xevf-agent (its log lines are prefixed with 'agent |')")
    agent = subprocess.Popen([args.agent, "--plugin-dir", plugin_dir, "--sysfs-root", host.sys,
                              "--dev-root", host.dev, "--rescan-interval", "200",
                              "--status-socket", os.path.join(root, "status.sock"),
                              "--migration-socket", os.path.join(root, "migration.sock"),
                              "--state-dir", os.path.join(root, "state"),
                              "--vfio-sim", os.path.join(root, "vfio-sim"), "--node-name", "node-a",
                              "--tls-ca", os.path.join(certs, "ca.crt"), "--tls-cert", os.path.join(certs, "node-a.crt"),
                              "--tls-key", os.path.join(certs, "node-a.key")],
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
        demo_migration(args.agent, root, chosen[0], failures)
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
    say("Demo finished: registration, listing, allocation, live health and a VF migration all worked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
