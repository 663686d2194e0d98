"""`vzkeep preview` as users run it: the whole command, as a process, against `python -c "import pulumi"`.

Targets: `vzkeep preview --stack prod` end to end ≤ 2× the anchor `python -c "import pulumi"` (issue
15: preview runs in every pull request); a stack with 500 inventory guests < 10 s. Each command runs
10 times interleaved with the anchor (load from other processes hits both alike); medians of wall
time and of CPU time (user + system of the child) are printed with their ratios to the anchor's. The
verdict uses CPU time, which a busy shared machine disturbs far less than wall time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import executable, measure  # noqa: E402

RUNS = 10
TARGET_RATIO = 2.0
GUESTS = 500
TARGET_500_SECONDS = 10.0


def stack_with_guests(directory: Path, count: int) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["vzkeep:inventory"] = [
        {"vmid": 1000 + i, "name": f"guest-{i}", "type": "qemu" if i % 3 else "lxc",
         "node": "pve1" if i % 2 else "pve2"}
        for i in range(count)
    ]
    (directory / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    path = directory / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def main() -> None:
    vzkeep = executable("vzkeep")
    with tempfile.TemporaryDirectory() as tmp:
        big = stack_with_guests(Path(tmp), GUESTS)
        commands = {
            'python -c "import pulumi" (anchor)': [sys.executable, "-c", "import pulumi"],
            "vzkeep preview --stack prod": [vzkeep, "preview", "--stack", "prod", "--root", str(ROOT)],
            f"vzkeep preview, {GUESTS} guests": [vzkeep, "preview", "--stack", "prod", "--root", str(big.parent),
                                                 "--json"],
        }
        timings = measure(commands, RUNS)
    anchor = next(iter(timings.values()))
    print(f"vzkeep preview end to end, median of {RUNS} runs (target: CPU ≤ {TARGET_RATIO}× the anchor; "
          f"{GUESTS} guests < {TARGET_500_SECONDS:.0f} s)")
    print(f"  {'command':36} {'wall ms':>8} {'× anchor':>9} {'CPU ms':>8} {'× anchor':>9}")
    for name, t in timings.items():
        wall_ratio = t.median_wall() / anchor.median_wall()
        cpu_ratio = t.median_cpu() / anchor.median_cpu()
        if name.endswith("(anchor)"):
            verdict = ""
        elif "guests" in name:
            verdict = "ok" if statistics.median(t.wall) < TARGET_500_SECONDS else "MISSED"
        else:
            verdict = "ok" if cpu_ratio <= TARGET_RATIO else "MISSED"
        print(f"  {name:36} {t.median_wall() * 1000:8.0f} {wall_ratio:8.2f}× {t.median_cpu() * 1000:8.0f} "
              f"{cpu_ratio:8.2f}×  {verdict}")


if __name__ == "__main__":
    main()
