"""Writing one backup archive: the guest's disk as a VMA (VMs) or a tar (containers), through the
job's compressor, on a storage that may run out of space.

The bytes are real: ``zstd -t``, ``vma verify`` and ``vzkeep verify`` read them like a node's. vzdump
pipes the archive through ``zstd --threads=N`` (one frame, content checksum on; pve-manager
``PVE/VZDump.pm`` ``compressor_info``), ``gzip`` or ``lzop``. A full storage fails the write with the
writer's own ``ENOSPC`` message, after the part that fitted was written, as a real short write does.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from vzkeep.pve import archive, vma
from vzkeep.pve import ct_tar as ct_tar_format
from vzkeep.pve.decompress import compressed_writer
from vzkeep.sandbox.diskdata import CLUSTER_SIZE, cut_ct_parts
from vzkeep.sandbox.framecache import (
    MAX_DISK,
    FrameCache,
    MetaSink,
    Template,
    assemble,
    build_template,
    cluster_mask,
    content_key,
    stand_in_cluster,
    tar_data_ranges,
    vma_extents,
)
from vzkeep.sandbox.guestconfig import disk_chunk_reader, guest_config_text
from vzkeep.sandbox.model import Guest
from vzkeep.sandbox.settings import Settings

_ZERO_CLUSTER = bytes(CLUSTER_SIZE)
VMA_DEVICE = "drive-scsi0"


def write_archive_file(guest: Guest, settings: Settings, compress: str | None, dat: Path, budget: int | None,
                       t: int, frames: FrameCache | None = None) -> float:
    """Write the guest's archive to ``dat``; return the disk's share of zero clusters (for the log).

    ``budget`` is the space left on the storage (None = unlimited): writing past it raises ``ENOSPC``.
    With ``frames``, a zstd archive of a generated disk reuses the disk's compressed data (``framecache``).
    """
    size, read_cluster = disk_chunk_reader(guest, settings)
    generated = not (guest.disk_image and Path(guest.disk_image).exists())  # a restored image is read as is
    if frames is not None and compress == "zst" and generated and size <= MAX_DISK:
        return _write_from_template(guest, settings, frames, dat, budget, t, size, read_cluster)
    zero = [0, 0]

    def counting(index: int) -> bytes:
        data = read_cluster(index)
        zero[1] += 1
        if data == _ZERO_CLUSTER[: len(data)]:
            zero[0] += 1
        return data

    config = guest_config_text(guest).encode()
    with open(dat, "wb") as raw, _compressed(raw, compress, budget, dat, settings.zstd_level) as out:
        _write_archive(guest, config, size, counting, out, t)
    return zero[0] / zero[1] if zero[1] else 0.0


def _write_archive(guest: Guest, config: bytes, size: int, read_cluster: Callable[[int], bytes], out: Any,
                   t: int) -> None:
    if guest.type == "qemu":
        device = vma.VmaDevice(VMA_DEVICE, size, read_cluster)
        vma.write_vma(out, config=config, devices=[device], ctime=t + 1)
    else:
        ct_tar_format.write_ct_tar(out, config=config, files=_ct_files(guest, size, read_cluster), mtime=t)


def _write_from_template(guest: Guest, settings: Settings, frames: FrameCache, dat: Path, budget: int | None,
                         t: int, size: int, read_cluster: Callable[[int], bytes]) -> float:
    """The zstd archive from the disk's template: built (and stored) by the first backup, reused after."""
    config = guest_config_text(guest).encode()
    key = content_key(guest.type, guest.vmid, guest.generation, size, settings.zstd_level, config, guest.name)
    path = frames.path(guest.vmid, guest.generation, key)
    template = frames.load(path)
    if template is not None:
        metas = _metadata(guest, config, size, template, t)
        if [n for is_data, n in template.layout if not is_data] == [len(m) for m in metas]:
            _write_limited(dat, assemble(template, metas), budget)
            return template.zero_fraction
    masks: list[int] = []

    def recording(index: int) -> bytes:
        data = read_cluster(index)
        masks.append(cluster_mask(data))
        return data

    raw = _Out(io.BytesIO(), close=False)
    with raw:
        _write_archive(guest, config, size, recording, raw, t)
    data = raw.out.getvalue()
    zero_fraction = masks.count(0) / len(masks) if masks else 0.0
    ranges, extents = vma_extents(data) if guest.type == "qemu" else (tar_data_ranges(data), [])
    template = build_template(data, ranges, masks, zero_fraction, settings.zstd_level, extents)
    if template is None:  # not reusable: compressed as usual
        with open(dat, "wb") as file, _compressed(file, "zst", budget, dat, settings.zstd_level) as out:
            out.write(data)
        return zero_fraction
    frames.store(path, template)
    metas = [data[start:start + length] for start, length in template.ranges(data=False)]
    _write_limited(dat, assemble(template, metas), budget)
    return zero_fraction


