"""Offline preview of a stack with 500 inventory guests (issue 2 target: < 10 s).

Builds a prod-like stack file with 500 guests, then times `run_stack_file` + the policy pack, the
whole of what `vzkeep preview --stack` does, median of 5 runs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vzkeep.policy_check import evaluate, load_pack, policy_resources  # noqa: E402
from vzkeep.preview import run_stack_file  # noqa: E402

GUESTS = 500
TARGET_SECONDS = 10.0
RUNS = 5


def stack_with_guests(directory: Path, count: int) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["vzkeep:inventory"] = [
        {"vmid": 1000 + i, "name": f"guest-{i}", "type": "qemu" if i % 3 else "lxc",
         "node": "pve1" if i % 2 else "pve2"}
        for i in range(count)
    ]
    path = directory / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def one_preview(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    run = run_stack_file(path, root=ROOT)
    pack = load_pack(ROOT)
    evaluate(run, pack.POLICIES)
    summary = pack.coverage(policy_resources(run)).summary()
    return time.perf_counter() - start, summary


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = stack_with_guests(Path(tmp), GUESTS)
        timings = []
        for _ in range(RUNS):
            seconds, summary = one_preview(path)
            timings.append(seconds)
    median = statistics.median(timings)
    print(f"offline preview + policies, {GUESTS} inventory guests: median {median:.2f} s over {RUNS} runs "
          f"(min {min(timings):.2f}, max {max(timings):.2f}); {summary}; target < {TARGET_SECONDS:.0f} s "
          f"-> {'OK' if median < TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
