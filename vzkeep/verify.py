"""Verify vzdump archives in one streaming pass, and remember the results.

One pass per archive reads the file once: its SHA-256 is computed from the same chunks that feed the node's
decompressor, whose exit status is the compression-layer check (reference/pve.md §6.3); the decompressed
stream is checked as VMA (§6.2 items 2-4) or as a CT tar (§1.4); the time in the file name is compared with
the time inside the archive. Results go to a JSON store keyed by absolute path and (size, mtime, inode), so
an unchanged archive is not read again, and the exporter can publish when each archive was last verified
and whether it was sound.

Standard library only (plus ``vzkeep.pve``'s stdlib-only modules): this runs on PVE nodes and NAS mounts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from vzkeep.atomic import write_atomic
from vzkeep.errors import UsageError
from vzkeep.pve import archive, ct_tar, vma
from vzkeep.pve.decompress import DecompressedStream, ExactReader

STATE_DIR_ENV = "VZKEEP_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/vzkeep"
RESULTS_FILE = "verify.json"
STORE_VERSION = 1
DEFAULT_STORAGE_CFG = "/etc/pve/storage.cfg"

# The VMA header's ctime is time(NULL) when vma-writer.c writes the header, shortly after the task start
# that the file name records (reference/pve.md §6.1, §6.2 item 2: "within seconds to minutes"). A CT's
# pct.conf is written into the temp dir at the same moment. Before the name's time only clock steps fit.
CTIME_MAX_EARLY = 60
CTIME_MAX_LATE = 900


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
    cached: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> VerifyResult:
        known = {f.name for f in fields(cls)} - {"cached"}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# One archive


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


def _time_problem(info: archive.ArchiveInfo, content_ctime: int | None, tz: str | None) -> str | None:
    if not info.is_std_name or info.ctime is None or content_ctime is None:
        return None
    delta = content_ctime - info.ctime
    if -CTIME_MAX_EARLY <= delta <= CTIME_MAX_LATE:
        return None
    inside = "VMA header ctime" if info.format == "vma" else "pct.conf mtime"
    zone = tz or os.environ.get("TZ") or "this machine's zone"
    return (
        f"time mismatch: the name says {_utc(info.ctime)} (read in {zone}) but the {inside} is "
        f"{_utc(content_ctime)}, {delta:+d} s apart (allowed -{CTIME_MAX_EARLY}..+{CTIME_MAX_LATE} s): "
        "renamed, or the node's time zone differs (pass --tz)"
    )


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _one_pass(
    path: str, info: archive.ArchiveInfo | None, one: _Pass, problems: list[str]
) -> tuple[list[str], int | None, int]:
    content_ctime = None
    structure: list[str] = []
    with open(path, "rb") as source, DecompressedStream(
        source, info.compression if info else None, on_chunk=one.on_chunk
    ) as stream:
        if info is not None:
            structure, content_ctime = _check_structure(info, ExactReader(stream))
        # close() drains the rest first: after a structural error too, the hash and the compressor must see
        # the whole file. The compressor's verdict comes first: structural errors usually follow from it.
        problems = [*problems, *stream.close(), *structure]
        return problems, content_ctime, stream.raw_bytes


def verify_archive(
    path: str | os.PathLike[str],
    *,
    tz: str | None = None,
    volid: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Check one archive in one pass. Problems (read errors included) are findings in the result; a missing
    decompressor raises ``vzkeep.pve.decompress.DecompressError``, a missing file ``FileNotFoundError``."""
    path = os.path.abspath(path)
    st = os.stat(path)
    try:
        info: archive.ArchiveInfo | None = archive.parse(os.path.basename(path), tz=tz)
        name_problem = None
    except ValueError as exc:
        info, name_problem = None, f"name: {exc}; PVE would not list this file as a backup"
    one = _Pass(progress)
    problems: list[str] = [name_problem] if name_problem else []
    content_ctime, bytes_read = None, 0
    try:
        problems, content_ctime, bytes_read = _one_pass(path, info, one, problems)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        # a bad sector or a dropped NAS mount is a finding about this archive, not a crash of the run
        problems.append(f"read error after {one.bytes} bytes: {exc.strerror or exc}")
        bytes_read = one.bytes
    if info is not None and not problems and (late := _time_problem(info, content_ctime, tz)):
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
        verified_at=int(time.time()),
        format=info.format if info else None,
        compression=info.compression if info else None,
        bytes_read=bytes_read,
        volid=volid,
        guest_type=info.type if info else None,
        vmid=info.vmid if info else None,
        content_ctime=content_ctime,
    )


