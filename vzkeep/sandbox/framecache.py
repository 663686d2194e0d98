"""Compressing a guest's disk once: zstd archives whose disk data is reused from the first backup.

A month of daily backups writes each guest's archive thirty times, and between two backups of an
unchanged guest only the archive's own metadata differs (the VMA header and extent headers carry the
backup time and a fresh UUID, the tar headers the backup time); the disk data is the same bytes. So
the data is compressed once per (guest, disk generation, config, level), and later archives are put
together from those compressed blocks, as one zstd frame like ``zstd`` writes (RFC 8878):

- the frame header and the disk data's compressed blocks come from one real compression of the whole
  archive, in which each metadata piece was replaced by random bytes of the same length and kept in
  blocks of its own (``FLUSH_BLOCK`` before and after), so zstd stored those as raw blocks;
- each archive then writes its own metadata as raw (and zero runs as RLE) blocks in those places. Raw
  and RLE blocks change no decoder state (repeat offsets, entropy tables, RFC 8878 §3.1.1.2), and
  a check at build time proves the data blocks never copy bytes from the metadata (decoding with every
  metadata byte flipped must still give the data back), so any metadata of the same lengths fits;
- the frame ends with an empty last block and the content checksum (XXH64 of the whole archive),
  computed by zstd itself at its fastest level over the archive's bytes.

The decompressed archive is byte for byte what the normal path writes; only the compressed framing
differs. Templates live in the sandbox's directory (``cache/``), written atomically, and are rebuilt when
missing or unreadable.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import zstandard

from vzkeep.atomic import write_atomic
from vzkeep.pve import vma
from vzkeep.sandbox.diskdata import BLOCK_SIZE, ct_disk_part

MAX_DISK = 64 << 20  # bigger disks take the streaming path (a template holds the raw archive in memory once)
_MAGIC = b"VZKT1\n"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_BLOCK = 128 * 1024  # Block_Maximum_Size (RFC 8878 §3.1.1.2.4)
_LAST_EMPTY_BLOCK = b"\x01\x00\x00"  # Last_Block=1, Raw_Block, size 0: what zstd ends a flushed frame with
_FASTEST = -131072  # ZSTD_minCLevel: the checksum pass compresses next to nothing
_ZERO_RUN = re.compile(rb"\x00{32,}")  # shorter zero runs stay in the raw block (a block header costs 3 bytes)
_ZERO_BLOCK = bytes(BLOCK_SIZE)


@dataclass
class Template:
    """What a zstd archive of one guest disk needs besides its metadata."""

    frame_head: bytes
    layout: list[tuple[bool, int]]  # (is data, length) of each piece of the uncompressed archive
    masks: list[int]  # per cluster: which 4 KiB blocks are non-zero (bit j = block j)
    zero_fraction: float
    data_raw: list[bytes | memoryview]
    data_blocks: list[bytes | memoryview]
    extents: list[tuple[int, list[int]]]  # VMA: (block count, blockinfos) of each extent

    def ranges(self, data: bool) -> list[tuple[int, int]]:
        """(start, length) in the uncompressed archive of each data piece (``data``) or metadata piece."""
        out, pos = [], 0
        for is_data, length in self.layout:
            if is_data == data:
                out.append((pos, length))
            pos += length
        return out


# -- zstd framing ------------------------------------------------------------------------------------
def _frame_header_size(frame: bytes) -> int:
    """RFC 8878 §3.1.1.1: magic, descriptor, window descriptor, dictionary id, content size."""
    if frame[:4] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    fhd = frame[4]
    single_segment = fhd >> 5 & 1
    fcs = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
    did = (0, 1, 2, 4)[fhd & 3]
    return 5 + (0 if single_segment else 1) + did + fcs


def _blocks(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(block type, Block_Size field, bytes it takes in the stream) of each block (RFC 8878 §3.1.1.2)."""
    pos = 0
    while pos < len(data):
        header = int.from_bytes(data[pos : pos + 3], "little")
        kind, size = header >> 1 & 3, header >> 3
        stored = 3 + (size if kind in (0, 2) else 1 if kind == 1 else 0)
        if kind == 3 or header & 1:
            raise ValueError("unexpected last or reserved block inside a frame")
        yield kind, size, stored
        pos += stored
    if pos != len(data):
        raise ValueError("a block runs past the flushed output")


