"""One archive, one pass: the compression layer, the VMA or tar structure, the name's time, the SHA-256.

The file is read once. Its SHA-256 is computed from the same chunks that feed the decompressor, whose
verdict is the compression-layer check (each format carries its checksum: zstd XXH64, gzip CRC32, lzop
adler32); the decompressed stream is checked as VMA (pve-qemu ``vma_spec.txt``, ``vma-writer.c``) or as a
CT tar (pve-container ``PVE/VZDump/LXC.pm``); the time in the file name is compared with the time inside.

The name's time is node-local (pve-manager ``PVE/VZDump.pm`` names the archive with ``strftime`` in the
node's zone; pve-storage ``PVE/Storage.pm`` ``archive_info`` reads it back with ``timelocal``). Without the
node's zone that comparison cannot be made: it is then reported as not checked, never as a problem.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from vzkeep.pve import archive, ct_tar, vma
from vzkeep.pve.decompress import ExactReader, open_stream

# Bumped whenever a check changes what it may find: results of an older checker are read again.
CHECKER_VERSION = 2

# The VMA header's ctime is time(NULL) when vma-writer.c writes the header, shortly after the task start
# that the file name records (pve-manager PVE/VZDump.pm takes the name's time at the task start, then
# starts the backup). A CT's pct.conf is written into the temp dir at the same moment. Before the name's
# time only clock steps fit.
CTIME_MAX_EARLY = 60
CTIME_MAX_LATE = 900

TIME_NOT_CHECKED = ("name/time not checked: the node's time zone is unknown (connect with --sandbox or "
                    "--endpoint, use --storage, or give --tz)")


@dataclass
class VerifyResult:
    path: str
    ok: bool
    problems: list[str]
    sha256: str
    size: int
    mtime: float
    verified_at: int
    format: str | None
    compression: str | None
    bytes_read: int
    mtime_ns: int = 0
    inode: int = 0
    volid: str | None = None
    guest_type: str | None = None
    vmid: int | None = None
    content_ctime: int | None = None  # VMA header ctime, or the mtime of pct.conf in a CT tar
    zone: str | None = None  # the node's zone the name was read in; None: unknown, the name/time not checked
    notes: list[str] = field(default_factory=list)  # what was not checked, and why
    checker: int = CHECKER_VERSION
    cached: bool = field(default=False, compare=False)

    @property
    def identity(self) -> tuple[int, int, int]:
        """What tells one file's bytes from another's without reading them: (size, mtime_ns, inode)."""
        return self.size, self.mtime_ns, self.inode

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> VerifyResult:
        known = {f.name for f in fields(cls)} - {"cached"}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


class _Pass:
    """State of one read of one file: hash, byte count, progress."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.sha = hashlib.sha256()
        self.progress = progress
        self.bytes = 0

    def on_chunk(self, chunk: memoryview) -> None:
        self.sha.update(chunk)
        self.bytes += len(chunk)
        if self.progress is not None:
            self.progress(len(chunk))


def _check_structure(info: archive.ArchiveInfo, src: ExactReader) -> tuple[list[str], int | None]:
    """Structural problems of the decompressed stream, and the time recorded inside the archive."""
    where = " of the decompressed stream" if info.compression else ""
    problems: list[str] = []
    if info.format == "vma":
        if info.type != "qemu":
            problems.append(f"name says a {info.type} backup, but .vma archives hold VMs (qemu) only")
        try:
            return problems, vma.check_vma(src).header.ctime
        except vma.VmaError as exc:
            return [*problems, f"VMA: {exc.message} (at byte {exc.offset}{where})"], None
    pattern = ct_tar.VM_CONFIG_RE if info.type == "qemu" else ct_tar.CT_CONFIG_RE
    try:
        return problems, ct_tar.check_ct_tar(src, first_member=pattern).config_mtime
    except ct_tar.CtTarError as exc:
        return [f"tar: {exc.message} (at byte {exc.offset}{where})"], None


def _time_problem(info: archive.ArchiveInfo, content_ctime: int | None, zone: str) -> str | None:
    if not info.is_std_name or info.ctime is None or content_ctime is None:
        return None
    delta = content_ctime - info.ctime
    if -CTIME_MAX_EARLY <= delta <= CTIME_MAX_LATE:
        return None
    inside = "VMA header ctime" if info.format == "vma" else "pct.conf mtime"
    return (
        f"time mismatch: the name says {utc(info.ctime)} (read in {zone}) but the {inside} is "
        f"{utc(content_ctime)}, {delta:+d} s apart (allowed -{CTIME_MAX_EARLY}..+{CTIME_MAX_LATE} s): "
        "renamed, or the node's time zone is not the one used (pass --tz)"
    )


def utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _one_pass(path: str, size: int, info: archive.ArchiveInfo | None, one: _Pass, problems: list[str]
              ) -> tuple[list[str], int | None, int]:
    content_ctime = None
    structure: list[str] = []
    with open(path, "rb") as source, open_stream(
        source, info.compression if info else None, size=size, on_chunk=one.on_chunk
    ) as stream:
        if info is not None:
            structure, content_ctime = _check_structure(info, ExactReader(stream))
        # close() drains the rest first: after a structural error too, the hash and the compressor must see
        # the whole file. The compressor's verdict comes first: structural errors usually follow from it.
        problems = [*problems, *stream.close(), *structure]
        return problems, content_ctime, stream.raw_bytes


def _parse_name(path: str, zone: str | None) -> tuple[archive.ArchiveInfo | None, str | None]:
    # The name's time is read in the node's zone when known, else in UTC only to parse it (it is not used).
    try:
        return archive.parse(os.path.basename(path), tz=zone or "UTC"), None
    except ValueError as exc:
        return None, f"name: {exc}; PVE would not list this file as a backup"


def verify_archive(
    path: str | os.PathLike[str],
    *,
    tz: str | None = None,
    volid: str | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> VerifyResult:
    """Check one archive in one pass. ``tz`` is the zone of the node that wrote it (None: unknown, so the
    name/time check is not made); ``clock`` dates the result when the pass ends (default: this machine's;
    the cluster's when known, the clock its backups and the exporter's ages are on). Problems (read errors
    included) are findings in the result; a missing decompressor raises
    ``vzkeep.pve.decompress.DecompressError``, a missing file ``FileNotFoundError``."""
    path = os.path.abspath(path)
    st = os.stat(path)
    info, name_problem = _parse_name(path, tz)
    one = _Pass(progress)
    problems: list[str] = [name_problem] if name_problem else []
    content_ctime, bytes_read = None, 0
    try:
        problems, content_ctime, bytes_read = _one_pass(path, st.st_size, info, one, problems)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # a bad sector or a dropped NAS mount is a finding about this archive, not a crash of the run
        problems.append(f"read error after {one.bytes} bytes: {exc.strerror or exc}")
        bytes_read = one.bytes
    notes = []
    if info is not None and info.is_std_name and not problems:
        if tz is None:
            notes.append(TIME_NOT_CHECKED)
        elif late := _time_problem(info, content_ctime, tz):
            problems.append(late)
    return VerifyResult(
        path=path,
        ok=not problems,
        problems=problems,
        sha256=one.sha.hexdigest(),
        size=st.st_size,
        mtime=st.st_mtime,
        mtime_ns=st.st_mtime_ns,
        inode=st.st_ino,
        verified_at=int(clock()),
        format=info.format if info else None,
        compression=info.compression if info else None,
        bytes_read=bytes_read,
        volid=volid,
        guest_type=info.type if info else None,
        vmid=info.vmid if info else None,
        content_ctime=content_ctime,
        zone=tz,
        notes=notes,
    )