def _metadata(guest: Guest, config: bytes, size: int, template: Template, t: int) -> list[bytes]:
    """This archive's metadata (headers with its own time and UUID), cut as the template's layout."""
    if guest.type == "qemu":  # the header, then each extent's header: what write_vma writes around the data
        uuid = uuidlib.uuid4().bytes
        flat = vma.build_header([(vma.CONFIG_NAME, config)], [(VMA_DEVICE, size)], uuid=uuid, ctime=t + 1)
        flat += b"".join(vma.extent_header(uuid, count, infos) for count, infos in template.extents)
        return _cut(flat, [n for is_data, n in template.layout if not is_data])
    # a tar: the writer run over a stand-in disk with the same non-zero blocks, its data dropped
    sink = MetaSink(template.ranges(data=True))

    def stand_in(index: int) -> bytes:
        return stand_in_cluster(template.masks[index], min(CLUSTER_SIZE, size - index * CLUSTER_SIZE))

    with _Out(sink, close=False) as out:
        _write_archive(guest, config, size, stand_in, out, t)
    return sink.finish()


def _cut(flat: bytes, lengths: list[int]) -> list[bytes]:
    if len(flat) != sum(lengths):
        return []  # another layout: the caller rebuilds the template
    out, pos = [], 0
    for length in lengths:
        out.append(flat[pos : pos + length])
        pos += length
    return out


def _write_limited(dat: Path, frame: bytes, budget: int | None) -> None:
    with open(dat, "wb") as file:
        CapacityWriter(file, budget).write(frame)


def _ct_files(guest: Guest, size: int, read_cluster: Callable[[int], bytes]) -> Iterator[tuple[str, bytes]]:
    yield "./etc/hostname", (guest.name + "\n").encode()
    chunks = (read_cluster(i) for i in range(-(-size // CLUSTER_SIZE)))
    yield from cut_ct_parts(chunks)


def writer_error(guest: Guest, compress: str | None, exc: OSError) -> str:
    """The text the real writer prints for a failed write (``vma``, ``zstd``, ``gzip`` or ``tar``)."""
    reason = exc.strerror or str(exc)
    if guest.type == "qemu":
        return f"vma_queue_write: write error - {reason}"
    if compress == "zst":
        return f"zstd: error 70 : Write error : cannot write block : {reason}"
    if compress == "gz":
        return f"gzip: stdout: {reason}"
    return f"tar: -: Cannot write: {reason}"


def compression_of(params: dict[str, Any]) -> str | None:
    """The file extension of the job's ``compress`` option (``zst``, ``gz``, ``lzo`` or None)."""
    return archive.compression_extension(params.get("compress", "0"))


class CapacityWriter(io.RawIOBase):
    """A file that fails like a full disk: ``ENOSPC`` once ``budget`` bytes are written (the part
    that fits is written first, as a real short write would)."""

    def __init__(self, raw: BinaryIO, budget: int | None):
        super().__init__()
        self.raw = raw
        self.budget = budget
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.budget is not None and self.written + len(view) > self.budget:
            fits = max(0, self.budget - self.written)
            self.raw.write(view[:fits])
            self.written += fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.raw.write(view)
        self.written += len(view)
        return len(view)


def _compressed(raw: BinaryIO, compress: str | None, budget: int | None, dat: Path, level: int) -> Any:
    limited = CapacityWriter(raw, budget)
    if compress == "zst":
        # `zstd --threads=N`: one frame, content checksum on
        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        return _Out(cctx.stream_writer(limited, closefd=False), close=True)
    if compress == "gz":
        return _Out(gzip.GzipFile(fileobj=limited, mode="wb", mtime=0), close=True)  # type: ignore[arg-type]
    if compress == "lzo":
        raw.close()
        return compressed_writer(dat, "lzo")  # the lzop binary; no capacity check on this path
    return _Out(limited, close=False)


class _Out:
    """Context manager exposing ``write``/``writelines`` over a compressor, closing (and so
    finishing the frame) on success; the raw file stays with its owner. Small writes (tar's
    512-byte blocks, VMA headers) are gathered into 1 MiB pieces before they reach the compressor."""

    BUFFER = 1 << 20

    def __init__(self, out: Any, close: bool):
        self.out = out
        self.close = close
        self.pending = bytearray()

    def write(self, data: Any) -> int:
        self.pending += data
        if len(self.pending) >= self.BUFFER:
            self.flush()
        return len(data)

    def writelines(self, chunks: Iterable[Any]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending)
            self.pending = bytearray()

    def __enter__(self) -> _Out:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.flush()
            if self.close:
                self.out.close()
