"""Benchmark: PVE retention marking on 100,000 backups (target: < 2 s each, median of 5 runs).

Run: .venv/bin/python bench/bench_retention.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vzkeep.pve import archive, localtime, retention

RUNS = 5
TARGET_SECONDS = 2.0
TZ = "Europe/Paris"
POLICY = "keep-last=3,keep-hourly=24,keep-daily=7,keep-weekly=4,keep-monthly=12,keep-yearly=2"
START = 1_577_836_800  # 2020-01-01 00:00 UTC


def many_guests(guests: int = 1000, per_guest: int = 100) -> list[dict[str, object]]:
    """A big cluster: every guest backed up nightly (a few seconds apart), half VMs, half CTs."""
    listing: list[dict[str, object]] = []
    for index in range(guests):
        vmid = 100 + index
        kind = "qemu" if index % 2 else "lxc"
        for day in range(per_guest):
            ctime = START + day * 86400 + 7200 + index * 7
            name = archive.archive_name(kind, vmid, ctime, "zstd", TZ)
            listing.append(
                {"volid": f"backup-prod:backup/{name}", "ctime": ctime, "vmid": vmid, "protected": 1 if day == 0 else 0}
            )
    return listing


def one_guest_hourly(count: int = 100_000) -> list[dict[str, object]]:
    """One guest backed up every hour for 11 years: every rule walks a long group, across DST changes."""
    listing: list[dict[str, object]] = []
    for hour in range(count):
        ctime = START + hour * 3600 + 60
        listing.append(
            {
                "volid": f"local:backup/{archive.archive_name('qemu', 100, ctime, 'zstd', TZ)}",
                "ctime": ctime,
                "vmid": 100,
            }
        )
    return listing


def median_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    failed = False
    for label, listing in (
        ("1000 guests x 100 nightly", many_guests()),
        ("1 guest x 100000 hourly", one_guest_hourly()),
    ):
        seconds = median_seconds(lambda listing=listing: retention.mark(listing, POLICY, tz=TZ))
        marks = retention.mark(listing, POLICY, tz=TZ)
        kept = sum(1 for entry in marks if entry["mark"] == "keep")
        verdict = "ok" if seconds < TARGET_SECONDS else "SLOWER THAN TARGET"
        print(
            f"retention.mark  {label:28} {len(listing):>7} backups  median {seconds:6.3f} s "
            f"(target < {TARGET_SECONDS:.0f} s, {verdict}; kept {kept})"
        )
        failed |= seconds >= TARGET_SECONDS
    names = [str(item["volid"]) for item in many_guests(100, 1000)]
    clock = localtime.LocalClock(TZ)
    seconds = median_seconds(lambda: [archive.parse(name, clock) for name in names])
    print(
        f"archive.parse   {'names with timelocal':28} {len(names):>7} names    median {seconds:6.3f} s "
        f"({seconds / len(names) * 1e6:.1f} us per name)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
