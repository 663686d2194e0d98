"""30 simulated days of daily backups in the sandbox engine (no HTTP), at 100 and at 500 guests.

Targets: 500 guests in < 60 s, at most 5.5x the time of 100 guests (linear growth), peak RSS < 200 MB.
Each run is a fresh subprocess (so peak RSS is that run's own) over a fresh sandbox directory. Every
figure is printed as a ratio too: 500 over 100 guests, and over an anchor measured in the same run
(zstd-compressing the sandbox's own synthetic disk data and creating/removing files in the same
temporary directory, i.e. what a month mostly costs), so a busy or slow machine shows as a slow anchor,
not as a regression.

    .venv/bin/python bench/bench_sandbox_month.py [--runs 3] [--guests 100,500]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WALL_TARGET_S = 60.0
RATIO_TARGET = 5.5
RSS_TARGET_MB = 200.0
DAYS = 30
START = 1764547200  # 2025-12-01 00:00 UTC


def build_cluster(root: Path, guests: int):  # -> Cluster
    """3 nodes, 3 environments; prod and lab back up to a local (per-node) dir storage, monitoring to NFS."""
    from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage

    cluster = Cluster(name="homelab")
    for name in ("pve1", "pve2", "pve3"):
        cluster.nodes[name] = Node(name, timezone="Europe/Paris")
    envs = ("prod", "lab", "monitoring")
    for env in envs:
        cluster.pools[env] = Pool(env)
        kind = "nfs" if env == "monitoring" else "dir"
        cluster.storages[f"backup-{env}"] = Storage(f"backup-{env}", kind, str(root / env))
        cluster.jobs[f"vzkeep-{env}"] = {
            "type": "vzdump", "id": f"vzkeep-{env}", "schedule": "02:00" if env == "prod" else "03:30",
            "pool": env, "storage": f"backup-{env}", "mode": "snapshot", "compress": "zstd", "enabled": 1,
            "prune-backups": "keep-daily=7,keep-weekly=4", "notes-template": "{{guestname}} ({{cluster}})",
        }
    for i in range(guests):
        vmid = 100 + i
        cluster.guests[vmid] = Guest(
            vmid, f"guest{vmid}", "qemu" if i % 3 else "lxc", f"pve{i % 3 + 1}", pool=envs[i % 3],
            disk_bytes=(8 << i % 4) * 1024**3,  # 8, 16, 32, 64 GiB
        )
    cluster.clock_epoch = START
    return cluster


def anchor(root: Path) -> float:
    """Seconds to zstd 32 MiB of synthetic disk data and to create, rename and remove 300 small files."""
    import zstandard

    from vzkeep.sandbox.diskdata import GuestDisk

    data = b"".join(chunk for i in range(8) for chunk in GuestDisk(100 + i, 0, 4 << 20).chunks())
    began = time.perf_counter()
    zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    for i in range(300):
        path = root / f"anchor-{i}"
        path.write_bytes(data[:20000])
        os.replace(path, root / f"anchor-{i}.done")
    for i in range(300):
        (root / f"anchor-{i}.done").unlink()
    return time.perf_counter() - began


def one_run(guests: int) -> dict[str, float]:
    from vzkeep.sandbox.engine import Sandbox

    with tempfile.TemporaryDirectory(prefix="vzkeep-bench-") as tmp:
        root = Path(tmp)
        sandbox = Sandbox.create(root / "state", build_cluster(root, guests), stepped=True)
        began = time.perf_counter()
        started = sandbox.advance(DAYS * 86400)
        wall = time.perf_counter() - began
        if hasattr(sandbox, "dirs"):  # storages per node
            kept = sum(len(sandbox.listing(s.id, n)) for s, n in sandbox.dirs.places())
        else:  # before: one directory per storage (lets this bench measure older versions too)
            kept = sum(len(sandbox.listing(sid, "pve1")) for sid in sandbox.cluster.storages)
        failed = sum(sandbox.tasks.find(u).status != "OK" for u in started)  # type: ignore[union-attr]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "peak_rss_mb": peak_mb, "tasks": len(started),
            "failed": failed, "archives_kept": kept}


def measure(guests: int, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vzkeep-bench-anchor-") as tmp:
            anchor_s = anchor(Path(tmp))  # in this process: the child's peak RSS is the month's alone
        out = subprocess.run([sys.executable, __file__, "--child", str(guests)], capture_output=True, text=True,
                             check=True)
        results.append({**json.loads(out.stdout), "anchor_s": anchor_s})
    median = {k: statistics.median(r[k] for r in results) for k in ("wall_s", "anchor_s", "peak_rss_mb")}
    return {**median, "tasks": results[-1]["tasks"], "failed": results[-1]["failed"],
            "archives_kept": results[-1]["archives_kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guests", default="100,500", help="two guest counts: the base and the large one")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child)))
        return
    small_n, large_n = (int(g) for g in args.guests.split(","))
    small, large = measure(small_n, args.runs), measure(large_n, args.runs)
    ratio = large["wall_s"] / small["wall_s"]
    print(f"sandbox month: {DAYS} days, 3 nodes, 3 daily jobs, medians of {args.runs} runs")
    for n, r in ((small_n, small), (large_n, large)):
        print(f"  {n:4d} guests  {r['wall_s']:7.2f} s = {r['wall_s'] / r['anchor_s']:6.1f} x anchor "
              f"({r['anchor_s']:.2f} s)   peak RSS {r['peak_rss_mb']:6.1f} MB   "
              f"{r['tasks']:.0f} tasks ({r['failed']:.0f} failed), {r['archives_kept']:.0f} archives kept")
    print(f"  time {large_n}/{small_n}     {ratio:6.2f} x    target <= {RATIO_TARGET} x   "
          f"{'OK' if ratio <= RATIO_TARGET else 'MISS'}")
    print(f"  time {large_n} guests  {large['wall_s']:6.2f} s    target < {WALL_TARGET_S:.0f} s    "
          f"{'OK' if large['wall_s'] < WALL_TARGET_S else 'MISS'}")
    print(f"  peak RSS {large_n}    {large['peak_rss_mb']:6.1f} MB   target < {RSS_TARGET_MB:.0f} MB  "
          f"{'OK' if large['peak_rss_mb'] < RSS_TARGET_MB else 'MISS'}   "
          f"({large['peak_rss_mb'] / small['peak_rss_mb']:.2f} x the {small_n}-guest run)")


if __name__ == "__main__":
    main()
