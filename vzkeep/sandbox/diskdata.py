"""Deterministic guest disk content: the bytes the sandbox's vzdump backs up.

A guest's disk is a pure function of (vmid, generation): no disk file exists until a restore
materialises one. Sizes are *scaled*: a guest with a 32 GiB disk gets ``32 * bytes_per_gib`` bytes
(default 64 KiB per GiB), so a month of backups of a hundred guests stays small and fast while the
archives keep real structure and realistic compressibility. Each 64 KiB cluster (VMA's unit) is
one of: all zero (free space, the commonest case on real disks), text-like (logs, configs: zstd
shrinks it ~4x), random (media, encrypted or compressed files: incompressible), or half zero
blocks and half text (a partly used cluster, which exercises VMA's per-block masks).

Containers use the same byte stream, cut into 1 MiB files under ``/var/lib/vzkeep/disk``, so one
digest describes a guest's disk whatever its type.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

GIB = 1024**3
CLUSTER_SIZE = 65536  # VMA_CLUSTER_SIZE (pve-qemu vma.h, vma_spec.txt)
BLOCK_SIZE = 4096
DEFAULT_BYTES_PER_GIB = 64 * 1024
CT_PART_SIZE = 1024 * 1024
CT_DISK_DIR = "./var/lib/vzkeep/disk"

# Share of each cluster kind, in percent: mostly empty, then text, then random data.
_KIND_THRESHOLDS = ((45, "zero"), (80, "text"), (92, "random"), (100, "mixed"))
_WORDS = (
    'INFO', 'kernel', 'systemd', 'nginx', 'postgres', 'connection', 'accepted', 'from', '10.0.0.12',
    'GET', '/api/v1/items', '200', 'user=admin', 'session', 'started', 'finished', 'backup', 'rotate',
    'log', 'volume', 'mounted', 'eth0', 'link', 'up', 'listen=0.0.0.0:8080', 'worker_processes=auto',
    'max_connections=100', 'shared_buffers=128MB', 'Nov', '26', '02:00:01', 'pve1', 'CRON[1234]:',
    '(root)', 'CMD', '(command', '-v', 'debian-sa1', '>', '/dev/null)', 'apt-get', 'update', 'upgraded',
    'packages', 'libc6', 'openssl', 'ca-certificates', 'python3', 'perl',
)


def scaled_size(disk_bytes: int, bytes_per_gib: int = DEFAULT_BYTES_PER_GIB) -> int:
    """The sandbox size of a disk of ``disk_bytes``: whole 4 KiB blocks, at least one."""
    raw = -(-disk_bytes * bytes_per_gib // GIB)
    return max(BLOCK_SIZE, -(-raw // BLOCK_SIZE) * BLOCK_SIZE)


@lru_cache(maxsize=1)
def _text_corpus() -> bytes:
    """1 MiB of log- and config-like lines, built once from a fixed seed."""
    rng = random.Random(20261126)
    lines = []
    size = 0
    while size < 1024 * 1024 + CLUSTER_SIZE:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def _seed(vmid: int, generation: int, index: int) -> int:
    digest = hashlib.blake2b(f"{vmid}:{generation}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _kind(seed: int) -> str:
    pick = seed % 100
    return next(kind for limit, kind in _KIND_THRESHOLDS if pick < limit)


def _text(seed: int, length: int, vmid: int, generation: int, index: int) -> bytes:
    corpus = _text_corpus()
    start = seed % (len(corpus) - length)
    stamp = f"# vmid={vmid} generation={generation} cluster={index}\n".encode()
    return (stamp + corpus[start : start + length])[:length]


def cluster_bytes(vmid: int, generation: int, index: int, size: int) -> bytes:
    """Cluster ``index`` of the disk (64 KiB, shorter for the last cluster of the disk)."""
    length = min(CLUSTER_SIZE, size - index * CLUSTER_SIZE)
    if length <= 0:
        raise IndexError(f"cluster {index} is beyond the end of a {size}-byte disk")
    seed = _seed(vmid, generation, index)
    kind = _kind(seed)
    if kind == "zero":
        return bytes(length)
    if kind == "random":
        return random.Random(seed).randbytes(length)
    text = _text(seed, length, vmid, generation, index)
    if kind == "text":
        return text
    # mixed: every other 4 KiB block is zero
    out = bytearray(text)
    for off in range(0, length, 2 * BLOCK_SIZE):
        out[off : off + BLOCK_SIZE] = bytes(len(out[off : off + BLOCK_SIZE]))
    return bytes(out)


@dataclass(frozen=True)
class GuestDisk:
    """The disk of one guest at one generation, ``size`` bytes after scaling."""

    vmid: int
    generation: int
    size: int

    @property
    def cluster_count(self) -> int:
        return -(-self.size // CLUSTER_SIZE)

    def read_cluster(self, index: int) -> bytes:
        return cluster_bytes(self.vmid, self.generation, index, self.size)

    def chunks(self) -> Iterator[bytes]:
        for index in range(self.cluster_count):
            yield self.read_cluster(index)

    def ct_files(self) -> Iterator[tuple[str, bytes]]:
        """The container view: the stream cut into ``part-NNNN.bin`` files of 1 MiB."""
        return cut_ct_parts(self.chunks())

    def digest(self) -> str:
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()


def cut_ct_parts(chunks: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """Cut a disk byte stream into the container's ``part-NNNN.bin`` files (1 MiB each)."""
    part, pending, size = 0, [], 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= CT_PART_SIZE:
            data = b"".join(pending)
            for off in range(0, len(data) - CT_PART_SIZE + 1, CT_PART_SIZE):
                yield f"{CT_DISK_DIR}/part-{part:04d}.bin", data[off : off + CT_PART_SIZE]
                part += 1
            rest = data[len(data) - len(data) % CT_PART_SIZE :]
            pending, size = ([rest], len(rest)) if rest else ([], 0)
    if size:
        yield f"{CT_DISK_DIR}/part-{part:04d}.bin", b"".join(pending)


def ct_disk_part(path: str) -> int | None:
    """The part number of a container disk file path, or None for any other file."""
    normalized = path if path.startswith("./") else "./" + path.lstrip("/")
    prefix = CT_DISK_DIR + "/part-"
    if not (normalized.startswith(prefix) and normalized.endswith(".bin")):
        return None
    number = normalized[len(prefix) : -len(".bin")]
    return int(number) if number.isdigit() else None


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()
