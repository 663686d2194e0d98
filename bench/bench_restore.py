"""Restore tool overhead: wall time of `vzkeep restore` minus PVE's own task time (target < 2 s).

Runs the real CLI (a subprocess, so interpreter start and imports count) against a sandbox on
127.0.0.1 whose clock is pumped so PVE's restore tasks end; the task's time is what the tool itself
measured from its POST until it saw the task stopped (`task_seconds` in --json). The overhead is
everything else: connecting, listing guests and storages, reading the archive for the pre-check,
planning, polling, printing. Median of 5 restores of VM 101 (32 GiB virtual, a few hundred KiB of
archive in the sandbox) into new VMIDs.

    .venv/bin/python bench/bench_restore.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.cli import ClockPump, with_backups
from tests.helpers.sandbox import running_sandbox

RUNS = 5
TARGET_SECONDS = 2.0


def one_restore(sandbox_json: Path, state: Path, vmid: int) -> tuple[float, float]:
    env = {**os.environ, "VZKEEP_SANDBOX": str(sandbox_json), "VZKEEP_STATE_DIR": str(state)}
    vzkeep = str(Path(sys.executable).parent / "vzkeep")
    began = time.monotonic()
    done = subprocess.run([vzkeep, "restore", "101", "--vmid", str(vmid), "--json"], env=env,
                          capture_output=True, text=True, check=False)
    total = time.monotonic() - began
    doc = json.loads(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"restore failed: {doc.get('error')}")
    return total, float(doc["task_seconds"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_sandbox(Path(tmp)) as sb:
        with_backups(sb)
        rows = []
        with ClockPump(sb):
            for i in range(RUNS):
                rows.append(one_restore(sb.sandbox_json, Path(tmp) / "state", 7000 + i))
    totals = [t for t, _ in rows]
    tasks = [k for _, k in rows]
    overheads = [t - k for t, k in rows]
    median = statistics.median(overheads)
    print(f"vzkeep restore, {RUNS} runs against the sandbox (pre-check included)")
    print(f"  wall total      median {statistics.median(totals):6.3f} s")
    print(f"  PVE task        median {statistics.median(tasks):6.3f} s  (POST until seen stopped)")
    print(f"  tool overhead   median {median:6.3f} s  target < {TARGET_SECONDS:.1f} s  "
          f"{'OK' if median < TARGET_SECONDS else 'MISSED'}")
    print(f"  overheads       {', '.join(f'{o:.3f}' for o in overheads)}")


if __name__ == "__main__":
    main()
