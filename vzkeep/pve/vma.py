"""VMA, the archive format of VM backups: a streaming writer, and a streaming reader that checks and extracts.

Layout and checks follow pve-qemu's ``vma_spec.txt``, ``vma-writer.c`` and ``vma-reader.c``:
one header (``VMA\\0``, MD5 over the whole header, a blob table of config files and device names), then
extents of at most 59 clusters, each a 512-byte header (``VMAE``, its own MD5, one ``blockinfo`` per
cluster) followed by the non-zero 4 KiB blocks of those clusters. The writer emits a blockinfo for every
cluster of every device, so the reader can prove no cluster is missing. VMA has no checksum over the data
blocks (``vma_spec.txt``: the MD5s cover the header and the extent headers only): on a plain ``.vma`` only
structural damage is detectable; compressed archives add the compressor's checksum (zstd's content checksum,
gzip's CRC32, lzop's adler32).

Standard library only: this module runs on PVE nodes.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vzkeep.pve.decompress import ExactReader

MAGIC = b"VMA\0"
EXTENT_MAGIC = b"VMAE"
VERSION = 1
BLOCK_SIZE = 4096
CLUSTER_SIZE = 65536
BLOCKS_PER_CLUSTER = CLUSTER_SIZE // BLOCK_SIZE
EXTENT_HEADER_SIZE = 512
BLOCKS_PER_EXTENT = 59  # blockinfo slots per extent header
# vma-writer.c flushes an extent as soon as 58 slots are used (`outbuf_count >= VMA_BLOCKS_PER_EXTENT - 1`),
# so real archives never fill the 59th slot; we write the same way and accept 59 on read.
WRITER_CLUSTERS_PER_EXTENT = BLOCKS_PER_EXTENT - 1
HEADER_FIXED_SIZE = 12288  # sizeof(VmaHeader)
MAX_HEADER_SIZE = 8 * CLUSTER_SIZE  # the writer builds the header in an 8-cluster buffer
MAX_CONFIGS = 256
MAX_DEVICES = 254  # dev_id 1..254; 0 means "unused", 255 is reserved by the writer
MAX_BLOB = 65535  # blob lengths are 16 bit
CONFIG_NAME = "qemu-server.conf"
FIREWALL_NAME = "qemu-server.fw"
VMSTATE = "vmstate"

# magic, version, uuid, ctime, md5, blob_buffer_offset, blob_buffer_size, header_size
_HEAD = struct.Struct(">4sI16sq16sIII")
_POINTERS = struct.Struct(">256I")
_CONFIG_NAMES_AT = 2044
_CONFIG_DATA_AT = 3068
_DEV_INFO_AT = 4096
_DEV_INFO = struct.Struct(">IIQQQ")  # devname_ptr, reserved, size, reserved[2]
_EXTENT = struct.Struct(">4sHH16s16s59Q")  # magic, reserved, block_count, uuid, md5, blockinfo[59]
_MD5_FIELD = slice(32, 48)  # same place in the header and in extent headers
_EXTENT_MD5_FIELD = slice(24, 40)
_ZERO_BLOCK = bytes(BLOCK_SIZE)
_ZERO_CLUSTER = bytes(CLUSTER_SIZE)
_ZERO_MD5 = bytes(16)


class VmaError(Exception):
    """The archive is not a valid VMA stream: ``message`` says what, ``offset`` where (byte in the stream)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class VmaDevice:
    """A disk to write: ``read_cluster(i)`` returns the 64 KiB cluster ``i`` (shorter at the end is fine)."""

    name: str
    size: int
    read_cluster: Callable[[int], bytes]


