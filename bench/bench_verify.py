"""`vzkeep verify` end to end (the command, as a subprocess) next to `zstd -t` on the same files.

Targets (each printed as a ratio to its anchor, measured in the same run, medians of --runs runs):

(a) many small archives, cold (a new results store each run): 1,000 archives take <= 2x a loop of one
    `zstd -q -t` process per file over the same files; and linear: 2,000 archives <= 2.2x the time of 1,000.
(b) one big archive (a 1 GiB disk, ~440 MiB of zstd), SHA-256 included: >= 0.9x the throughput of
    `zstd -q -t`; CPU <= 1.3x the CPU of `zstd -q -t` plus `sha256sum`.

The archives are written once into a temp dir (or --keep DIR) with the project's VMA and tar writers and
zstd-compressed like vzdump's (content checksum on). Every tool reads from the page cache (each file is read
once before timing). --vzkeep runs another checkout's command, e.g. to measure main before a change:

    .venv/bin/python bench/bench_verify.py [--runs 3] [--big-mib 1024] [--keep DIR] [--vzkeep PATH]
                                          [--only small|big] [--counts 1000,2000]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

from vzkeep.pve import archive, ct_tar, vma
from vzkeep.pve.decompress import compressed_writer

SMALL_TARGET = 2.0
LINEAR_TARGET = 2.2
THROUGHPUT_TARGET = 0.90
CPU_TARGET = 1.30
T0 = 1767578403  # 2026-01-05 02:00:03 UTC; names are written in UTC and verified with --tz UTC
BIG_NAME = "vzdump-qemu-100-2026_01_05-02_00_03.vma.zst"
_WORDS = (
    b"proxmox backup cluster vzdump archive node storage retention guest disk block data log error "
    b"info warning systemd kernel usr lib share bin etc var 0 1 2 3 4 5 6 7 8 9 10 42 100 255 1024 "
    b"the of and to in is for on with as by at from this that it be are was not or"
).split() + [b"\n"] * 6
POOL_SIZE = 64 << 20  # far larger than zstd's 2-8 MiB window, so no cluster repeats inside it


# -- archives ----------------------------------------------------------------------------------------------


def _text_pool(rng: random.Random, size: int = POOL_SIZE) -> bytes:
    """Word soup from a small vocabulary: compresses about 3:1 with zstd -3, like OS files and logs."""
    return b" ".join(rng.choices(_WORDS, k=size // 4))[:size]


def _disk(size: int, seed: int = 6) -> vma.VmaDevice:
    """Clusters 30% random (media, encrypted), 45% text-like, 25% zero (never written), decided per cluster
    by the seed: about what a used VM disk compresses to with zstd (2:1 overall)."""
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


def make_big(directory: Path, size: int) -> Path:
    path = directory / BIG_NAME
    if path.exists():
        return path
    started = time.perf_counter()
    with compressed_writer(path, "zst") as out:
        config = b"name: bench\nscsi0: local-lvm:vm-100-disk-0,size=1G\n"
        vma.write_vma(out, config=config, devices=[_disk(size)], ctime=T0 + 4)
    print(f"generated {path.name}: {path.stat().st_size / 2**20:.0f} MiB compressed from a "
          f"{size / 2**20:.0f} MiB disk in {time.perf_counter() - started:.1f} s")
    return path


def make_small(directory: Path, count: int) -> list[Path]:
    """``count`` small archives (half VMs with a 1 MiB disk, half CTs), ~100 KiB each, distinct bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("vzdump-*"))
    if len(existing) == count:
        return existing
    rng = random.Random(15)
    pool = _text_pool(rng, 8 << 20)
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)  # zstd -3 as vzdump runs it
    paths = []
    for i in range(count):
        when = T0 + i * 3600
        raw = _small_vma(rng, pool, when) if i % 2 == 0 else _small_tar(rng, pool, when)
        guest = "qemu" if i % 2 == 0 else "lxc"
        path = directory / archive.archive_name(guest, 100 + i % 900, when, "zstd", tz="UTC")
        path.write_bytes(cctx.compress(raw))
        paths.append(path)
    return sorted(paths)


def _small_vma(rng: random.Random, pool: bytes, when: int) -> bytes:
    clusters = [rng.randbytes(vma.CLUSTER_SIZE) if i == 0 else _slice(rng, pool, vma.CLUSTER_SIZE) if i < 4
                else b"" for i in range(16)]
    device = vma.VmaDevice("drive-scsi0", 16 * vma.CLUSTER_SIZE, lambda i: clusters[i])
    out = io.BytesIO()
    vma.write_vma(out, config=b"name: small\n", devices=[device], ctime=when + 4)
    return out.getvalue()


def _small_tar(rng: random.Random, pool: bytes, when: int) -> bytes:
    out = io.BytesIO()
    files = [("etc/hostname", b"ct\n"), ("usr/lib/blob", rng.randbytes(40_000)),
             ("var/log/syslog", _slice(rng, pool, 150_000))]
    ct_tar.write_ct_tar(out, config=b"arch: amd64\nhostname: ct\n", files=files, mtime=when + 2)
    return out.getvalue()


def _slice(rng: random.Random, pool: bytes, size: int) -> bytes:
    start = rng.randrange(len(pool) - size)
    return pool[start : start + size]


