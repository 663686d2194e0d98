"""API calls and CPU per poll of `vzkeep exporter` at 100 and 1,000 guests × 30 archives, next to
prometheus-pve-exporter (in-process, `cluster=1&node=1` for every node) on the same sandbox.

Targets (issue 5): calls per poll constant in the number of guests; CPU < 1 s per poll at 1,000 guests.

Both exporters are measured the same way: HTTP requests counted on ``requests.Session.request`` and CPU as the
polling thread's own CPU time (``time.thread_time``), so the sandbox's server threads in this process do not
count. Each figure is the median of RUNS steady-state polls (after a first poll that read the task logs).
Archives: one real day of job runs (so task logs exist) plus 29 older archive files per guest written
beside them (names as vzdump writes them; the content listing is what the exporter reads).

    .venv/bin/python bench/bench_exporter.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sandbox_fixtures import RunningSandbox, running_sandbox

from vzkeep.exporter.collect import Poller, proxmoxer_get
from vzkeep.exporter.metrics import render
from vzkeep.pve.archive import archive_name

DAY = 86400
ARCHIVES = 30
RUNS = 5
CPU_TARGET_SECONDS = 1.0
POOLS = {"prod": "backup-prod", "lab": "backup-lab", "monitoring": "backup-monitoring"}


class RequestCounter:
    """Counts every HTTP request any requests.Session makes while active."""

    def __init__(self) -> None:
        self.count = 0
        self._original = requests.Session.request

    def __enter__(self) -> RequestCounter:
        counter, original = self, self._original

        def counting(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        requests.Session.request = self._original  # type: ignore[method-assign]


def grow(sb: RunningSandbox, guests: int) -> None:
    """Add guests (tiny disks, spread over pools and nodes) up to ``guests``."""
    existing = len(sb.sandbox.cluster.guests)
    pools = list(POOLS)
    for i in range(guests - existing):
        pool = pools[i % len(pools)]
        node = {"lab": "pve2", "monitoring": "pve1"}.get(pool, ("pve1", "pve2")[i % 2])
        sb.app.call(
            "POST",
            "/guests",
            {
                "vmid": 10_000 + i,
                "name": f"g{i}",
                "type": "lxc",
                "node": node,
                "pool": pool,
                "disk_gb": 0.001,
            },
            router=sb.app.control,
        )


def add_old_archives(sb: RunningSandbox, per_guest: int) -> None:
    """``per_guest`` older archive files per guest on its pool's storage, one per day before now."""
    now = sb.sandbox.now()
    for guest in sb.sandbox.cluster.guests.values():
        if guest.pool not in POOLS:
            continue
        dump = sb.sandbox.cluster.storages[POOLS[guest.pool]].dump_dir
        dump.mkdir(parents=True, exist_ok=True)
        for day in range(1, per_guest + 1):
            name = archive_name(guest.type, guest.vmid, now - day * DAY - 7200, "zstd", "Europe/Paris")
            with open(dump / name, "wb") as f:
                f.truncate(4096 + guest.vmid)  # sparse: a size without the bytes


def measure(poll: Callable[[], Any]) -> tuple[int, float, float]:
    """(requests, thread CPU seconds, wall seconds) of one call."""
    with RequestCounter() as counter:
        cpu, wall = time.thread_time(), time.perf_counter()
        poll()
        return counter.count, time.thread_time() - cpu, time.perf_counter() - wall


def median_of(poll: Callable[[], Any]) -> tuple[int, float, float]:
    runs = [measure(poll) for _ in range(RUNS)]
    return (
        int(statistics.median(r[0] for r in runs)),
        statistics.median(r[1] for r in runs),
        statistics.median(r[2] for r in runs),
    )


def vzkeep_poll(sb: RunningSandbox) -> tuple[Callable[[], Any], Callable[[], Any]]:
    poller = Poller(proxmoxer_get(sb.api(read_only=True)))
    return poller.poll, lambda: render(poller.poll())


def pve_exporter_scrape(sb: RunningSandbox) -> Callable[[], Any]:
    from pve_exporter.collector import CollectorsOptions, collect_pve

    token = sb.info["tokens"]["auditor"]
    config = {
        "user": token["user"],
        "token_name": token["token_name"],
        "token_value": token["token_value"],
        "verify_ssl": False,
        "port": sb.port,
    }
    options = CollectorsOptions(*([True] * len(CollectorsOptions._fields)))
    return lambda: collect_pve(config, sb.host, True, True, options)


def bench(guests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, running_sandbox(Path(tmp)) as sb:
        grow(sb, guests)
        sb.advance(DAY)  # every job runs once: task logs and one fresh archive per guest
        add_old_archives(sb, ARCHIVES - 1)
        poll, poll_and_render = vzkeep_poll(sb)
        first = measure(poll)
        steady = median_of(poll_and_render)
        import warnings

        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        pve = median_of(pve_exporter_scrape(sb))
        return {"guests": len(sb.sandbox.cluster.guests), "first": first, "vzkeep": steady, "pve": pve}


def main() -> None:
    print(f"median of {RUNS} polls; calls = HTTP requests; cpu = the polling thread's CPU time")
    print(
        f"{'guests':>7} {'archives':>9} | {'vzkeep calls':>12} {'cpu s':>7} {'wall s':>7} {'1st poll':>8} | "
        f"{'pve-exporter calls':>18} {'cpu s':>7} {'wall s':>7}"
    )
    results = [bench(n) for n in (100, 1000)]
    for r in results:
        calls, cpu, wall = r["vzkeep"]
        print(
            f"{r['guests']:>7} {r['guests'] * ARCHIVES:>9} | {calls:>12} {cpu:>7.3f} {wall:>7.3f} "
            f"{r['first'][0]:>8} | {r['pve'][0]:>18} {r['pve'][1]:>7.3f} {r['pve'][2]:>7.3f}"
        )
    constant = results[0]["vzkeep"][0] == results[1]["vzkeep"][0]
    cpu_1000 = results[1]["vzkeep"][1]
    print(
        f"target: calls constant in guests -> {'met' if constant else 'MISSED'}; "
        f"CPU < {CPU_TARGET_SECONDS:g} s at 1,000 guests -> {cpu_1000:.3f} s, "
        f"{'met' if cpu_1000 < CPU_TARGET_SECONDS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
