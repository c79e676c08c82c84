#!/usr/bin/python3
"""make bench: the agent's speed and memory against the targets of issue #12
(docs/performance.md), at 8, 126 and 504 VFs on the simulated host, with the
references measured in the same run: a bare gRPC C-core server's RSS and idle
CPU, and a mutual-TLS transfer of the same bytes with socat (OpenSSL).

The measuring side is compiled (build/bench/xevf-bench): the kubelet that
times Register, the Allocate client, the ListAndWatch watcher. Figures are
medians of repeated runs with their min-max. Prints one table."""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
from simhost import SimHost  # noqa: E402

RESOURCE = "intel.com/xe_vf"
ENDPOINT = "xevf-intel.com_xe_vf.sock"
# (PFs, VFs per PF) for each size
SIZES = {8: (1, 8), 126: (2, 63), 504: (8, 63)}
# the Go peer's Allocate figures the issue measured (us)
PEER_ALLOC_P50, PEER_ALLOC_P99 = 157, 575


def median_range(values, fmt="%.1f"):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt % med
    return (fmt + " (" + fmt + "-" + fmt + ")") % (med, min(values), max(values))


# gRPC C core's own threads: its timer managers wake once a second even in a
# server that serves nothing (grpc/grpc#19947), the floor of any gRPC process
GRPC_THREADS = ("grpc_global_tim", "timer_manager", "event_engine", "default-executo", "resolver-execut")


def cpu_ns(pid):
    """CPU time so far of pid's threads, in ns (schedstat: exact, not clock
    ticks): (all threads, all but gRPC's own)."""
    total = own = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                grpc = f.read().strip() in GRPC_THREADS
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += ns
        own += 0 if grpc else ns
    return total, own