# -- timing ------------------------------------------------------------------------------------------------


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], **kwargs: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one command run to its end; it must succeed."""
    cpu, started = _cpu_children(), time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started, _cpu_children() - cpu


def warm(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def median(samples: list[tuple[float, float]], which: int = 0) -> float:
    return statistics.median(s[which] for s in samples)


def interleaved(runs: int, commands: dict[str, Callable[[], tuple[float, float]]]) -> dict[str, list]:
    """Each command ``runs`` times, interleaved, so machine load hits all alike."""
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            samples[label].append(command())
    return samples


# -- the benches -------------------------------------------------------------------------------------------


class Verify:
    """``vzkeep verify`` with a new results store per run (cold: nothing cached)."""

    def __init__(self, vzkeep: str, scratch: Path) -> None:
        self.vzkeep, self.scratch, self.n = vzkeep, scratch, 0

    def __call__(self, *args: str) -> tuple[float, float]:
        self.n += 1
        results = self.scratch / f"results-{self.n}.sqlite"
        env = {**os.environ, "TZ": "UTC", "VZKEEP_STATE_DIR": str(self.scratch)}
        return timed([self.vzkeep, "verify", "--tz", "UTC", "--results", str(results), *args], env=env)


def bench_small(directory: Path, verify: Verify, runs: int, counts: tuple[int, ...] = (1000, 2000)) -> None:
    sets = {n: make_small(directory / f"small-{n}", n) for n in counts}
    thousand = sets.get(1000) or make_small(directory / "small-1000", 1000)
    warm([p for paths in sets.values() for p in paths])
    loop = ["sh", "-c", 'for f in "$@"; do zstd -q -t "$f" || exit 1; done', "sh", *map(str, thousand)]
    commands = {"zstd -t loop, 1,000 files": lambda: timed(loop)}
    for n, paths in sets.items():
        commands[f"vzkeep verify, {n:,} archives"] = lambda d=str(paths[0].parent): verify("--dir", d)
    samples = interleaved(runs, commands)
    size = sum(p.stat().st_size for p in thousand) / 1000 / 1024
    print(f"(a) small archives ({size:.0f} KiB each on average), cold results store, median of {runs} runs:")
    for label, runs_of in samples.items():
        print(f"  {label:32s} {median(runs_of):6.2f} s wall {median(runs_of, 1):6.2f} s CPU")
    anchor = median(samples["zstd -t loop, 1,000 files"])
    if 1000 in sets:
        one = median(samples["vzkeep verify, 1,000 archives"])
        print(f"  verify 1,000 / zstd -t loop: {one / anchor:.2f}x (target <= {SMALL_TARGET}x: "
              f"{'met' if one / anchor <= SMALL_TARGET else 'MISSED'})")
    if 1000 in sets and 2000 in sets:
        two = median(samples["vzkeep verify, 2,000 archives"])
        print(f"  verify 2,000 / verify 1,000: {two / one:.2f}x (target <= {LINEAR_TARGET}x: "
              f"{'met' if two / one <= LINEAR_TARGET else 'MISSED'})")


def bench_big(directory: Path, verify: Verify, runs: int, size_mib: int) -> None:
    path = make_big(directory, size_mib << 20)
    warm([path])
    samples = interleaved(runs, {
        "zstd -t": lambda: timed(["zstd", "-q", "-t", str(path)]),
        "sha256sum": lambda: timed(["sha256sum", str(path)]),
        "vzkeep verify": lambda: verify(str(path)),
        "vzkeep verify --help": lambda: timed([verify.vzkeep, "verify", "--help"]),  # the command's start
    })
    mib = path.stat().st_size / 2**20
    print(f"(b) one archive of {mib:.0f} MiB, median of {runs} runs, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs:")
    for label, runs_of in samples.items():
        wall = median(runs_of)
        rate = f"{mib / wall:7.0f} MiB/s" if "--help" not in label else " " * 13
        print(f"  {label:21s} {wall:6.2f} s wall {rate} {median(runs_of, 1):6.2f} s CPU")
    throughput = median(samples["zstd -t"]) / median(samples["vzkeep verify"])
    cpu = median(samples["vzkeep verify"], 1) / (median(samples["zstd -t"], 1) + median(samples["sha256sum"], 1))
    print(f"  verify throughput / zstd -t: {throughput:.2f}x (target >= {THROUGHPUT_TARGET}x: "
          f"{'met' if throughput >= THROUGHPUT_TARGET else 'MISSED'}); verify = zstd + VMA structure + SHA-256")
    print(f"  verify CPU / (zstd -t + sha256sum) CPU: {cpu:.2f}x (target <= {CPU_TARGET}x: "
          f"{'met' if cpu <= CPU_TARGET else 'MISSED'})")
    started = median(samples["vzkeep verify"]) - median(samples["vzkeep verify --help"])
    print(f"  (for reading: without the command's start, verify reaches {median(samples['zstd -t']) / started:.2f}x "
          "the throughput of zstd -t)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per command (default 3)")
    parser.add_argument("--big-mib", type=int, default=1024, help="disk size of the big archive (default 1024)")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory, not a temp dir")
    parser.add_argument("--vzkeep", default=str(Path(sys.executable).parent / "vzkeep"),
                        help="the vzkeep command to measure (default: this environment's)")
    parser.add_argument("--only", choices=("small", "big"), help="run one bench only")
    parser.add_argument("--counts", default="1000,2000", help="small archive counts (default 1000,2000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-verify-results-") as scratch:
            verify = Verify(args.vzkeep, Path(scratch))
            if args.only in (None, "small"):
                bench_small(directory, verify, args.runs, tuple(int(n) for n in args.counts.split(",")))
            if args.only in (None, "big"):
                bench_big(directory, verify, args.runs, args.big_mib)


if __name__ == "__main__":
    main()
