"""How fast `vzkeep` starts: three everyday commands against `pve_exporter --help`, run as processes.

Target (issue 15): `vzkeep --help`, `vzkeep schedule next …` and `vzkeep retention plan …` each take at
most 1.2× the time of `pve_exporter --help` (prometheus-pve-exporter's CLI, our peer), measured in
the same run. Each command runs 10 times, interleaved with the anchor so that load from other
processes hits both alike; the medians of wall time and of CPU time (user + system of the child) are
printed, with their ratios to the anchor's. The verdict uses CPU time, which a busy shared machine
disturbs far less than wall time.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RUNS = 10
TARGET_RATIO = 1.2
BIN = Path(sys.executable).parent


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def median_wall(self) -> float:
        return statistics.median(self.wall)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def run_once(argv: list[str], timings: Timings, stdin: bytes | None = None) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    timings.wall.append(time.perf_counter() - began)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings.cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")


def executable(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed (pip install -e '.[test]')")
    return found


def measure(commands: dict[str, list[str]], runs: int = RUNS) -> dict[str, Timings]:
    """Each command once to warm caches, then `runs` rounds of all of them, interleaved."""
    timings = {name: Timings() for name in commands}
    for argv in commands.values():
        run_once(argv, Timings())
    for _ in range(runs):
        for name, argv in commands.items():
            run_once(argv, timings[name])
    return timings


def listing(directory: Path) -> Path:
    """A storage listing as `pvesh get …/content --output-format json` prints it: 4 guests × 60 days."""
    entries = [
        {"volid": f"backup-prod:backup/vzdump-qemu-{vmid}-2026_01_{1 + day % 28:02d}-02_00_{day // 28:02d}.vma.zst",
         "ctime": 1767229200 + day * 86400, "vmid": vmid, "subtype": "qemu", "format": "vma.zst"}
        for vmid in (100, 101, 102, 103) for day in range(60)
    ]
    path = directory / "backups.json"
    path.write_text(json.dumps({"data": entries}))
    return path


def main() -> None:
    os.environ.setdefault("TZ", "UTC")
    vzkeep = executable("vzkeep")
    with tempfile.TemporaryDirectory() as tmp:
        backups = listing(Path(tmp))
        commands = {
            "pve_exporter --help (anchor)": [executable("pve_exporter"), "--help"],
            "vzkeep --help": [vzkeep, "--help"],
            "vzkeep schedule next": [vzkeep, "schedule", "next", "mon..fri 21:00", "--tz", "Europe/Paris",
                                     "--after", "2026-03-28T12:00", "-n", "5"],
            "vzkeep retention plan": [vzkeep, "retention", "plan", "-p", "keep-daily=7,keep-weekly=4",
                                      "--tz", "Europe/Paris", str(backups)],
        }
        timings = measure(commands)
    anchor = timings["pve_exporter --help (anchor)"]
    print(f"CLI start-up, median of {RUNS} runs (target: CPU ≤ {TARGET_RATIO}× the anchor)")
    print(f"  {'command':32} {'wall ms':>8} {'× anchor':>9} {'CPU ms':>8} {'× anchor':>9}")
    missed = []
    for name, t in timings.items():
        wall_ratio = t.median_wall() / anchor.median_wall()
        cpu_ratio = t.median_cpu() / anchor.median_cpu()
        verdict = "" if name.endswith("(anchor)") else ("ok" if cpu_ratio <= TARGET_RATIO else "MISSED")
        if verdict == "MISSED":
            missed.append(name)
        print(f"  {name:32} {t.median_wall() * 1000:8.0f} {wall_ratio:8.2f}× {t.median_cpu() * 1000:8.0f} "
              f"{cpu_ratio:8.2f}×  {verdict}")
    print("result: " + ("every target met" if not missed else f"MISSED: {', '.join(missed)}"))


if __name__ == "__main__":
    main()
