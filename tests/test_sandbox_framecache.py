"""Archives put together from a disk's compressed data (``vzkeep.sandbox.framecache``): one zstd frame with
its checksum, whose content is exactly what the streaming writer produces for the same backup, for VMs
and containers, on the first backup and on later ones; a damaged template is rebuilt, not trusted."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest
import zstandard

from tests.helpers.tools import require_tool
from vzkeep.pve import ct_tar, vma
from vzkeep.sandbox.archivefile import write_archive_file
from vzkeep.sandbox.diskdata import GuestDisk, scaled_size
from vzkeep.sandbox.framecache import FrameCache
from vzkeep.sandbox.model import Guest
from vzkeep.sandbox.settings import Settings

T0 = 1749556800  # 2025-06-10 12:00:00 UTC
DAY = 86400


def content(path: Path) -> bytes:
    """The whole decompressed content, every frame (a second frame would show as extra bytes)."""
    with zstandard.ZstdDecompressor().stream_reader(path.read_bytes(), read_across_frames=True) as reader:
        return reader.read()


def first_frame(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()


def vma_disk_digest(data: bytes) -> tuple[bytes, str]:
    """(the header's config, SHA-256 of the extracted disk)."""
    chunks: dict[int, bytes] = {}

    def sink(_name: str, offset: int, block: memoryview) -> None:
        chunks[offset] = bytes(block)

    summary = vma.extract_devices(io.BytesIO(data), sink)
    size = summary.header.devices[1].size
    disk = bytearray(size)
    for offset, block in chunks.items():
        disk[offset : offset + len(block)] = block
    return summary.header.config, hashlib.sha256(disk).hexdigest()


@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_reused_archives_hold_what_the_streaming_writer_writes(tmp_path: Path, kind: str) -> None:
    zstd = require_tool("zstd")
    guest = Guest(130, "app", kind, "pve1", disk_bytes=32 * 1024**3)
    settings = Settings()
    cache = FrameCache(tmp_path / "cache")
    expected_disk = GuestDisk(130, 0, scaled_size(guest.disk_bytes)).digest()
    for day in range(3):  # the first builds the template, the next ones reuse it
        t = T0 + day * DAY
        reused, streamed = tmp_path / f"reused-{day}.zst", tmp_path / f"streamed-{day}.zst"
        zero = write_archive_file(guest, settings, "zst", reused, None, t, cache)
        assert zero == write_archive_file(guest, settings, "zst", streamed, None, t)
        assert zstandard.get_frame_parameters(reused.read_bytes()).has_checksum
        assert first_frame(reused) == content(reused), "one frame, as zstd writes it"
        result = subprocess.run([zstd, "-t", "-q", str(reused)], capture_output=True)
        assert result.returncode == 0, result.stderr
        if kind == "lxc":
            assert content(reused) == content(streamed)
            summary = ct_tar.check_ct_tar(io.BytesIO(content(reused)))
            assert summary.config_mtime == t and b"hostname: app" in summary.config
        else:
            config, digest = vma_disk_digest(content(reused))
            assert digest == expected_disk and b"name: app" in config
            assert vma.read_header(io.BytesIO(content(reused))).ctime == t + 1
            assert len(content(reused)) == len(content(streamed))
    assert len(list((tmp_path / "cache").glob("130-0-*.tpl"))) == 1


def test_a_new_generation_or_config_gets_its_own_data(tmp_path: Path) -> None:
    guest = Guest(131, "db", "qemu", "pve1", disk_bytes=8 * 1024**3)
    cache = FrameCache(tmp_path / "cache")
    write_archive_file(guest, Settings(), "zst", tmp_path / "a.zst", None, T0, cache)
    guest.generation = 1  # new data on the disk
    write_archive_file(guest, Settings(), "zst", tmp_path / "b.zst", None, T0 + DAY, cache)
    guest.config["memory"] = "8192"
    write_archive_file(guest, Settings(), "zst", tmp_path / "c.zst", None, T0 + 2 * DAY, cache)
    for name, generation in (("a", 0), ("b", 1), ("c", 1)):
        config, digest = vma_disk_digest(content(tmp_path / f"{name}.zst"))
        assert digest == GuestDisk(131, generation, scaled_size(guest.disk_bytes)).digest()
    assert b"memory: 8192" in config
    assert not list((tmp_path / "cache").glob("131-0-*")), "the old generation's data is dropped"


def test_a_damaged_template_is_rebuilt(tmp_path: Path) -> None:
    guest = Guest(132, "cache", "lxc", "pve1", disk_bytes=8 * 1024**3)
    cache = FrameCache(tmp_path / "cache")
    write_archive_file(guest, Settings(), "zst", tmp_path / "a.zst", None, T0, cache)
    (template,) = (tmp_path / "cache").glob("132-*.tpl")
    template.write_bytes(template.read_bytes()[:-1000])  # cut short
    write_archive_file(guest, Settings(), "zst", tmp_path / "b.zst", None, T0 + DAY, cache)
    streamed = tmp_path / "s.zst"
    write_archive_file(guest, Settings(), "zst", streamed, None, T0 + DAY)
    assert content(tmp_path / "b.zst") == content(streamed)
