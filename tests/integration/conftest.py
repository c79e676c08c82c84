"""Fixtures for the integration tests: a simulated host, the kubelet simulator and
the real xevf-agent binary (XEVF_AGENT; its test build XEVF_AGENT_SIM where
simulated VFIO devices are needed), optionally under a wrapper such as
valgrind (XEVF_AGENT_WRAPPER)."""

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "sim"))

from kubelet_sim import KubeletSim, PluginClient, api  # noqa: E402
from simhost import SimHost  # noqa: E402

AGENT = os.environ.get("XEVF_AGENT", os.path.join(REPO, "build", "xevf-agent"))
# The test build of the same agent, with simulated VFIO migration devices
# (--vfio-sim); the shipped binary has none of them.
AGENT_SIM = os.environ.get("XEVF_AGENT_SIM", os.path.join(os.path.dirname(AGENT), "xevf-agent-sim"))
WRAPPER = shlex.split(os.environ.get("XEVF_AGENT_WRAPPER", ""))
# Valgrind makes everything ~20x slower: scale the waits, not the promises
# (the latency checks run without it).
SLOW = 10.0 if WRAPPER else 1.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR SUMMARY: [1-9]", r"definitely lost: [1-9]", r"indirectly lost: [1-9]")


class Agent:
    def __init__(self, args, log_path, binary=AGENT):
        self.binary = binary
        self.args = args
        self.log_path = log_path
        self.lines = []
        self.cond = threading.Condition()
        self.proc = None

    def start(self):
        # a CI job inside a cluster must not make the agents ask that cluster's API server
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
        self.proc = subprocess.Popen(WRAPPER + [self.binary] + self.args, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, errors="replace", env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        with open(self.log_path, "a") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                with self.cond:
                    self.lines.append(line.rstrip("\n"))
                    self.cond.notify_all()

    def wait_log(self, pattern, timeout=5, after=0):
        """The first log line (index >= after) that matches pattern; its index and text."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if rx.search(self.lines[i]):
                        return i, self.lines[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no log line matching %r in %.1f s; log:\n%s"
                                         % (pattern, timeout * SLOW, "\n".join(self.lines[-40:])))
                self.cond.wait(left)

    def log_count(self):
        with self.cond:
            return len(self.lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit status. Fails on sanitizer findings."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent did not stop within %.0f s of SIGTERM" % (timeout * SLOW))
        self.reader.join(5)
        text = "\n".join(self.lines)
        for mark in SANITIZER_MARKS:
            if re.search(mark, text):
                raise AssertionError("sanitizer/valgrind finding (%s) in agent output:\n%s" % (mark, text[-6000:]))
        if WRAPPER and "valgrind" in WRAPPER[0] and "ERROR SUMMARY: 0 errors" not in text:
            raise AssertionError("the agent was to run under valgrind, but valgrind's summary is missing:\n"
                                 + text[-3000:])
        return rc


class World:
    """One simulated node: host tree, plugin dir, kubelet simulator, agents."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.host = SimHost(str(tmp_path / "host"))
        self.plugin_dir = str(tmp_path / "device-plugins")
        os.makedirs(self.plugin_dir)
        self.kubelet = None
        self.agents = []

    def create_host(self, **kw):
        self.host.create(**kw)
        return self.host

    def start_kubelet(self, **kw):
        self.kubelet = KubeletSim(self.plugin_dir, **kw).start()
        return self.kubelet

    def agent_args(self, *extra):
        return ["--plugin-dir", self.plugin_dir, "--sysfs-root", self.host.sys, "--dev-root", self.host.dev,
                "--rescan-interval", "200", "--http-port", "0",
                # never the host's own modules: tests must not load anything into this kernel
                "--modules-root", str(self.tmp / "no-modules"), "--kernel-release", "test",
                "--status-socket", str(self.tmp / ("status%d.sock" % len(self.agents))),
                "--migration-socket", str(self.tmp / ("migration%d.sock" % len(self.agents))),
                "--state-dir", str(self.tmp / "state"),
                # never the host's kubelet: a test that wants PodResources starts its simulator here
                "--pod-resources-socket", str(self.tmp / "pod-resources.sock")] + list(extra)

    def start_agent(self, *extra, args=None, binary=AGENT):
        agent = Agent(args if args is not None else self.agent_args(*extra),
                      str(self.tmp / ("agent%d.log" % len(self.agents))), binary).start()
        self.agents.append(agent)
        return agent

    def client(self, endpoint="xevf-intel.com_xe_vf.sock"):
        return PluginClient(os.path.join(self.plugin_dir, endpoint))

    def close(self):
        for a in self.agents:
            if a.proc.poll() is None:
                a.proc.kill()
                a.proc.wait()
        if self.kubelet:
            self.kubelet.stop()


@pytest.fixture
def world(tmp_path):
    api()
    w = World(tmp_path)
    yield w
    w.close()
