"""30 simulated days of daily backups for 100 guests in the sandbox engine (no HTTP).

Targets: < 60 s wall time, < 500 MB peak RSS. Each run is a fresh subprocess (so peak RSS is that
run's own) over a fresh state directory; the script prints the median of the runs next to the
targets, plus what the month produced (tasks, archives kept, bytes on disk, archives pruned).

    .venv/bin/python bench/bench_sandbox_month.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WALL_TARGET_S = 60.0
RSS_TARGET_MB = 500.0
DAYS = 30
GUESTS = 100
START = 1764547200  # 2025-12-01 00:00 UTC


def build_cluster(root: Path):  # -> Cluster
    from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage

    cluster = Cluster(name="homelab")
    for name in ("pve1", "pve2", "pve3"):
        cluster.nodes[name] = Node(name, timezone="Europe/Paris")
    envs = ("prod", "lab", "monitoring")
    for env in envs:
        cluster.pools[env] = Pool(env)
        cluster.storages[f"backup-{env}"] = Storage(f"backup-{env}", "nfs", str(root / env), shared=True)
        cluster.jobs[f"vzkeep-{env}"] = {
            "type": "vzdump", "id": f"vzkeep-{env}", "schedule": "02:00" if env == "prod" else "03:30",
            "pool": env, "storage": f"backup-{env}", "mode": "snapshot", "compress": "zstd", "enabled": 1,
            "prune-backups": "keep-daily=7,keep-weekly=4", "notes-template": "{{guestname}} ({{cluster}})",
        }
    for i in range(GUESTS):
        vmid = 100 + i
        cluster.guests[vmid] = Guest(
            vmid, f"guest{vmid}", "qemu" if i % 3 else "lxc", f"pve{i % 3 + 1}", pool=envs[i % 3],
            disk_bytes=(8 << i % 4) * 1024**3,  # 8, 16, 32, 64 GiB
        )
    cluster.clock_epoch = START
    return cluster


def one_run() -> dict[str, float]:
    from vzkeep.sandbox.engine import Sandbox

    with tempfile.TemporaryDirectory(prefix="vzkeep-bench-") as tmp:
        root = Path(tmp)
        sandbox = Sandbox.create(root / "state", build_cluster(root), stepped=True)
        began = time.perf_counter()
        started = sandbox.advance(DAYS * 86400)
        wall = time.perf_counter() - began
        kept = sum(len(sandbox.listing(sid, "pve1")) for sid in sandbox.cluster.storages)
        pruned = sum(
            sum(line.startswith("INFO: removing backup") for line in sandbox.tasks.log_lines(upid))
            for upid in started
        )
        failed = sum(sandbox.tasks.find(u).status != "OK" for u in started)  # type: ignore[union-attr]
        disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "peak_rss_mb": peak_mb, "tasks": len(started), "failed": failed,
            "archives_kept": kept, "archives_pruned": pruned, "state_bytes": disk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run()))
        return
    results = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    wall = statistics.median(r["wall_s"] for r in results)
    rss = statistics.median(r["peak_rss_mb"] for r in results)
    last = results[-1]
    print(f"sandbox month: {DAYS} days x {GUESTS} guests, 3 nodes, 3 daily jobs, median of {args.runs} runs")
    print(f"  wall time   {wall:8.2f} s    target < {WALL_TARGET_S:.0f} s   {'OK' if wall < WALL_TARGET_S else 'MISS'}")
    print(f"  peak RSS    {rss:8.1f} MB   target < {RSS_TARGET_MB:.0f} MB  {'OK' if rss < RSS_TARGET_MB else 'MISS'}")
    print(f"  vzdump tasks {last['tasks']} ({last['failed']} failed), archives kept {last['archives_kept']}, "
          f"pruned {last['archives_pruned']}, state on disk {last['state_bytes'] / 1024**2:.1f} MiB")


if __name__ == "__main__":
    main()
