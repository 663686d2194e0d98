"""Sandbox figures: startup with 1,000 guests on 5 nodes, /cluster/resources latency (30 days: bench_sandbox_month).

Run: .venv/bin/python bench/bench_sandbox.py   (prints medians next to their targets)
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import requests

from vzkeep.net import free_port
from vzkeep.sandbox.launch import launch

NODES = 5
RUNS = 3


def write_seed(path: Path, guests: int, nodes: int = NODES) -> Path:
    lines = ["cluster: bench", "nodes:"] + [f"  - {{name: pve{i + 1}}}" for i in range(nodes)]
    lines += ["storages:", "  - {id: backup-bench, type: dir, capacity: 500GiB}",
              "pools:", "  - {id: bench}", "guests:"]
    for n in range(guests):
        kind = "qemu" if n % 3 else "lxc"
        lines.append(f"  - {{vmid: {1000 + n}, name: g{n}, type: {kind}, node: pve{n % nodes + 1}, pool: bench,"
                     " disk: 8GiB}")
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_startup(guests: int = 1000) -> float:
    """Median seconds from nothing to a listening sandbox seeded with ``guests`` guests (target < 5 s)."""
    times = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            seed = write_seed(Path(tmp) / "seed.yaml", guests)
            start = time.perf_counter()
            running = launch(Path(tmp) / "state", seed=seed, port=free_port(), stepped=True)
            times.append(time.perf_counter() - start)
            running.stop()
    return statistics.median(times)


def bench_resources_latency(guests: int = 1000, calls: int = 50) -> float:
    """Median milliseconds of GET /cluster/resources with ``guests`` guests, keep-alive (target < 50 ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        seed = write_seed(Path(tmp) / "seed.yaml", guests)
        running = launch(Path(tmp) / "state", seed=seed, port=free_port(), stepped=True)
        info = running.info
        token = info["tokens"]["admin"]
        session = requests.Session()
        session.headers["Authorization"] = f"PVEAPIToken={token['user']}!{token['token_name']}={token['token_value']}"
        url = info["url"] + "/cluster/resources"
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            reply = session.get(url, verify=False, timeout=30)
            samples.append((time.perf_counter() - start) * 1000)
            assert reply.status_code == 200 and len(reply.json()["data"]) > guests
        running.stop()
    return statistics.median(samples)


def main() -> None:
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    print(f"startup, 1000 guests on {NODES} nodes: {bench_startup():.2f} s median (target < 5 s)")
    print(f"GET /cluster/resources, 1000 guests: {bench_resources_latency():.1f} ms median (target < 50 ms)")
    print("30 simulated days of 100 guests: see bench_sandbox_month.py (wall time and peak memory)")


if __name__ == "__main__":
    main()
