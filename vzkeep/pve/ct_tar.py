"""The CT backup archive: a tar stream whose first member is the container's config.

vzdump runs ``tar cpf - --sparse --numeric-owner --acls --xattrs ... ./etc/vzdump/pct.conf
[./etc/vzdump/pct.fw] --directory=<rootfs> ./`` (pve-container
``src/PVE/VZDump/LXC.pm``), so the first member is ``./etc/vzdump/pct.conf``, then an optional
``./etc/vzdump/pct.fw``, then the root fs as ``./...``; PVE reads the config back by matching
``^(\\./etc/vzdump/(pct|vps)\\.conf)$`` (``Storage.pm extract_vzdump_config``).

The writer uses :mod:`tarfile` in GNU format (what GNU tar writes by default). The checker is a block-level
walk of its own, because :mod:`tarfile` treats a corrupt header after the first one as the end of the archive
and would report a damaged archive as fine: here every header's checksum is verified, the data of every member
must be present, and the end-of-archive marker must be there with nothing but zero padding after it.
Extraction goes through :mod:`tarfile`, which knows every sparse and pax variant GNU tar may write.

Standard library only: this module runs on PVE nodes.
"""

from __future__ import annotations

import io
import re
import struct
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from vzkeep.pve.decompress import ExactReader

BLOCK = 512
CONFIG_MEMBER = "./etc/vzdump/pct.conf"
FIREWALL_MEMBER = "./etc/vzdump/pct.fw"
# pve-storage Storage.pm extract_vzdump_config; `vps.conf` is the legacy OpenVZ name.
CT_CONFIG_RE = re.compile(r"^(\./etc/vzdump/(pct|vps)\.conf)$")
# Pre-VMA VM backups were tars too; their first member is `qemu-server.conf`
# (qemu-server restore_tar_archive).
VM_CONFIG_RE = re.compile(r"^qemu-server\.conf$")

_ZERO_BLOCK = bytes(BLOCK)
_SIGNED_BYTES = struct.Struct("148b8x356b")
_NO_DATA_TYPES = frozenset(b"123456")  # hard link, symlink, char, block, dir, fifo: data never follows
_META_TYPES = frozenset(b"xgLK")  # pax, pax global, GNU long name, GNU long link: describe the next member
_USTAR = b"ustar\x0000"
_GNU = b"ustar  \x00"