def _stored_blocks(piece: bytes) -> bytes:
    """``piece`` as raw blocks, with zero runs as RLE blocks: blocks that leave the decoder's state alone."""
    out = bytearray()
    pos = 0
    for run in _ZERO_RUN.finditer(piece):
        _raw_blocks(out, piece, pos, run.start())
        for at in range(run.start(), run.end(), _MAX_BLOCK):
            out += (min(_MAX_BLOCK, run.end() - at) << 3 | 1 << 1).to_bytes(3, "little") + b"\0"
        pos = run.end()
    _raw_blocks(out, piece, pos, len(piece))
    return bytes(out)


def _raw_blocks(out: bytearray, piece: bytes, start: int, end: int) -> None:
    for at in range(start, end, _MAX_BLOCK):
        size = min(_MAX_BLOCK, end - at)
        out += (size << 3).to_bytes(3, "little")
        out += piece[at : at + size]


def _checksum(pieces: list[bytes]) -> bytes:
    """The frame's Content_Checksum: the low 4 bytes of XXH64 over the content, as zstd writes them."""
    cobj = zstandard.ZstdCompressor(level=_FASTEST, write_checksum=True).compressobj()
    for piece in pieces:
        cobj.compress(piece)
    return cobj.flush()[-4:]


def assemble(template: Template, metas: list[bytes]) -> bytes:
    """The archive as one zstd frame: the template's data blocks around this archive's metadata."""
    out = [template.frame_head]
    content = []
    metas_left = iter(metas)
    data_left = iter(zip(template.data_raw, template.data_blocks, strict=True))
    for is_data, _length in template.layout:
        if is_data:
            raw, blocks = next(data_left)
            out.append(blocks)
            content.append(raw)
        else:
            meta = next(metas_left)
            out.append(_stored_blocks(meta))
            content.append(meta)
    out += [_LAST_EMPTY_BLOCK, _checksum(content)]
    return b"".join(out)


# -- building a template --------------------------------------------------------------------------------
def _pieces(raw: bytes, ranges: list[tuple[int, int]]) -> list[tuple[bool, bytes]]:
    out: list[tuple[bool, bytes]] = []
    pos = 0
    for start, length in ranges:
        if length == 0:
            continue
        if start > pos:
            out.append((False, raw[pos:start]))
        out.append((True, raw[start : start + length]))
        pos = start + length
    if pos < len(raw):
        out.append((False, raw[pos:]))
    return out


def build_template(raw: bytes, ranges: list[tuple[int, int]], masks: list[int], zero_fraction: float,
                   level: int, extents: list[tuple[int, list[int]]]) -> Template | None:
    """Compress ``raw`` once with its metadata masked; None when the result cannot be reused safely."""
    pieces = _pieces(raw, ranges)
    # Fresh random bytes for every piece (a repeated one would be a match), distinct from all data
    rng = random.Random(len(raw))
    noises = [b"" if is_data else rng.randbytes(len(piece)) for is_data, piece in pieces]
    sink = io.BytesIO()
    writer = zstandard.ZstdCompressor(level=level, write_checksum=True).stream_writer(sink, closefd=False)
    outputs = []
    for (is_data, piece), noise in zip(pieces, noises, strict=True):
        before = sink.tell()
        writer.write(piece if is_data else noise)
        writer.flush(zstandard.FLUSH_BLOCK)
        outputs.append(sink.getvalue()[before:])
    writer.close()
    head_size = _frame_header_size(outputs[0])
    frame_head, outputs[0] = outputs[0][:head_size], outputs[0][head_size:]
    try:
        for (is_data, piece), blocks in zip(pieces, outputs, strict=True):
            parsed = list(_blocks(blocks))
            if not is_data and (any(kind != 0 for kind, _, _ in parsed) or sum(s for _, s, _ in parsed) != len(piece)):
                return None  # zstd found something to compress in the noise: not a place we can refill
    except ValueError:
        return None
    template = Template(
        frame_head=frame_head, layout=[(d, len(p)) for d, p in pieces], masks=masks, zero_fraction=zero_fraction,
        data_raw=[p for d, p in pieces if d], data_blocks=[b for (d, _), b in zip(pieces, outputs, strict=True) if d],
        extents=extents)
    metas = [p for d, p in pieces if not d]
    flipped = [bytes(b ^ 0xFF for b in noise) for noise in noises if noise]
    for trial in (metas, flipped):  # the real metadata, and metadata differing from the noise in every byte
        expected = b"".join(_interleave(template, trial))
        try:
            if zstandard.ZstdDecompressor().decompressobj().decompress(assemble(template, trial)) != expected:
                return None
        except zstandard.ZstdError:
            return None
    return template


def _interleave(template: Template, metas: list[bytes]) -> Iterator[bytes]:
    metas_left, data_left = iter(metas), iter(template.data_raw)
    for is_data, _ in template.layout:
        yield next(data_left) if is_data else next(metas_left)


