"""`make bench` runs and prints its table (its figures are for people, not
for pass/fail: speed targets live in the bench, never in timed tests)."""

import os
import subprocess

import pytest
from conftest import AGENT, HERE, WRAPPER

ROOT = os.path.dirname(os.path.dirname(HERE))
FIGURES = ("idle CPU, ms/min, the agent's threads", "idle CPU, ms/min, whole process", "start to Register, ms",
           "uevent to ListAndWatch, p50 ms", "uevent to ListAndWatch, p99 ms", "Allocate of 1 VF, p50 us",
           "Allocate of 1 VF, p99 us", "Allocate p99.9 us, VFs flapping", "idle RSS, MB",
           "agent to agent stream, mutual TLS, MiB/s", "migrate send end to end, MiB/s")


@pytest.mark.skipif(bool(WRAPPER) or bool(os.environ.get("XEVF_SANITIZED")),
                    reason="the bench measures the plain build; this checks that it runs, once")
def test_make_bench_runs_and_prints_every_figure():
    build = os.path.relpath(os.path.dirname(AGENT), ROOT)
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "bench", "BENCH_QUICK=1", "BUILD=" + build],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    for figure in FIGURES:
        assert any(line.startswith("| " + figure) for line in table), "no row for %r in:\n%s" % (figure, r.stdout)
    assert "bench: " in r.stdout and "(quick run)" in r.stdout
