"""Verify throughput next to `zstd -t` on the same 1 GiB-disk .vma.zst archive.

Target (issue 6): `vzkeep verify` (zstd check + full VMA structure check + SHA-256 of the file, one pass)
reaches >= 90% of the throughput of `zstd -t` alone. The archive is generated once into a temp dir (or
--keep DIR) with the project's own VMA writer: a 1 GiB disk of mixed clusters (random, text-like, zero),
compressed by `zstd` as vzdump does. Each tool runs --runs times; the medians are compared.

    .venv/bin/python bench/bench_verify.py [--size-mib 1024] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vzkeep.pve import vma
from vzkeep.pve.decompress import compressed_writer
from vzkeep.verify import verify_archive

TARGET = 0.90
NAME = "vzdump-qemu-100-2026_01_05-02_00_03.vma.zst"
CTIME = 1767578403 + 4  # that name's time under TZ=UTC, plus the seconds before the header is written
_WORDS = (
    b"proxmox backup cluster vzdump archive node storage retention guest disk block data log error "
    b"info warning systemd kernel usr lib share bin etc var 0 1 2 3 4 5 6 7 8 9 10 42 100 255 1024 "
    b"the of and to in is for on with as by at from this that it be are was not or"
).split() + [b"\n"] * 6
POOL_SIZE = 64 << 20  # far larger than zstd's 2-8 MiB window, so no cluster repeats inside it


def _text_pool(rng: random.Random) -> bytes:
    """Word soup from a small vocabulary: compresses about 3:1 with zstd -3, like OS files and logs."""
    return b" ".join(rng.choices(_WORDS, k=POOL_SIZE // 4))[:POOL_SIZE]


def _disk(size: int, seed: int = 6) -> vma.VmaDevice:
    """A disk whose clusters are 30% random (media, encrypted), 45% text-like, 25% zero (never written),
    decided per cluster by the seed: about what a used VM disk compresses to with zstd (2:1 overall)."""
    kinds = random.Random(seed).choices(("random", "text", "zero"), weights=(30, 45, 25), k=size // 65536 + 1)
    rng = random.Random(seed + 1)
    pool = _text_pool(rng)

    def read_cluster(i: int) -> bytes:
        kind = kinds[i]
        if kind == "random":
            return rng.randbytes(vma.CLUSTER_SIZE)
        if kind == "text":
            start = rng.randrange(POOL_SIZE - vma.CLUSTER_SIZE)
            return pool[start : start + vma.CLUSTER_SIZE]
        return b""

    return vma.VmaDevice("drive-scsi0", size, read_cluster)


def make_archive(directory: Path, size: int) -> Path:
    path = directory / NAME
    if path.exists():
        return path
    started = time.perf_counter()
    with compressed_writer(path, "zst") as out:
        config = b"name: bench\nscsi0: local-lvm:vm-100-disk-0,size=1G\n"
        vma.write_vma(out, config=config, devices=[_disk(size)], ctime=CTIME)
    print(f"generated {path.name}: {path.stat().st_size / 2**20:.0f} MiB compressed "
          f"from a {size / 2**20:.0f} MiB disk in {time.perf_counter() - started:.1f} s")
    return path


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children): CPU time is what other load on a
    shared machine does not change, wall time is what a user waits."""
    cpu, started = _cpu(), time.perf_counter()
    run()
    return time.perf_counter() - started, _cpu() - cpu


def zstd_test(path: Path) -> None:
    subprocess.run(["zstd", "-q", "-t", str(path)], check=True)


def vzkeep_verify(path: Path) -> None:
    result = verify_archive(path, tz="UTC")
    if not result.ok:
        sys.exit(f"bench archive did not verify: {result.problems}")


def sha256_only(path: Path) -> None:
    digest, buf = hashlib.sha256(), bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="disk size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory, not a temp dir")
    args = parser.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        path = make_archive(directory, args.size_mib * 2**20)
        size_mib = path.stat().st_size / 2**20
        sha256_only(path)  # warm the page cache so every tool reads from memory
        runs: dict[str, list[tuple[float, float]]] = {"zstd -t": [], "vzkeep verify": [], "sha256 alone": []}
        for _ in range(args.runs):  # interleaved, so machine load hits all alike
            runs["zstd -t"].append(timed(lambda: zstd_test(path)))
            runs["vzkeep verify"].append(timed(lambda: vzkeep_verify(path)))
            runs["sha256 alone"].append(timed(lambda: sha256_only(path)))
        print(f"archive: {size_mib:.0f} MiB compressed, median of {args.runs} runs each, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        medians = {}
        for label, samples in runs.items():
            wall, cpu = statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)
            medians[label] = wall
            print(f"  {label:16s} {wall:6.2f} s wall {size_mib / wall:7.0f} MiB/s   {cpu:6.2f} s CPU")
        ratio = medians["zstd -t"] / medians["vzkeep verify"]
        verdict = "met" if ratio >= TARGET else "MISSED"
        print(f"  verify throughput / zstd -t: {ratio:.0%} (target >= {TARGET:.0%}: {verdict}); verify = zstd "
              "+ VMA structure check + SHA-256 of the file, one read")


if __name__ == "__main__":
    main()
