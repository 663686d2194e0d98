"""`vzkeep exporter` against prometheus-pve-exporter, both polling the same PVE API, at 1,000 and 5,000 guests
with 30 archives each.

The PVE API is ``bench/fake_pve_server.py``: prebuilt JSON in PVE's shapes, served from its own process, so
what is measured is the exporters, not a PVE or the sandbox. Each exporter runs in a process of its own:
- vzkeep: the real command, ``vzkeep exporter --interval 1``; CPU per poll is the process's CPU time
  (``/proc/PID/stat`` utime+stime) between two polls, API calls per poll are counted by the fake, and the
  ``/metrics`` answer time is measured over HTTP while it runs.
- prometheus-pve-exporter (the anchor): ``collect_pve`` with every collector on, ``cluster=1&node=1``, as one
  scrape of its ``/pve`` endpoint does; CPU per scrape and calls are measured the same way.
Peak RSS is each process's ``VmHWM``. Figures are medians of RUNS polls or scrapes after a first one.

Targets (issue "Fast at every size"): at 5,000 guests × 30 archives, peak RSS ≤ prometheus-pve-exporter's,
CPU per poll < 1 s, API calls per poll the same at 1,000 and 5,000 guests; ``/metrics`` < 50 ms.

    .venv/bin/python bench/bench_exporter.py [--guests 1000,5000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VZKEEP = str(Path(PYTHON).with_name("vzkeep"))
RUNS = 5
SCRAPES = 20
ARCHIVES = 30
CPU_TARGET_SECONDS = 1.0
METRICS_TARGET_SECONDS = 0.050
TICKS = os.sysconf("SC_CLK_TCK")

# The exporter without the rest of the CLI: what `vzkeep exporter` costs once the CLI imports only the command
# it runs (a separate line of the report, so the CLI's own import cost is visible).
EXPORTER_ONLY = """
import sys, typer
from vzkeep.cli.exporter import exporter
app = typer.Typer()
app.command()(exporter)
app(sys.argv[1:])
"""
EXPORTER_ONLY_PRELUDE = """
import sys, types
# Stand in for the package's __init__, which imports every command: load vzkeep.cli.exporter alone.
package = types.ModuleType("vzkeep.cli"); package.__path__ = [__import__("os").path.join(
    __import__("os").path.dirname(__import__("vzkeep").__file__), "cli")]
sys.modules["vzkeep.cli"] = package
"""

PVE_EXPORTER = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from pve_exporter.collector import CollectorsOptions, collect_pve
info = json.load(open(sys.argv[1]))
token = info["tokens"]["auditor"]
config = {"user": token["user"], "token_name": token["token_name"], "token_value": token["token_value"],
          "verify_ssl": False, "port": info["port"]}
options = CollectorsOptions(*([True] * len(CollectorsOptions._fields)))
for _ in range(int(sys.argv[2])):
    cpu = time.thread_time()
    collect_pve(config, info["host"], True, True, options)
    print(time.thread_time() - cpu, flush=True)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))  # its peak, KiB
"""


class FakePve:
    """``bench/fake_pve_server.py`` in a process of its own; ``count(path)`` asks it how often a path was read."""

    def __init__(self, guests: int, out: Path) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "fake_pve_server.py"), "--guests", str(guests),
             "--archives", str(ARCHIVES),
             "--out", str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout.readline().strip() == "ready"
        self.connection = out / "pve.json"

    def ask(self, line: str) -> str:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def count(self, path: str) -> int:
        return int(self.ask(f"count {path}"))

    def total(self) -> int:
        return int(self.ask("total"))

    def churn(self, on: bool) -> None:
        self.ask(f"churn {'on' if on else 'off'}")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Figures:
    calls: float
    cpu: float  # per steady poll (nothing new) or scrape
    rss_mb: float
    first_cpu: float = 0.0
    metrics_seconds: float = 0.0
    changed_cpu: float = 0.0  # per poll where every storage listing changed


def measure_vzkeep(fake: FakePve, port: int, command: list[str]) -> Figures:
    process = subprocess.Popen(
        [*command, "--sandbox", str(fake.connection), "--read-only", "--listen", f"127.0.0.1:{port}",
         "--interval", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "VZKEEP_ENDPOINT": ""})
    try:
        marks = poll_marks(fake, process, RUNS + 2)
        first_cpu = marks[1][0] - marks[0][0]
        steady = marks[1:]
        cpu = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(steady))
        calls = statistics.median(b[1] - a[1] for a, b in itertools.pairwise(steady))
        answers = []
        for _ in range(SCRAPES):
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                reply.read()
            answers.append(time.perf_counter() - started)
        fake.churn(True)
        changed = poll_marks(fake, process, RUNS + 2)[1:]
        fake.churn(False)
        changed_cpu = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(changed))
        return Figures(calls, cpu, peak_rss_mb(process.pid), first_cpu, statistics.median(answers), changed_cpu)
    finally:
        process.terminate()
        process.wait(timeout=10)


