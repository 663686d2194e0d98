"""`vzkeep sandbox apply` of a stack with 500 inventory guests: first apply < 10 s, no-op re-apply < 3 s.

A prod-like stack lists 500 guests; a sandbox is seeded from it (nodes, the guests, node-local
storage) and served over HTTPS on 127.0.0.1 by `vzkeep sandbox serve` in its own process, as a user
runs it. Timed: the first apply (pool, 500 pool members,
storages, jobs: ~510 resources, each its bpg requests) on a fresh sandbox, and a re-apply that
changes nothing. The anchor, measured in the same run, is the offline preview of the same stack
(`run_stack_file`): the figures are printed as ratios to it, and in seconds against the targets.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vzkeep.apply.engine import ApplyOptions, apply_stack  # noqa: E402
from vzkeep.net import free_port  # noqa: E402
from vzkeep.preview import run_stack_file  # noqa: E402
from vzkeep.sandbox.server import CONNECTION_FILE  # noqa: E402

VZKEEP = Path(sys.executable).with_name("vzkeep")

GUESTS = 500
TARGET_APPLY, TARGET_NOOP = 10.0, 3.0
FRESH_RUNS, NOOP_RUNS, ANCHOR_RUNS = 3, 5, 5


def stack_with_guests(directory: Path, count: int) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["vzkeep:inventory"] = [
        {"vmid": 1000 + i, "name": f"guest-{i}", "type": "qemu" if i % 3 else "lxc",
         "node": "pve1" if i % 2 else "pve2", "diskGb": 8}
        for i in range(count)
    ]
    path = directory / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def serve(state: Path, stacks: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([str(VZKEEP), "sandbox", "serve", "--from-stacks", "--stacks-dir", str(stacks),
                                "--dir", str(state), "--port", str(free_port()), "--stepped"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (state / CONNECTION_FILE).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.1)
    return process


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stacks = Path(tmp) / "stacks"
        stacks.mkdir()
        stack = stack_with_guests(stacks, GUESTS)
        anchor = statistics.median(timed(lambda: run_stack_file(stack, root=ROOT)) for _ in range(ANCHOR_RUNS))
        fresh, noop = [], []
        for run in range(FRESH_RUNS):
            state = Path(tmp) / f"sandbox-{run}"
            process = serve(state, stacks)
            try:
                options = ApplyOptions(stack="prod", sandbox=state / CONNECTION_FILE, root=stacks)
                created: list[str] = []
                fresh.append(timed(lambda options=options, created=created: created.extend(
                    apply_stack(options).names("create"))))
                assert len(created) >= GUESTS, created[:5]
                if run == FRESH_RUNS - 1:
                    noop += [timed(lambda options=options: apply_stack(options)) for _ in range(NOOP_RUNS)]
            finally:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
    apply_s, noop_s = statistics.median(fresh), statistics.median(noop)
    print(f"anchor: offline preview of the same stack, median {anchor:.2f} s over {ANCHOR_RUNS} runs")
    print(f"sandbox apply, {GUESTS} inventory guests (first apply): median {apply_s:.2f} s over {FRESH_RUNS} runs "
          f"= {apply_s / anchor:.1f}x the preview; target < {TARGET_APPLY:.0f} s -> "
          f"{'OK' if apply_s < TARGET_APPLY else 'MISSED'}")
    print(f"sandbox apply, no-op re-apply: median {noop_s:.2f} s over {NOOP_RUNS} runs = {noop_s / anchor:.1f}x the "
          f"preview; target < {TARGET_NOOP:.0f} s -> {'OK' if noop_s < TARGET_NOOP else 'MISSED'}")


if __name__ == "__main__":
    main()
