"""Benchmark: successive next runs of PVE calendar events (vzkeep.pve.calendar).

Target (brief): 1,000 successive next runs of `mon..fri 21:00` in < 0.5 s total. Prints the median of
5 runs per case, in UTC, a named zone (zoneinfo) and the process's local zone (libc).
"""

from __future__ import annotations

import os
import statistics
import time

from vzkeep.pve import calendar

TARGET_SECONDS = 0.5
RUNS = 5
COUNT = 1000
START = 1767225600  # 2026-01-01 00:00:00 UTC

CASES = [
    ("mon..fri 21:00", "Europe/Vienna"),
    ("mon..fri 21:00", None),
    ("mon..fri 21:00 UTC", None),
    ("daily", "Europe/Vienna"),
    ("*/15", "Europe/Vienna"),
    ("sat 02:00", "America/New_York"),
    ("*-*-31 02:30", "Europe/Vienna"),
]


def time_successive_runs(spec: str, tz: str | None) -> float:
    event = calendar.parse(spec)
    began = time.perf_counter()
    last = START
    for _ in range(COUNT):
        found = event.next_after(last, tz)
        assert found is not None and found > last
        last = found
    return time.perf_counter() - began


def main() -> None:
    os.environ.setdefault("TZ", ":Europe/Vienna")  # the process-local case evaluates like a PVE node
    time.tzset()
    print(f"{COUNT} successive next runs, median of {RUNS} (target < {TARGET_SECONDS:.2f} s)")
    for spec, tz in CASES:
        median = statistics.median(time_successive_runs(spec, tz) for _ in range(RUNS))
        zone = tz or f"local ({os.environ['TZ'].lstrip(':')})"
        verdict = "ok" if median < TARGET_SECONDS else "SLOW"
        print(f"  {spec!r:24} {zone:28} {median * 1000:8.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