class CtTarError(Exception):
    """The stream is not a valid CT archive: ``message`` says what, ``offset`` where (byte in the tar)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class CtFile:
    """One root-fs entry to write. ``path`` is relative to the container root (``etc/hostname``).

    A regular file takes ``data``, or ``size`` plus a ``reader`` to stream from (exactly ``size`` bytes).
    """

    path: str
    data: bytes | None = None
    size: int = 0
    reader: BinaryIO | None = None
    kind: str = "file"  # "file", "dir" or "symlink"
    target: str = ""  # symlink target
    mode: int | None = None
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class CtTarSummary:
    first_member: str
    config: bytes
    config_mtime: int
    firewall: bytes | None
    members: int
    stream_size: int


# ---------------------------------------------------------------------------------------------------------
# Writing


def _member_name(path: str) -> str:
    parts = [p for p in path.strip().split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"root fs path {path!r} must stay inside the container root (no '..')")
    return "./" + "/".join(parts) if parts else "./"


def _as_ct_file(entry: CtFile | tuple[str, object]) -> CtFile:
    if isinstance(entry, CtFile):
        return entry
    path, content = entry
    if isinstance(content, bytes | bytearray):
        return CtFile(path, data=bytes(content))
    if isinstance(content, tuple) and len(content) == 2:
        size, reader = content
        return CtFile(path, size=int(size), reader=reader)
    raise TypeError(f"{path}: expected bytes or (size, reader), got {type(content).__name__}")


def _tarinfo(
    name: str, *, kind: str, size: int, mtime: int, mode: int | None, uid: int, gid: int
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.size = size if kind == "file" else 0
    info.mtime = mtime
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""  # --numeric-owner
    return info


class _TarWriter:
    def __init__(self, tar: tarfile.TarFile, mtime: int) -> None:
        self.tar = tar
        self.mtime = mtime
        self.dirs_written: set[str] = set()

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = _tarinfo(name, kind="file", size=len(data), mtime=self.mtime, mode=mode, uid=0, gid=0)
        self.tar.addfile(info, io.BytesIO(data))

    def add_dir(self, name: str) -> None:
        if name not in self.dirs_written:
            self.dirs_written.add(name)
            self.tar.addfile(_tarinfo(name, kind="dir", size=0, mtime=self.mtime, mode=None, uid=0, gid=0))

    def add_parents(self, name: str) -> None:
        # tar walks the tree, so a directory always precedes what it contains
        parts = name[2:].split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            self.add_dir("./" + "/".join(parts[:depth]))

    def add_entry(self, entry: CtFile) -> None:
        name = _member_name(entry.path)
        if name == "./":
            return  # the root is always written first
        self.add_parents(name)
        if entry.kind == "dir":
            self.add_dir(name)
            return
        size = len(entry.data) if entry.data is not None else entry.size
        info = _tarinfo(
            name, kind=entry.kind, size=size, mtime=self.mtime, mode=entry.mode, uid=entry.uid, gid=entry.gid
        )
        if entry.kind == "symlink":
            info.linkname = entry.target
            self.tar.addfile(info)
            return
        source = io.BytesIO(entry.data) if entry.data is not None else entry.reader
        if source is None and size:
            raise ValueError(f"{entry.path}: a file of {size} bytes needs data or a reader")
        self.tar.addfile(info, source or io.BytesIO())


def write_ct_tar(
    out: BinaryIO,
    *,
    config: bytes,
    files: Iterable[CtFile | tuple[str, object]],
    mtime: int,
    firewall: bytes | None = None,
) -> None:
    """Write a CT archive as vzdump does: pct.conf, pct.fw (if given), ``./``, then the root fs entries.

    ``files`` yields ``CtFile`` or ``(path, bytes)`` / ``(path, (size, reader))``; missing parent directories
    are added before their first entry. Streams member by member, never holding a whole file set in memory.
    """
    if not config:
        raise ValueError("the CT config (pct.conf) must not be empty")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        writer = _TarWriter(tar, mtime)
        writer.add_bytes(CONFIG_MEMBER, config)
        if firewall:
            writer.add_bytes(FIREWALL_MEMBER, firewall)
        writer.add_dir("./")
        for entry in files:
            writer.add_entry(_as_ct_file(entry))


# ---------------------------------------------------------------------------------------------------------
# Checking


def _number(field: bytes, what: str, at: int) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit of the first byte is set."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value if field[0] == 0o200 else value - (1 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise CtTarError(f"member header: {what} field {field!r} is not an octal number", at) from None


def _checksum_ok(block: bytes, at: int) -> bool:
    try:
        stored = _number(block[148:156], "checksum", at + 148)
    except CtTarError:
        return False
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    if stored == unsigned:
        return True
    # some old tars summed signed chars; tarfile accepts both, so do we
    return stored == 256 + sum(_SIGNED_BYTES.unpack_from(block))


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _header_name(block: bytes) -> str:
    name = _text(block[0:100])
    if block[257:265] == _USTAR and block[345] != 0:
        name = _text(block[345:500]) + "/" + name  # POSIX ustar prefix field
    return name


def _pax_records(data: bytes, at: int) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise CtTarError("pax header: malformed record length", at) from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise CtTarError("pax header: malformed record", at)
        key, _, value = record[:-1].partition(b"=")
        records[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class _TarWalker:
    """One pass over the tar blocks; raises ``CtTarError`` at the first problem."""

    def __init__(self, src: ExactReader, first_member: re.Pattern[str]) -> None:
        self.src = src
        self.first_member = first_member
        self.members = 0
        self.first = ""
        self.config = b""
        self.config_mtime = 0
        self.firewall: bytes | None = None
        self.long_name: str | None = None
        self.pax: dict[str, str] = {}

    def run(self) -> CtTarSummary:
        while self._next_member():
            pass
        return CtTarSummary(
            first_member=self.first,
            config=self.config,
            config_mtime=self.config_mtime,
            firewall=self.firewall,
            members=self.members,
            stream_size=self.src.offset,
        )

    def _read_block(self, what: str) -> bytes:
        at = self.src.offset
        block = self.src.read(BLOCK)
        if not block and at == 0:
            raise CtTarError("empty stream: not a tar archive", 0)
        if len(block) < BLOCK:
            raise CtTarError(
                f"truncated: the stream ends where {what} should be", at + len(block)
            )
        return block

    def _next_member(self) -> bool:
        at = self.src.offset
        block = self._read_block("a member header or the end-of-archive marker")
        if block == _ZERO_BLOCK:
            self._check_end(at)
            return False
        if not _checksum_ok(block, at):
            what = "not a tar archive" if at == 0 else "the member header is corrupt"
            raise CtTarError(f"header checksum mismatch: {what}", at)
        if block[257:265] not in (_USTAR, _GNU):
            raise CtTarError(f"member header without ustar magic ({block[257:265]!r})", at + 257)
        typeflag = block[156]
        size = int(self.pax.get("size", _number(block[124:136], "size", at + 124)))
        if typeflag in _META_TYPES:
            self._read_meta(typeflag, size, at)
            return True
        name = self.long_name or self.pax.get("path") or _header_name(block)
        self.long_name, self.pax = None, {}
        if typeflag == ord("S") and block[482]:
            self._skip_sparse_extensions()
        data_size = 0 if typeflag in _NO_DATA_TYPES else size
        self.members += 1
        self._member_data(name, data_size, _number(block[136:148], "mtime", at + 136), at)
        return True

    def _read_meta(self, typeflag: int, size: int, at: int) -> None:
        data = self._read_data(f"{chr(typeflag)} header data", size)
        if typeflag == ord("L"):
            self.long_name = _text(data)
        elif typeflag == ord("x"):
            self.pax = _pax_records(data, at)

    def _skip_sparse_extensions(self) -> None:
        # GNU sparse maps longer than 4 entries continue in extra 512-byte headers, flagged at byte 504
        while self._read_block("a GNU sparse extension header")[504]:
            pass

    def _read_data(self, what: str, size: int) -> bytes:
        start = self.src.offset
        data = self.src.read(size)
        if len(data) < size:
            raise CtTarError(
                f"truncated inside {what}: {len(data)} of {size} bytes present", start + len(data)
            )
        self._skip_padding(what, size)
        return data

    def _skip_padding(self, what: str, size: int) -> None:
        padding = -size % BLOCK
        if padding and self.src.skip(padding) < padding:
            raise CtTarError(f"truncated in the padding after {what}", self.src.offset)

    def _member_data(self, name: str, size: int, mtime: int, at: int) -> None:
        if self.members == 1:
            self.first = name
            if not self.first_member.match(name):
                raise CtTarError(
                    f"first member is {name!r}, expected one matching {self.first_member.pattern}: "
                    "PVE reads the guest config from the first member",
                    at,
                )
            self.config = self._read_data(f"member {name!r}", size)
            self.config_mtime = mtime
            return
        if self.members == 2 and name == FIREWALL_MEMBER:
            self.firewall = self._read_data(f"member {name!r}", size)
            return
        start = self.src.offset
        got = self.src.skip(size)
        if got < size:
            raise CtTarError(
                f"truncated inside member {name!r}: {got} of {size} data bytes present", start + got
            )
        self._skip_padding(f"member {name!r}", size)

    def _check_end(self, at: int) -> None:
        """A zero block ends the archive: a second one follows, then only zero padding to the record size."""
        if self.members == 0:
            raise CtTarError("the archive holds no member: the config member is missing", at)
        second = self.src.read(BLOCK)
        if len(second) < BLOCK:
            raise CtTarError("truncated: the end-of-archive marker (two zero blocks) is incomplete", at)
        zeroed = "non-zero data after an all-zero header block: a member header is zeroed or missing"
        if second != _ZERO_BLOCK:
            raise CtTarError(zeroed, at)
        for view in self.src.chunks(1 << 62):  # the rest is padding to the record size: zeros only
            if view.tobytes().count(0) != len(view):
                raise CtTarError(zeroed, at)


def check_ct_tar(
    stream: BinaryIO | ExactReader, *, first_member: re.Pattern[str] = CT_CONFIG_RE
) -> CtTarSummary:
    """Walk a whole tar stream: valid headers, first member = the config, every byte present, a clean end.

    Raises ``CtTarError`` naming the first problem and its byte offset in the tar stream.
    """
    src = stream if isinstance(stream, ExactReader) else ExactReader(stream)
    return _TarWalker(src, first_member).run()


# ---------------------------------------------------------------------------------------------------------
# Extracting


MemberSink = Callable[[tarfile.TarInfo, "BinaryIO | None"], None]


def extract_ct_tar(stream: BinaryIO | ExactReader, sink: MemberSink) -> bytes:
    """Stream every member to ``sink(info, reader)`` (``reader`` is None for non-files and must be consumed
    inside the call); return the config (first member). Check the archive first when corruption matters:
    :mod:`tarfile` stops quietly at a corrupt header."""
    src = stream if isinstance(stream, ExactReader) else ExactReader(stream)
    config: bytes | None = None
    with tarfile.open(fileobj=src, mode="r|", bufsize=1 << 20) as tar:  # type: ignore[call-overload]
        for info in tar:
            reader = tar.extractfile(info) if info.isfile() else None
            if config is None:
                if not CT_CONFIG_RE.match(info.name) or reader is None:
                    raise CtTarError(f"first member is {info.name!r}, expected {CONFIG_MEMBER!r}", 0)
                config = reader.read()
                reader = io.BytesIO(config)
            sink(info, reader)
    if config is None:
        raise CtTarError("the archive holds no member: the config member is missing", 0)
    return config


def read_ct_files(stream: BinaryIO | ExactReader) -> tuple[bytes, dict[str, bytes]]:
    """The config and every regular file's content by member name: for small archives (tests, sandbox)."""
    files: dict[str, bytes] = {}

    def keep(info: tarfile.TarInfo, reader: BinaryIO | None) -> None:
        if reader is not None:
            files[info.name] = reader.read()

    config = extract_ct_tar(stream, keep)
    return config, files