@dataclass(frozen=True)
class VmaDeviceInfo:
    dev_id: int
    name: str
    size: int

    @property
    def cluster_count(self) -> int:
        return -(-self.size // CLUSTER_SIZE)


@dataclass(frozen=True)
class VmaHeader:
    uuid: bytes
    ctime: int
    header_size: int
    configs: dict[str, bytes]
    devices: dict[int, VmaDeviceInfo]

    @property
    def config(self) -> bytes:
        return self.configs[CONFIG_NAME]

    @property
    def firewall(self) -> bytes | None:
        return self.configs.get(FIREWALL_NAME)


@dataclass(frozen=True)
class VmaSummary:
    header: VmaHeader
    extents: int
    clusters: int
    stream_size: int  # bytes of the (decompressed) VMA stream


# ---------------------------------------------------------------------------------------------------------
# Writing


class _BlobTable:
    """The header's blob buffer, grown exactly like ``allocate_header_blob`` in vma-writer.c."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 1  # offset 0 means "no blob", so the table starts at 1

    def add(self, data: bytes) -> int:
        if len(data) > MAX_BLOB:
            raise ValueError(f"a VMA header blob holds at most {MAX_BLOB} bytes, got {len(data)}")
        if len(self.buf) < self.pos + len(data) + 2:
            self.buf += bytes(-(-(len(data) + 2) // 512) * 512)
        ptr = self.pos
        self.buf[ptr : ptr + 2] = len(data).to_bytes(2, "little")  # the one little-endian field: a blob's size
        self.buf[ptr + 2 : ptr + 2 + len(data)] = data
        self.pos += len(data) + 2
        return ptr

    def add_string(self, text: str) -> int:
        return self.add(text.encode() + b"\0")  # strings keep their NUL; the reader checks it


def build_header(
    configs: Sequence[tuple[str, bytes]], devices: Sequence[tuple[str, int]], *, uuid: bytes, ctime: int
) -> bytes:
    """The VMA header for these config blobs and (name, size) devices, dev_ids numbered from 1."""
    blobs = _BlobTable()
    names, datas = [0] * MAX_CONFIGS, [0] * MAX_CONFIGS
    for i, (name, data) in enumerate(configs):
        names[i] = blobs.add_string(os.path.basename(name))
        datas[i] = blobs.add(data)
    dev_ptrs = [blobs.add_string(name) for name, _size in devices]
    header_size = HEADER_FIXED_SIZE + len(blobs.buf)
    buf = bytearray(header_size)
    # blob_buffer_size is the used length, not the padded one, as the real writer stores it (vma-writer.c)
    _HEAD.pack_into(buf, 0, MAGIC, VERSION, uuid, ctime, _ZERO_MD5, HEADER_FIXED_SIZE, blobs.pos, header_size)
    _POINTERS.pack_into(buf, _CONFIG_NAMES_AT, *names)
    _POINTERS.pack_into(buf, _CONFIG_DATA_AT, *datas)
    for dev_id, ((_name, size), ptr) in enumerate(zip(devices, dev_ptrs, strict=True), start=1):
        _DEV_INFO.pack_into(buf, _DEV_INFO_AT + 32 * dev_id, ptr, 0, size, 0, 0)
    buf[HEADER_FIXED_SIZE:] = blobs.buf
    buf[_MD5_FIELD] = hashlib.md5(buf).digest()
    return bytes(buf)


class _ExtentWriter:
    """Collects clusters into extents and writes each one when its blockinfo slots are used up."""

    def __init__(self, out: BinaryIO, uuid: bytes) -> None:
        self.out = out
        self.uuid = uuid
        self.infos: list[int] = []
        self.blocks: list[bytes] = []
        self.block_count = 0

    def add(self, dev_id: int, cluster: int, data: bytes) -> None:
        if len(self.infos) >= WRITER_CLUSTERS_PER_EXTENT:
            self.flush()
        mask = 0
        if data != _ZERO_CLUSTER:  # an all-zero cluster is a blockinfo with mask 0 and no data
            for j in range(BLOCKS_PER_CLUSTER):
                block = data[j * BLOCK_SIZE : (j + 1) * BLOCK_SIZE]
                if block != _ZERO_BLOCK:
                    mask |= 1 << j
                    self.blocks.append(block)
                    self.block_count += 1
        self.infos.append(mask << 48 | dev_id << 32 | cluster)

    def flush(self) -> None:
        self.out.write(extent_header(self.uuid, self.block_count, self.infos))
        self.out.writelines(self.blocks)
        self.infos, self.blocks, self.block_count = [], [], 0


def extent_header(uuid: bytes, block_count: int, infos: Sequence[int]) -> bytes:
    """An extent's 512-byte header: ``VMAE``, the count of data blocks that follow, the archive's uuid, its
    own MD5, and one blockinfo per cluster (unused slots zero)."""
    slots = [*infos, *[0] * (BLOCKS_PER_EXTENT - len(infos))]
    head = bytearray(_EXTENT.pack(EXTENT_MAGIC, 0, block_count, uuid, _ZERO_MD5, *slots))
    head[_EXTENT_MD5_FIELD] = hashlib.md5(head).digest()
    return bytes(head)


def extent_layout(stream: bytes) -> list[tuple[int, int, tuple[int, ...]]]:
    """(offset of its data blocks, block count, blockinfos) of every extent of a whole VMA stream in memory."""
    header = read_header(io.BytesIO(stream))
    out, pos = [], header.header_size
    while pos < len(stream):
        block_count, infos = _parse_extent_header(stream[pos : pos + EXTENT_HEADER_SIZE], header.uuid, len(out),
                                                  pos)
        out.append((pos + EXTENT_HEADER_SIZE, block_count, infos))
        pos += EXTENT_HEADER_SIZE + block_count * BLOCK_SIZE
    return out


def _cluster_bytes(device: VmaDevice, cluster: int) -> bytes:
    """The cluster as exactly 64 KiB, zero beyond the end of the device."""
    data = bytes(device.read_cluster(cluster))
    if len(data) > CLUSTER_SIZE:
        raise ValueError(f"device {device.name}: read_cluster({cluster}) gave {len(data)} bytes, max 65536")
    remaining = device.size - cluster * CLUSTER_SIZE
    if len(data) > remaining:
        data = data[:remaining]
    return data if len(data) == CLUSTER_SIZE else data + bytes(CLUSTER_SIZE - len(data))


def _validate_devices(devices: Sequence[VmaDevice]) -> None:
    if not devices:
        raise ValueError("a VMA archive needs at least one device")
    if len(devices) > MAX_DEVICES:
        raise ValueError(f"a VMA archive holds at most {MAX_DEVICES} devices, got {len(devices)}")
    for device in devices:
        if device.size <= 0 or not device.name:
            raise ValueError(f"device {device.name!r}: needs a name and a size > 0, got size {device.size}")
        if device.size // CLUSTER_SIZE >= 1 << 32:
            raise ValueError(f"device {device.name}: {device.size} bytes exceed VMA's 32-bit cluster numbers")


def write_vma(
    out: BinaryIO,
    *,
    config: bytes,
    devices: Sequence[VmaDevice],
    ctime: int,
    uuid: bytes | None = None,
    firewall: bytes | None = None,
) -> None:
    """Write a VMA archive as vzdump does: ``qemu-server.conf`` (+ ``qemu-server.fw``), every cluster of
    every device in order. Streams: holds one extent (< 4 MiB) at a time, never a whole disk."""
    _validate_devices(devices)
    if not config:
        raise ValueError("the VM config (qemu-server.conf) must not be empty")
    configs = [(CONFIG_NAME, config)] + ([(FIREWALL_NAME, firewall)] if firewall else [])
    uuid = uuid or uuidlib.uuid4().bytes
    out.write(build_header(configs, [(d.name, d.size) for d in devices], uuid=uuid, ctime=ctime))
    extents = _ExtentWriter(out, uuid)
    for dev_id, device in enumerate(devices, start=1):
        for cluster in range(-(-device.size // CLUSTER_SIZE)):
            extents.add(dev_id, cluster, _cluster_bytes(device, cluster))
    extents.flush()  # vma_writer_close_stream flushes the last, partly filled extent


# ---------------------------------------------------------------------------------------------------------
# Reading


def _reader(stream: BinaryIO | ExactReader) -> ExactReader:
    return stream if isinstance(stream, ExactReader) else ExactReader(stream)


def read_header(stream: BinaryIO | ExactReader) -> VmaHeader:
    """Read and check the header (magic, version, MD5, blob and device tables, as vma-reader.c does); the stream
    is left at the first extent."""
    src = _reader(stream)
    fixed = src.read(HEADER_FIXED_SIZE)
    if not fixed:
        raise VmaError("empty stream: no VMA header", 0)
    if fixed[:4] != MAGIC:
        raise VmaError(f"not a VMA archive: magic is {fixed[:4]!r}, expected {MAGIC!r}", 0)
    if len(fixed) < HEADER_FIXED_SIZE:
        raise VmaError(f"truncated header: {len(fixed)} of {HEADER_FIXED_SIZE} bytes", len(fixed))
    _magic, version, uuid, ctime, md5, blob_offset, blob_size, header_size = _HEAD.unpack_from(fixed)
    if not HEADER_FIXED_SIZE < header_size <= MAX_HEADER_SIZE:
        raise VmaError(f"header_size {header_size} is outside {HEADER_FIXED_SIZE + 1}..{MAX_HEADER_SIZE}", 56)
    rest = src.read(header_size - HEADER_FIXED_SIZE)
    data = bytearray(fixed + rest)
    if len(data) < header_size:
        raise VmaError(f"truncated header: {len(data)} of {header_size} bytes", len(data))
    data[_MD5_FIELD] = _ZERO_MD5
    if hashlib.md5(data).digest() != md5:
        raise VmaError(f"header MD5 mismatch: bytes 0..{header_size} of the header are corrupt", 32)
    if version != VERSION:
        raise VmaError(f"unsupported VMA version {version}, only version 1 exists", 4)
    blobs = _parse_blobs(data, blob_offset, blob_size, header_size)
    devices = _parse_devices(data, blobs)
    configs = _parse_configs(data, blobs)
    return VmaHeader(uuid=uuid, ctime=ctime, header_size=header_size, configs=configs, devices=devices)


def _parse_blobs(data: bytearray, offset: int, size: int, header_size: int) -> dict[int, bytes]:
    """Blob pointer -> blob bytes, walked like vma_reader_read_head does."""
    if offset + 1 <= HEADER_FIXED_SIZE:
        raise VmaError(f"blob buffer offset {offset} lies inside the fixed header (must be >= 12288)", 48)
    end = offset + size
    if end > header_size:
        raise VmaError(f"blob buffer {offset}+{size} runs past the header end {header_size}", 52)
    blobs: dict[int, bytes] = {}
    pos = offset + 1
    while pos + 2 <= end:
        length = data[pos] | data[pos + 1] << 8
        if pos + 2 + length <= end:
            blobs[pos - offset] = bytes(data[pos + 2 : pos + 2 + length])
        pos += length + 2
    return blobs


def _blob_string(blobs: dict[int, bytes], ptr: int) -> str | None:
    blob = blobs.get(ptr)
    if not blob or blob[-1] != 0:
        return None
    return blob[:-1].decode(errors="replace")


def _parse_devices(data: bytearray, blobs: dict[int, bytes]) -> dict[int, VmaDeviceInfo]:
    devices: dict[int, VmaDeviceInfo] = {}
    for dev_id in range(1, 256):
        at = _DEV_INFO_AT + 32 * dev_id
        ptr, _reserved, size, _r1, _r2 = _DEV_INFO.unpack_from(data, at)
        if not size:
            continue
        name = _blob_string(blobs, ptr)
        if name is None:
            raise VmaError(f"dev_info[{dev_id}]: name pointer {ptr} is not a NUL-terminated blob", at)
        devices[dev_id] = VmaDeviceInfo(dev_id=dev_id, name=name, size=size)
    if not devices:
        raise VmaError("the header lists no device: the archive contains no disk data", _DEV_INFO_AT)
    return devices


def _parse_configs(data: bytearray, blobs: dict[int, bytes]) -> dict[str, bytes]:
    names = _POINTERS.unpack_from(data, _CONFIG_NAMES_AT)
    datas = _POINTERS.unpack_from(data, _CONFIG_DATA_AT)
    configs: dict[str, bytes] = {}
    for slot, (name_ptr, data_ptr) in enumerate(zip(names, datas, strict=True)):
        if not (name_ptr and data_ptr):
            continue
        name = _blob_string(blobs, name_ptr)
        blob = blobs.get(data_ptr)
        if name is None or blob is None:
            at = _CONFIG_NAMES_AT + 4 * slot
            raise VmaError(f"config slot {slot}: pointers {name_ptr}/{data_ptr} do not resolve", at)
        configs[name] = blob
    if CONFIG_NAME not in configs:
        found = ", ".join(configs) or "none"
        at = _CONFIG_NAMES_AT
        raise VmaError(f"config blob {CONFIG_NAME} missing (found: {found}); restore needs it", at)
    return configs


class _ClusterTracker:
    """Which clusters of which device were seen; the blockinfo checks (each cluster once, on a known device)."""

    def __init__(self, header: VmaHeader) -> None:
        self.devices = header.devices
        disks = [d for d in header.devices.values() if d.name != VMSTATE]
        self.seen = {d.dev_id: bytearray(d.cluster_count) for d in disks}  # one byte per cluster
        self.vmstate_next = 0
        self.clusters = 0

    def account(
        self, infos: Sequence[int], block_count: int, extent: int, at: int
    ) -> list[tuple[int, int, int]]:
        """Check one extent's blockinfos; return its (dev_id, cluster, mask) entries."""
        entries = []
        used = 0
        for slot, info in enumerate(infos):
            dev_id = info >> 32 & 0xFF
            if not dev_id:
                continue
            cluster, mask = info & 0xFFFFFFFF, info >> 48
            where = f"extent {extent} (slot {slot})"
            self._check_cluster(dev_id, cluster, mask, where, at)
            used += mask.bit_count()  # a full mask 0xffff counts 16, as the reader expects
            entries.append((dev_id, cluster, mask))
        if used != block_count:
            raise VmaError(
                f"extent {extent}: its blockinfo masks describe {used} data blocks but block_count is "
                f"{block_count}",
                at,
            )
        self.clusters += len(entries)
        return entries

    def _check_cluster(self, dev_id: int, cluster: int, mask: int, where: str, at: int) -> None:
        device = self.devices.get(dev_id)
        if device is None:
            known = ", ".join(str(i) for i in self.devices)
            raise VmaError(f"{where}: dev_id {dev_id} is not a device of this archive (devices: {known})", at)
        if device.name == VMSTATE:
            if cluster != self.vmstate_next:
                expected = self.vmstate_next
                raise VmaError(f"{where}: vmstate cluster {cluster} out of order (expected {expected})", at)
            self.vmstate_next += 1
            return
        if cluster * CLUSTER_SIZE >= device.size:
            end = f"the device end ({device.size} bytes)"
            raise VmaError(f"{where}: {device.name} cluster {cluster} lies beyond {end}", at)
        seen = self.seen[dev_id]
        if seen[cluster]:
            raise VmaError(f"{where}: duplicate cluster {cluster} of {device.name}", at)
        seen[cluster] = 1
        blocks_inside = -(-(device.size - cluster * CLUSTER_SIZE) // BLOCK_SIZE)
        if blocks_inside < BLOCKS_PER_CLUSTER and mask >> blocks_inside:
            raise VmaError(f"{where}: {device.name} cluster {cluster} has blocks beyond the device end", at)

    def missing(self) -> list[str]:
        problems = []
        for dev_id, seen in self.seen.items():
            lost = seen.count(0)
            if not lost:
                continue
            first, pos = [], seen.find(0)
            while pos != -1 and len(first) < 5:
                first.append(str(pos))
                pos = seen.find(0, pos + 1)
            device = self.devices[dev_id]
            problems.append(
                f"{device.name}: {lost} of {len(seen)} clusters missing (first: {', '.join(first)})"
            )
        return problems


def _parse_extent_header(head: bytes, uuid: bytes, extent: int, at: int) -> tuple[int, tuple[int, ...]]:
    magic, reserved, block_count, ext_uuid, md5, *infos = _EXTENT.unpack(head)
    if magic != EXTENT_MAGIC:
        raise VmaError(f"extent {extent}: magic is {magic!r}, expected {EXTENT_MAGIC!r}", at)
    zeroed = bytearray(head)
    zeroed[_EXTENT_MD5_FIELD] = _ZERO_MD5
    if hashlib.md5(zeroed).digest() != md5:
        raise VmaError(f"extent {extent}: header MD5 mismatch (the 512-byte extent header is corrupt)", at)
    if ext_uuid != uuid:
        raise VmaError(f"extent {extent}: uuid {ext_uuid.hex()} differs from the header's {uuid.hex()}", at)
    if reserved:
        raise VmaError(f"extent {extent}: reserved field is {reserved}, expected 0", at)
    return block_count, tuple(infos)


Sink = Callable[[str, int, memoryview], None]


class VmaReader:
    """Reads a VMA stream once: the header on construction, then ``check()`` or ``extract(sink)``.

    Both walk every extent with every check above and raise ``VmaError`` at the first problem.
    ``extract`` calls ``sink(device_name, byte_offset, data)`` for each stored (non-zero) run of data;
    blocks not stored are zero, so a sink writing into a sparse file of the device's size is complete.
    """

    def __init__(self, stream: BinaryIO | ExactReader) -> None:
        self._src = _reader(stream)
        self.header = read_header(self._src)

    def check(self) -> VmaSummary:
        return self._walk(None)

    def extract(self, sink: Sink) -> VmaSummary:
        return self._walk(sink)

    def _walk(self, sink: Sink | None) -> VmaSummary:
        src, tracker, extent = self._src, _ClusterTracker(self.header), 0
        while True:
            at = src.offset
            head = src.read(EXTENT_HEADER_SIZE)
            if not head:
                break
            if len(head) < EXTENT_HEADER_SIZE:
                raise VmaError(f"extent {extent}: truncated header, {len(head)} of 512 bytes", at)
            block_count, infos = _parse_extent_header(head, self.header.uuid, extent, at)
            entries = tracker.account(infos, block_count, extent, at)
            size = block_count * BLOCK_SIZE
            got = src.skip(size) if sink is None else self._deliver(entries, src.read(size), size, sink)
            if got < size:
                raise VmaError(f"extent {extent}: truncated, {got} of {size} data bytes present", src.offset)
            extent += 1
        if missing := tracker.missing():
            raise VmaError("incomplete archive: " + "; ".join(missing), src.offset)
        return VmaSummary(self.header, extents=extent, clusters=tracker.clusters, stream_size=src.offset)

    def _deliver(self, entries: list[tuple[int, int, int]], data: bytes, size: int, sink: Sink) -> int:
        if len(data) < size:
            return len(data)  # nothing is handed out from a truncated extent
        view, pos = memoryview(data), 0
        for dev_id, cluster, mask in entries:
            device = self.header.devices[dev_id]
            limit = None if device.name == VMSTATE else device.size
            base = cluster * CLUSTER_SIZE
            if mask == 0xFFFF:
                _emit(sink, device.name, base, view[pos : pos + CLUSTER_SIZE], limit)
                pos += CLUSTER_SIZE
                continue
            for j in range(BLOCKS_PER_CLUSTER):
                if mask >> j & 1:
                    _emit(sink, device.name, base + j * BLOCK_SIZE, view[pos : pos + BLOCK_SIZE], limit)
                    pos += BLOCK_SIZE
        return len(data)


def _emit(sink: Sink, name: str, offset: int, data: memoryview, limit: int | None) -> None:
    if limit is not None and offset + len(data) > limit:
        data = data[: limit - offset]
    sink(name, offset, data)


def read_vma(stream: BinaryIO | ExactReader) -> VmaReader:
    """Open a VMA stream: its header is read and checked now; then ``.check()`` or ``.extract(sink)``."""
    return VmaReader(stream)


def check_vma(stream: BinaryIO | ExactReader) -> VmaSummary:
    """Check a whole VMA stream (header, extents, every cluster present); raise ``VmaError`` naming the first
    problem and where."""
    return VmaReader(stream).check()


def extract_devices(stream: BinaryIO | ExactReader, sink: Sink) -> VmaSummary:
    """Check and extract in one pass; see ``VmaReader``. Returns the summary (configs in ``.header``)."""
    return VmaReader(stream).extract(sink)


def extract_to_directory(
    stream: BinaryIO | ExactReader, directory: str | os.PathLike[str]
) -> dict[str, Path]:
    """Extract every device to ``<directory>/<device>.raw`` (sparse, exactly the device's size).

    Data is written as it streams, so a corrupt archive leaves partial files: check first when that matters.
    """
    reader = VmaReader(stream)
    root = Path(directory)
    paths = {d.name: root / f"{d.name}.raw" for d in reader.header.devices.values()}
    files = {}
    try:
        for device in reader.header.devices.values():
            handle = open(paths[device.name], "wb")  # noqa: SIM115 - closed in finally, one per device
            files[device.name] = handle
            handle.truncate(device.size)
        reader.extract(lambda name, offset, data: os.pwrite(files[name].fileno(), data, offset))
    finally:
        for handle in files.values():
            handle.close()
    return paths
