"""vzdump archives for the verify tests: VMA and CT tar streams written by the project's writers and
compressed by the real tools, and the `vzkeep verify` command as the CLI runs it."""

from __future__ import annotations

import io
import random
from pathlib import Path

import typer

from vzkeep.cli import verify as verify_cli
from vzkeep.cli.common import VzkeepGroup
from vzkeep.pve import archive, ct_tar, vma
from vzkeep.pve.decompress import compressed_writer

T = 1767578403  # 2026-01-05 02:00:03 UTC: the time in the archive names (read in UTC unless a case says)
CLUSTER = 65536
RNG = random.Random(6)
# clusters: random, zero, half random, so some extents carry data and some clusters are mask 0
DISK = b"".join(
    (RNG.randbytes(CLUSTER), bytes(CLUSTER), RNG.randbytes(CLUSTER // 2) + bytes(CLUSTER // 2))[i % 3]
    for i in range(70)
)
COMPRESS_OPTION = {None: 0, "zst": "zstd", "gz": "gzip", "lzo": "lzo"}


def name(guest: str, compression: str | None, *, when: int = T, tz: str = "UTC", vmid: int = 100) -> str:
    return archive.archive_name(guest, vmid, when, COMPRESS_OPTION[compression], tz=tz)


def vma_bytes(ctime: int = T + 4, disk: bytes = DISK) -> bytes:
    out = io.BytesIO()
    device = vma.VmaDevice("drive-scsi0", len(disk), lambda i: disk[i * CLUSTER : (i + 1) * CLUSTER])
    config = b"name: vm100\nscsi0: local-lvm:vm-100-disk-0,size=5M\n"
    vma.write_vma(out, config=config, devices=[device], ctime=ctime, uuid=b"\x01" * 16)
    return out.getvalue()


def tar_bytes(mtime: int = T + 2) -> bytes:
    out = io.BytesIO()
    files = [("etc/hostname", b"ct101\n"), ("usr/lib/blob", RNG.randbytes(200_000)), ("var/log/empty", b"")]
    ct_tar.write_ct_tar(out, config=b"arch: amd64\nhostname: ct101\n", files=files, mtime=mtime)
    return out.getvalue()


def store(path: Path, raw: bytes, compression: str | None) -> Path:
    with compressed_writer(path, compression) as out:
        out.write(raw)
    return path


def vm(tmp: Path, compression: str | None = "zst", *, raw: bytes | None = None, name_: str | None = None) -> Path:
    return store(tmp / (name_ or name("qemu", compression)), raw if raw is not None else vma_bytes(), compression)


def ct(tmp: Path, compression: str | None = "zst", *, raw: bytes | None = None, name_: str | None = None) -> Path:
    return store(tmp / (name_ or name("lxc", compression)), raw if raw is not None else tar_bytes(), compression)


def verify_app() -> typer.Typer:
    app = typer.Typer(cls=VzkeepGroup)  # the CLI's error handler, as `vzkeep verify` runs it
    verify_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a second command keeps `verify` a named sub-command
    return app