# ---------------------------------------------------------------------------------------------------------
# The results store


def default_results_path() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR) / RESULTS_FILE


class ResultStore:
    """Last verification result per archive, in one JSON file (atomic replace, merged under a lock)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_results_path()

    def load(self) -> dict[str, VerifyResult]:
        """Absolute path -> last result. A missing file is an empty store; a damaged one raises ValueError."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            return {p: VerifyResult.from_json(r) for p, r in data["archives"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{self.path} is not a vzkeep verify results file ({exc}); "
                "move it away or pass another --results"
            ) from exc

    def fresh(self, path: str, records: dict[str, VerifyResult] | None = None) -> VerifyResult | None:
        """The stored result if the file is unchanged since (same size, mtime and inode), else None."""
        record = (records if records is not None else self.load()).get(path)
        if record is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (record.size, record.mtime_ns, record.inode):
            return None
        record.cached = True
        return record

    def save(self, results: Iterable[VerifyResult], *, forget: Iterable[str] = ()) -> None:
        """Merge these results into the file (and drop ``forget`` paths), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            records = self.load()
            for path in forget:
                records.pop(path, None)
            for result in results:
                records[result.path] = result
            payload = {
                "version": STORE_VERSION,
                "archives": {p: records[p].to_json() for p in sorted(records)},
            }
            write_atomic(self.path, json.dumps(payload, indent=1, sort_keys=True) + "\n")

    def forget_missing(self, directory: str | os.PathLike[str]) -> list[str]:
        """Drop the results of archives that were in ``directory`` and are gone (pruned); return their paths.
        Without this the exporter would keep publishing archives that retention removed."""
        root = os.path.abspath(directory)
        gone = [p for p in self.load() if os.path.dirname(p) == root and not os.path.exists(p)]
        if gone:
            self.save([], forget=gone)
        return gone

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        # Two runs (a timer and a manual one) must not lose each other's results.
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def load_results(path: str | os.PathLike[str] | None = None) -> dict[str, VerifyResult]:
    """For the exporter: absolute archive path -> its last verification result."""
    return ResultStore(path).load()


def results_by_volid(path: str | os.PathLike[str] | None = None) -> dict[str, VerifyResult]:
    """For the exporter: PVE volid (``<storage>:backup/<file>``) -> last result, for archives whose storage
    was known when they were verified (``--storage``, or a directory that is a storage's dump dir)."""
    return {r.volid: r for r in load_results(path).values() if r.volid}


def _bitrot_problem(result: VerifyResult, previous: VerifyResult | None) -> str | None:
    """A re-read with unchanged size and mtime but another hash: the bytes changed under the file system."""
    if previous is None or not previous.ok or previous.sha256 == result.sha256:
        return None
    if (previous.size, previous.mtime_ns, previous.inode) != (result.size, result.mtime_ns, result.inode):
        return None
    return (
        f"SHA-256 differs from the one recorded on {_utc(previous.verified_at)} although size and mtime are "
        "unchanged: the data changed silently (bit rot or a write that bypassed the file system)"
    )


def verify_many(
    paths: Iterable[str],
    store: ResultStore | None,
    *,
    force: bool = False,
    tz: str | None = None,
    volids: dict[str, str] | None = None,
    progress_for: Callable[[str, int], Callable[[int], None] | None] | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
) -> list[VerifyResult]:
    """Verify each path unless the store has a result for the unchanged file (``force`` re-reads).
    Each new result is saved at once, so an interrupted run keeps what it finished."""
    records = store.load() if store is not None else {}
    results = []
    for path in paths:
        path = os.path.abspath(path)
        cached = None if force or store is None else store.fresh(path, records)
        if cached is not None:
            result = cached
        else:
            try:
                progress = progress_for(path, os.stat(path).st_size) if progress_for else None
                result = verify_archive(path, tz=tz, volid=(volids or {}).get(path), progress=progress)
            except FileNotFoundError:
                continue  # removed since it was listed (pruned): nothing left to verify
            if rot := _bitrot_problem(result, records.get(path)):
                result.problems.append(rot)
                result.ok = False
            if store is not None:
                store.save([result])
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# ---------------------------------------------------------------------------------------------------------
# Finding archives


class StorageConfigError(UsageError, ValueError):
    """storage.cfg cannot tell where a storage's backups are."""


# Storage types whose backups are files in `<path>/dump` (pve-storage plugins with a `path`; nfs, cifs and
# cephfs mount at /mnt/pve/<storeid> unless configured otherwise).
_PATH_TYPES = {"dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"}
_DEFAULT_MOUNTED = {"nfs", "cifs", "cephfs", "glusterfs"}


@dataclass(frozen=True)
class Storage:
    id: str
    type: str
    options: dict[str, str]

    def dump_dir(self) -> Path:
        if self.type == "pbs":
            raise StorageConfigError(
                f"storage '{self.id}' is a Proxmox Backup Server: its backups are not files here; "
                "verify them on the PBS (proxmox-backup-manager verify)"
            )
        if self.type not in _PATH_TYPES:
            raise StorageConfigError(
                f"storage '{self.id}' has type '{self.type}', which cannot hold backups "
                f"(allowed: {', '.join(sorted(_PATH_TYPES))})"
            )
        base = self.options.get("path") or (f"/mnt/pve/{self.id}" if self.type in _DEFAULT_MOUNTED else None)
        if not base:
            raise StorageConfigError(f"storage '{self.id}' ({self.type}) has no 'path' in storage.cfg")
        return Path(base) / "dump"


def parse_storage_cfg(text: str, source: str = DEFAULT_STORAGE_CFG) -> dict[str, Storage]:
    """PVE's storage.cfg: ``<type>: <id>`` starts a section, indented ``key value`` lines follow."""
    storages: dict[str, Storage] = {}
    current: Storage | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not raw[0].isspace():
            kind, sep, ident = line.partition(":")
            if not sep or not ident.strip() or " " in kind:
                raise StorageConfigError(f"{source}:{number}: expected '<type>: <storage id>', got {line!r}")
            current = Storage(ident.strip(), kind.strip(), {})
            storages[current.id] = current
            continue
        if current is None:
            raise StorageConfigError(f"{source}:{number}: {line.strip()!r} comes before any storage section")
        key, _, value = line.strip().partition(" ")
        current.options[key] = value.strip()
    return storages


def load_storages(cfg_path: str | os.PathLike[str]) -> dict[str, Storage]:
    path = Path(cfg_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StorageConfigError(
            f"cannot read {path}: {exc.strerror}; pass the file's location with --storage-cfg"
        ) from exc
    return parse_storage_cfg(text, str(path))


def find_archives(directory: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the files PVE would list as backups in ``directory`` (archive_info regex A)."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file():
                continue
            try:
                archive.parse(entry.name)
            except ValueError:
                continue  # .log, .notes, .dat, foreign files
            found.append(os.path.abspath(entry.path))
    return sorted(found)


def volids_for(paths: Iterable[str], storages: dict[str, Storage]) -> dict[str, str]:
    """``<storage>:backup/<file>`` for each path that lies directly in some storage's dump dir."""
    by_dir: dict[str, str] = {}
    for storage in storages.values():
        with contextlib.suppress(StorageConfigError):
            by_dir[os.path.realpath(storage.dump_dir())] = storage.id
    volids = {}
    for path in paths:
        storage_id = by_dir.get(os.path.realpath(os.path.dirname(path)))
        if storage_id is not None:
            volids[path] = f"{storage_id}:backup/{os.path.basename(path)}"
    return volids
