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


def time_zstd_test(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["zstd", "-q", "-t", str(path)], check=True)
    return time.perf_counter() - started


def time_verify(path: Path) -> float:
    started = time.perf_counter()
    result = verify_archive(path, tz="UTC")
    elapsed = time.perf_counter() - started
    if not result.ok:
        sys.exit(f"bench archive did not verify: {result.problems}")
    return elapsed


def sha256_only(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - started


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
        sha256_only(path)  # warm the page cache so both tools read from memory
        zstd_t, ours, sha = [], [], []
        for _ in range(args.runs):  # interleaved, so machine load hits both alike
            zstd_t.append(time_zstd_test(path))
            ours.append(time_verify(path))
            sha.append(sha256_only(path))
        z, v = statistics.median(zstd_t), statistics.median(ours)
        ratio = z / v
        print(f"archive: {size_mib:.0f} MiB compressed, median of {args.runs} runs each")
        print(f"  zstd -t            {z:6.2f} s  {size_mib / z:7.0f} MiB/s")
        print(f"  vzkeep verify      {v:6.2f} s  {size_mib / v:7.0f} MiB/s  (zstd + VMA check + SHA-256)")
        print(f"  sha256 alone       {statistics.median(sha):6.2f} s")
        verdict = "met" if ratio >= TARGET else "MISSED"
        print(f"  verify / zstd -t   {ratio:6.0%}    target >= {TARGET:.0%}: {verdict}")


if __name__ == "__main__":
    main()