def idle_cpu(pid, window, windows):
    """ms per minute over each window: ([whole process], [all but gRPC's threads])."""
    whole, own = [], []
    for _ in range(windows):
        t0, o0 = cpu_ns(pid)
        time.sleep(window)
        t1, o1 = cpu_ns(pid)
        whole.append((t1 - t0) / 1e6 * 60 / window)
        own.append((o1 - o0) / 1e6 * 60 / window)
    return whole, own


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Lines:
    """A child's stdout lines, read on a thread, waited for by pattern."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait(self, pattern, timeout=10, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    m = re.match(pattern, self.lines[i])
                    if m:
                        return i, m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no line matching %r" % pattern)
                self.cond.wait(left)


class Bench:
    def __init__(self, build, quick):
        self.build = os.path.abspath(build)
        self.agent = os.path.join(self.build, "xevf-agent")
        self.agent_sim = os.path.join(self.build, "xevf-agent-sim")
        self.tool = os.path.join(self.build, "bench", "xevf-bench")
        self.quick = quick
        self.tmp = tempfile.mkdtemp(prefix="xevf-bench-")
        self.procs = []
        self.rows = []

    def spawn(self, args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def row(self, figure, vfs, value, target, reference="", verdict=""):
        self.rows.append((figure, str(vfs), value, target, reference, verdict))

    # ---- one node ----------------------------------------------------------
    def node(self, nvfs, run):
        d = os.path.join(self.tmp, "n%d-%d" % (nvfs, run))
        os.makedirs(d)
        host = SimHost(os.path.join(d, "host"))
        pfs, per_pf = SIZES[nvfs]
        host.create(pfs=pfs, vfs=per_pf, extra_devices=False)
        plugins = os.path.join(d, "plugins")
        os.makedirs(plugins)
        return d, host, plugins

    def agent_args(self, d, host, plugins, uevents):
        os.makedirs(os.path.join(d, "no-modules"), exist_ok=True)
        return [self.agent_sim, "--plugin-dir", plugins, "--sysfs-root", host.sys, "--dev-root", host.dev,
                "--http-port", "0", "--modules-root", os.path.join(d, "no-modules"), "--kernel-release", "bench",
                "--status-socket", os.path.join(d, "status.sock"), "--migration-socket", os.path.join(d, "mig.sock"),
                "--state-dir", os.path.join(d, "state"), "--inject-uevents", uevents]

    def start_node(self, nvfs, run):
        """Kubelet first, then the agent: (agent, kubelet lines, start-to-Register ms, host, plugin dir)."""
        d, host, plugins = self.node(nvfs, run)
        kubelet = self.spawn([self.tool, "kubelet", os.path.join(plugins, "kubelet.sock")])
        kl = Lines(kubelet)
        kl.wait(r"ready")
        uevents = os.path.join(d, "ue.sock")
        t0 = time.monotonic_ns()
        agent = self.spawn(self.agent_args(d, host, plugins, uevents))
        _, m = kl.wait(r"register (\d+) ", timeout=30)
        host.uevent_socket = uevents
        return agent, kubelet, (int(m.group(1)) - t0) / 1e6, host, plugins

    def measure_size(self, nvfs):
        runs = 1 if self.quick else 3
        reg_ms, rss_mb = [], []
        keep = None
        for run in range(runs):
            agent, kubelet, ms, host, plugins = self.start_node(nvfs, run)
            reg_ms.append(ms)
            if run < runs - 1:
                time.sleep(0.5)
                rss_mb.append(status_kb(agent.pid, "VmRSS") / 1024)
                self.stop(agent)
                self.stop(kubelet)
            else:
                keep = (agent, host, plugins)
        agent, host, plugins = keep
        sock = os.path.join(plugins, ENDPOINT)
        # idle: settled, nothing happens
        time.sleep(0.5 if self.quick else 2)
        rss_mb.append(status_kb(agent.pid, "VmRSS") / 1024)
        whole, own = idle_cpu(agent.pid, 1 if self.quick else 5, 1 if self.quick else 2)
        limit = 5 if nvfs <= 126 else 20
        self.row("idle CPU, ms/min, the agent's threads", nvfs, median_range(own, "%.2f"), "<= %d" % limit,
                 "Go peer: 0.1", verdict(max(own) <= limit))
        self.row("idle CPU, ms/min, whole process", nvfs, median_range(whole, "%.2f"), "",
                 "bare gRPC server: %s" % median_range(self.bare_idle, "%.2f"), "")
        self.row("start to Register, ms", nvfs, median_range(reg_ms), "<= 50 (at 126)", "Go peer: 33",
                 verdict(statistics.median(reg_ms) <= 50) if nvfs == 126 else "")
        self.rss = getattr(self, "rss", {})
        self.rss[nvfs] = rss_mb
        # kernel event to ListAndWatch
        self.event_latency(nvfs, host, sock)
        # Allocate, quiet and while other VFs flap
        vfs = sorted(host.all_vfs())
        ids = vfs[:2]
        calls = 300 if self.quick else 2000
        quiet = [self.allocate(sock, calls, ids) for _ in range(1 if self.quick else 3)]
        p50 = [q[0] for q in quiet]
        p99 = [q[1] for q in quiet]
        self.row("Allocate of 1 VF, p50 us", nvfs, median_range(p50), "<= %d" % PEER_ALLOC_P50,
                 "Go peer: %d" % PEER_ALLOC_P50, verdict(statistics.median(p50) <= PEER_ALLOC_P50))
        self.row("Allocate of 1 VF, p99 us", nvfs, median_range(p99), "<= %d" % PEER_ALLOC_P99,
                 "Go peer: %d" % PEER_ALLOC_P99, verdict(statistics.median(p99) <= PEER_ALLOC_P99))
        stop = threading.Event()
        flapper = threading.Thread(target=self.flap, args=(host, vfs[-3:], stop), daemon=True)
        flapper.start()
        try:
            flapping = [self.allocate(sock, calls * 2, ids)[2] for _ in range(1 if self.quick else 3)]
        finally:
            stop.set()
            flapper.join()
        self.row("Allocate p99.9 us, VFs flapping", nvfs, median_range(flapping), "<= 2000 (at 504)", "Go peer: 2000-4000",
                 verdict(statistics.median(flapping) <= 2000) if nvfs == 504 else "")
        self.stop(agent)

    def flap(self, host, vfs, stop):
        """Unbind and bind VFs nobody allocates, with the kernel's uevents, every 10 ms."""
        while not stop.is_set():
            for vf in vfs:
                host.unbind(vf)
                time.sleep(0.005)
                host.bind(vf, "xe-vfio-pci")
                time.sleep(0.005)

    def allocate(self, sock, calls, ids):
        out = subprocess.run([self.tool, "allocate", sock, str(calls), *ids], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        m = re.search(r"p50_us=([\d.]+) p99_us=([\d.]+) p999_us=([\d.]+)", out)
        return float(m.group(1)), float(m.group(2)), float(m.group(3))

    def event_latency(self, nvfs, host, sock):
        watcher = self.spawn([self.tool, "watch", sock])
        lines = Lines(watcher)
        i, m = lines.wait(r"list (\d+) (\d+) 0$", timeout=10)
        healthy = int(m.group(2))
        vf = sorted(host.all_vfs())[-1]
        samples = []
        for _ in range(5 if self.quick else 20):
            t0 = time.monotonic_ns()
            host.unbind(vf)  # and the uevent the kernel would send
            i, m = lines.wait(r"list (\d+) %d 1$" % (healthy - 1), start=i + 1)
            samples.append((int(m.group(1)) - t0) / 1e6)
            host.bind(vf, "xe-vfio-pci")
            i, m = lines.wait(r"list (\d+) %d 0$" % healthy, start=i + 1)
            time.sleep(0.01)
        self.stop(watcher)
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(0.99 * (len(samples) - 1) + 0.5))]
        self.row("uevent to ListAndWatch, p50 ms", nvfs, "%.2f" % p50, "<= 10", "", verdict(p50 <= 10))
        self.row("uevent to ListAndWatch, p99 ms", nvfs, "%.2f" % p99, "<= 50", "", verdict(p99 <= 50))

    # ---- references -------------------------------------------------------
    def bare_server(self):
        """A gRPC C-core server that serves nothing: its RSS, and its CPU at idle."""
        rss = []
        for run in range(1 if self.quick else 3):
            sock = os.path.join(self.tmp, "bare%d.sock" % run)
            p = self.spawn([self.tool, "bare-server", sock])
            Lines(p).wait(r"ready")
            time.sleep(0.3)
            rss.append(status_kb(p.pid, "VmRSS") / 1024)
            if run == 0:
                self.bare_idle, _ = idle_cpu(p.pid, 1 if self.quick else 5, 1 if self.quick else 2)
            self.stop(p)
        return rss

    def certs(self):
        d = os.path.join(self.tmp, "certs")
        os.makedirs(d)

        def ossl(*args):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=bench-ca")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "agent.key", "-out", "agent.csr", "-subj", "/CN=agent")
        with open(os.path.join(d, "agent.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,URI:urn:xevf:agent\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        ossl("x509", "-req", "-in", "agent.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "agent.crt", "-days", "2", "-extfile", "agent.ext")
        return {k: os.path.join(d, k) for k in ("ca.crt", "agent.crt", "agent.key")}

    def socat_rate(self, certs, path, size):
        """The same bytes over mutual TLS with socat (OpenSSL), file to /dev/null: the reference."""
        rates = []
        tls = "cert=%s,key=%s,cafile=%s,verify=1" % (certs["agent.crt"], certs["agent.key"], certs["ca.crt"])
        for _ in range(1 if self.quick else 3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = subprocess.Popen(["socat", "-u", "OPENSSL-LISTEN:%d,bind=127.0.0.1,%s" % (port, tls),
                                       "OPEN:/dev/null,wronly"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
            self.procs.append(server)
            wait_listening(port)
            t0 = time.monotonic()
            subprocess.run(["socat", "-u", "OPEN:%s,rdonly" % path, "OPENSSL:127.0.0.1:%d,%s" % (port, tls)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
            server.wait(timeout=30)
            rates.append(size / (1 << 20) / (time.monotonic() - t0))
            if server.returncode != 0:
                raise RuntimeError("socat server failed: %s" % server.stderr.read())
        return rates

    def stream(self, mib, certs):
        size = mib << 20
        tag = "%d" % mib
        state = os.path.join(self.tmp, "state%s.bin" % tag)
        with open(state, "wb") as f:
            f.write(os.urandom(size))
        tls = ["--tls-ca", certs["ca.crt"], "--tls-cert", certs["agent.crt"], "--tls-key", certs["agent.key"]]
        nodes = []
        for name in ("a", "b"):
            d = os.path.join(self.tmp, "mig-%s-%s" % (tag, name))
            os.makedirs(d)
            host = SimHost(os.path.join(d, "host"))
            host.create(pfs=1, vfs=2, extra_devices=False)
            plugins = os.path.join(d, "plugins")
            os.makedirs(plugins)
            sim = os.path.join(d, "vfio-sim")
            os.makedirs(sim)
            vf = sorted(host.all_vfs())[0]
            if name == "a":
                shutil.copy(state, os.path.join(sim, vf + ".state"))
            args = self.agent_args(d, host, plugins, os.path.join(d, "ue.sock"))
            args += ["--node-name", "node-" + name, "--vfio-sim", sim, "--migration-address", "127.0.0.1:0", *tls]
            agent = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.procs.append(agent)
            port = None
            for line in agent.stderr:
                m = re.search(r"event=migration_serving .*tcp_port=(\d+)", line)
                if m:
                    port = int(m.group(1))
                    break
            log = []
            threading.Thread(target=lambda p=agent, log=log: [log.append(x) for x in p.stderr], daemon=True).start()
            nodes.append((agent, os.path.join(d, "mig.sock"), port, vf, log))
        (src, src_sock, _, vf, _), (dst, _, dst_port, _, dst_log) = nodes
        target = "127.0.0.1:%d" % dst_port
        rates, streamed = [], []
        for run in range(1 if self.quick else 3):
            mid = "bench-%d" % run
            self.cli("reserve", "--id", mid, "--vf", vf, "--vm", "default/bench", "--source", src_sock, "--target",
                     target, *tls)
            t0 = time.monotonic()
            self.cli("send", "--id", mid, "--vf", vf, "--source", src_sock, "--target", target, *tls,
                     *os.environ.get("XEVF_BENCH_SEND_ARGS", "").split())
            rates.append(size / (1 << 20) / (time.monotonic() - t0))
            # the target's own measure: first chunk to final chunk
            m = re.search(r"event=restored migration=%s .*stream_mib_per_s=(\d+)" % mid, "".join(dst_log))
            streamed.append(float(m.group(1)))
            self.cli("abort", "--id", mid, "--source", src_sock, "--target", target, *tls)
        for p in (src, dst):
            self.stop(p)
        ref = self.socat_rate(certs, state, size)
        ratio = statistics.median(streamed) / statistics.median(ref)
        self.row("agent to agent stream, mutual TLS, MiB/s", "%d MiB" % (size >> 20), median_range(streamed),
                 ">= 70% of reference", "socat, mutual TLS: %s (%.0f%%)" % (median_range(ref), ratio * 100),
                 verdict(ratio >= 0.7))
        self.row("migrate send end to end, MiB/s", "%d MiB" % (size >> 20), median_range(rates), "",
                 "with the simulated devices' own save and load", "")

    def cli(self, *args):
        r = subprocess.run([self.agent, "migrate", *args], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("migrate %s failed: %s%s" % (args[0], r.stdout, r.stderr))
        return r.stdout

    # ---- all ----------------------------------------------------------------
    def run(self):
        started = time.monotonic()
        sizes = [8] if self.quick else [8, 126, 504]
        bare = self.bare_server()
        for n in sizes:
            self.measure_size(n)
        for n in sizes:
            rss = self.rss[n]
            self.row("idle RSS, MB", n, median_range(rss), "<= bare + 3 MB",
                     "bare gRPC server: %s" % median_range(bare),
                     verdict(statistics.median(rss) <= statistics.median(bare) + 3))
        self.stream(8 if self.quick else 64, self.certs())  # 64 MiB: the simulated device's largest state
        self.print_table(time.monotonic() - started)

    def print_table(self, seconds):
        head = ("figure", "VFs", "xevf: median (min-max)", "target", "reference, same run", "")
        widths = [max(len(r[i]) for r in self.rows + [head]) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
        print(line(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in self.rows:
            print(line(r))
        misses = sum(1 for r in self.rows if r[5] == "MISSED")
        print("\nbench: %d figures, %d targets missed, %.0f s%s" % (len(self.rows), misses, seconds,
                                                                   " (quick run)" if self.quick else ""))


def wait_listening(port, timeout=10):
    """Until something listens on 127.0.0.1:port (without connecting: the server takes one connection)."""
    deadline = time.monotonic() + timeout
    hexport = ":%04X" % port
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            if any(line.split()[1].endswith(hexport) and line.split()[3] == "0A" for line in list(f)[1:]):
                return
        time.sleep(0.02)
    raise TimeoutError("nothing listens on port %d" % port)


def verdict(ok):
    return "met" if ok else "MISSED"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("build")
    ap.add_argument("--quick", action="store_true", help="8 VFs, few samples: that it runs, not its figures")
    a = ap.parse_args()
    b = Bench(a.build, a.quick)
    try:
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