def poll_marks(fake: FakePve, process: subprocess.Popen[bytes], count: int) -> list[tuple[float, int]]:
    """(process CPU seconds, API calls so far) at the start of each of the next ``count`` polls."""
    marks: list[tuple[float, int]] = []
    seen = fake.count("cluster/resources")
    while len(marks) < count:
        polls = fake.count("cluster/resources")
        if polls > seen:
            seen = polls
            marks.append((cpu_seconds(process.pid), fake.total()))
        if process.poll() is not None:
            raise RuntimeError(f"vzkeep exporter exited with {process.returncode}")
        time.sleep(0.01)
    return marks


def measure_pve_exporter(fake: FakePve) -> Figures:
    before = fake.total()
    process = subprocess.Popen([PYTHON, "-c", PVE_EXPORTER, str(fake.connection), str(RUNS + 1)],
                               stdout=subprocess.PIPE, text=True)
    *cpus, peak_kib = [float(line) for line in process.stdout]
    process.wait(timeout=600)
    # Its own VmHWM, not getrusage(RUSAGE_CHILDREN): that is the largest of every child reaped so far, and Linux
    # carries a parent's peak into a child across fork and exec.
    calls = (fake.total() - before) / (RUNS + 1)
    return Figures(calls, statistics.median(cpus[1:]), peak_kib / 1024, cpus[0])


def bench(guests: int) -> tuple[Figures, Figures, Figures]:
    from vzkeep.net import free_port

    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        fake = FakePve(guests, Path(tmp))
        try:
            pve = measure_pve_exporter(fake)
            vzkeep = measure_vzkeep(fake, free_port(), [VZKEEP, "exporter"])
            alone = measure_vzkeep(fake, free_port(), [PYTHON, "-c", EXPORTER_ONLY_PRELUDE + EXPORTER_ONLY])
        finally:
            fake.close()
    return vzkeep, alone, pve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", default="1000,5000")
    sizes = [int(n) for n in parser.parse_args().guests.split(",")]
    print(f"{ARCHIVES} archives per guest; medians of {RUNS} polls/scrapes after the first; "
          f"/metrics: median of {SCRAPES}")
    print("vzkeep cpu s: a poll with nothing new; changed: a poll where every listing changed; 1st: the first")
    print("peak MB alone: the same exporter started without the CLI's other commands (what a lazily loading CLI "
          "costs)")
    print(f"{'guests':>7} | {'vzkeep calls':>12} {'cpu s':>6} {'changed':>7} {'1st s':>6} {'peak MB':>8} "
          f"{'alone':>6} {'/metrics ms':>11} | {'pve-exp calls':>13} {'cpu s':>6} {'peak MB':>8} | "
          f"{'RSS ratio':>9} {'alone':>6} {'CPU ratio':>9}")
    results = {}
    for n in sizes:
        vz, alone, pve = bench(n)
        results[n] = (vz, pve)
        print(f"{n:>7} | {vz.calls:>12.0f} {vz.cpu:>6.2f} {vz.changed_cpu:>7.2f} {vz.first_cpu:>6.2f} "
              f"{vz.rss_mb:>8.1f} {alone.rss_mb:>6.1f} {vz.metrics_seconds * 1000:>11.1f} | "
              f"{pve.calls:>13.0f} {pve.cpu:>6.2f} {pve.rss_mb:>8.1f} | "
              f"{vz.rss_mb / pve.rss_mb:>9.2f} {alone.rss_mb / pve.rss_mb:>6.2f} {vz.cpu / pve.cpu:>9.2f}")
    largest = max(sizes)
    vz, pve = results[largest]
    verdict = {
        f"peak RSS <= prometheus-pve-exporter's at {largest} guests": vz.rss_mb <= pve.rss_mb,
        f"CPU per poll < {CPU_TARGET_SECONDS:g} s, also when every listing changed":
            max(vz.cpu, vz.changed_cpu) < CPU_TARGET_SECONDS,
        f"/metrics < {METRICS_TARGET_SECONDS * 1000:g} ms": vz.metrics_seconds < METRICS_TARGET_SECONDS,
    }
    if len(sizes) > 1:
        verdict["API calls per poll constant in guests"] = len({results[n][0].calls for n in sizes}) == 1
    for what, met in verdict.items():
        print(f"target: {what} -> {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