def vma_extents(raw: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, list[int]]]]:
    """Where the data blocks of each extent lie in a VMA stream, and each extent's (block count, blockinfos)."""
    layout = vma.extent_layout(raw)
    return ([(start, count * vma.BLOCK_SIZE) for start, count, _ in layout],
            [(count, list(infos)) for _, count, infos in layout])


def tar_data_ranges(raw: bytes) -> list[tuple[int, int]]:
    """Where the container disk's part files' data lie in a CT tar stream."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return [(m.offset_data, m.size) for m in tar.getmembers() if m.isfile() and ct_disk_part(m.name) is not None]


def cluster_mask(data: bytes) -> int:
    mask = 0
    for j in range(0, len(data), BLOCK_SIZE):
        if data[j : j + BLOCK_SIZE] != _ZERO_BLOCK[: len(data) - j]:
            mask |= 1 << (j // BLOCK_SIZE)
    return mask


@lru_cache(maxsize=4096)
def stand_in_cluster(mask: int, length: int) -> bytes:
    """A cluster with the same non-zero 4 KiB blocks as the real one: the metadata it yields is the same."""
    return b"".join(b"\x01" * min(BLOCK_SIZE, length - j) if mask >> (j // BLOCK_SIZE) & 1
                    else bytes(min(BLOCK_SIZE, length - j)) for j in range(0, length, BLOCK_SIZE))


class MetaSink:
    """A write-only stream that keeps what lies outside ``ranges`` (the metadata) and drops the data."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.metas: list[bytes] = []
        self._current = bytearray()
        self._pos = 0
        self._next = 0  # index of the next range not yet passed

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        at = 0
        while at < len(view):
            if self._next < len(self.ranges):
                start, length = self.ranges[self._next]
            else:
                start, length = 1 << 62, 0
            if self._pos < start:  # metadata up to the next data range
                take = min(len(view) - at, start - self._pos)
                self._current += view[at : at + take]
            else:  # inside a data range
                if self._current:
                    self.metas.append(bytes(self._current))
                    self._current = bytearray()
                take = min(len(view) - at, start + length - self._pos)
                if self._pos + take == start + length:
                    self._next += 1
            at += take
            self._pos += take
        return len(view)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def finish(self) -> list[bytes]:
        if self._current:
            self.metas.append(bytes(self._current))
            self._current = bytearray()
        return self.metas


# -- the store ----------------------------------------------------------------------------------------
class FrameCache:
    """Templates on disk, one file per (guest, generation, content key)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, vmid: int, generation: int, key: str) -> Path:
        return self.root / f"{vmid}-{generation}-{key}.tpl"

    def load(self, path: Path) -> Template | None:
        try:
            data = memoryview(path.read_bytes())
        except FileNotFoundError:
            return None
        try:
            if data[: len(_MAGIC)] != _MAGIC:
                return None
            head_len = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "big")
            pos = len(_MAGIC) + 4
            head = json.loads(bytes(data[pos : pos + head_len]))
            pos += head_len
            raws, blocks = [], []
            for raw_len, block_len in head["data"]:
                raws.append(data[pos : pos + raw_len])
                blocks.append(data[pos + raw_len : pos + raw_len + block_len])
                pos += raw_len + block_len
            if pos != len(data):
                return None  # cut short: rebuild it
            return Template(bytes.fromhex(head["frame_head"]), [(bool(d), n) for d, n in head["layout"]],
                            head["masks"], head["zero_fraction"], raws, blocks,
                            [(count, infos) for count, infos in head["extents"]])
        except (ValueError, KeyError, TypeError):
            return None

    def store(self, path: Path, template: Template) -> None:
        head = json.dumps({
            "frame_head": template.frame_head.hex(), "layout": template.layout, "masks": template.masks,
            "zero_fraction": template.zero_fraction, "extents": template.extents,
            "data": [[len(r), len(b)] for r, b in zip(template.data_raw, template.data_blocks, strict=True)],
        }).encode()
        body = b"".join(part for pair in zip(template.data_raw, template.data_blocks, strict=True) for part in pair)
        vmid, generation = path.name.split("-", 2)[:2]
        for old in self.root.glob(f"{vmid}-*.tpl"):  # an older generation's data is never backed up again
            if old.name.split("-", 2)[1] != generation:
                old.unlink(missing_ok=True)
        write_atomic(path, _MAGIC + len(head).to_bytes(4, "big") + head + body, fsync=False)

    def remove_temporary(self) -> None:
        """write_atomic's temporary files of a store a kill cut short."""
        if self.root.is_dir():
            for temp in self.root.glob(".*"):
                temp.unlink(missing_ok=True)


def content_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]
