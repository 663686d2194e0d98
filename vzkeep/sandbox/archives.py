"""The backups in one dump directory, and the content listing PVE builds from them.

PVE lists a storage's backups by reading its ``dump/`` directory on every call (pve-storage
``src/PVE/Storage/Plugin.pm`` ``$get_subdir_files``). An ``ArchiveIndex`` keeps what that read finds
(file names and sizes) in memory and is updated by the engine on every write and removal, so pruning
one guest after its backup reads that guest's few archives, not the whole directory: a month of backups
costs time linear in the number of guests.

The directory stays the truth. The index re-reads it when the directory changed behind the engine's
back (a file added or removed by hand moves the directory's mtime), and also when the last read was
"racy" (git's term: the directory changed within the file system's timestamp granularity of that read,
so a later change could keep the same mtime). File contents are read when listed (size, notes), never
cached, so an archive corrupted in place shows its real size.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from vzkeep.pve import archive
from vzkeep.pve.localtime import clock_of

# Plugin.pm $get_subdir_files: a backup is a file matching $BACKUP_EXT_RE_2 (group 2: the format)
BACKUP_FILE_RE = re.compile(r"^([^/]+\.(tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?))$")
_GROUP_RE = re.compile(r"^vzdump-(lxc|openvz|qemu)-(\d+)-")
_VMID_RE = re.compile(r"-([1-9][0-9]{2,8})-")
PROTECTED_EXT = ".protected"  # Storage.pm protection_file_path
# Linux stamps file times from a coarse clock (one jiffy, up to 10 ms); keep a wide margin.
RACY_NS = 50_000_000


class ArchiveIndex:
    """Every regular file of one ``dump/`` directory (name -> size), backups grouped by guest."""

    def __init__(self, dump_dir: Path, storage_id: str) -> None:
        self.dump_dir = Path(dump_dir)
        self.storage_id = storage_id
        self._files: dict[str, int] = {}
        self._groups: dict[tuple[str, int], set[str]] = {}  # (type, vmid) -> backup names
        self._ctimes: dict[tuple[str, str | None], tuple[str, int | None]] = {}  # (name, tz) -> (subtype, ctime)
        self._stamp: tuple[int, int] | None = None  # (dir mtime_ns, wall ns) of the last read/own change
        self.total = 0

    # -- keeping the view true --------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the directory if it changed since the view was taken (or the view is racy)."""
        try:
            mtime = self.dump_dir.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if self._stamp is None or mtime != self._stamp[0] or self._stamp[0] >= self._stamp[1] - RACY_NS:
            self.scan()

    def scan(self) -> None:
        self._files.clear()
        self._groups.clear()
        self.total = 0
        try:
            entries = list(os.scandir(self.dump_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    self._add(entry.name, entry.stat(follow_symlinks=False).st_size)
            except FileNotFoundError:
                continue
        self._mark()

    def _mark(self) -> None:
        try:
            mtime = self.dump_dir.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        self._stamp = (mtime, time.time_ns())

    # -- the engine's own changes -------------------------------------------------------------------
    def added(self, name: str, size: int) -> None:
        """A file appeared (or changed size) in the directory by the engine's hand."""
        if name in self._files:
            self._discard(name)
        self._add(name, size)
        self._mark()

    def removed(self, name: str) -> None:
        self._discard(name)
        self._mark()

    def _add(self, name: str, size: int) -> None:
        self._files[name] = size
        self.total += size
        key = _group_key(name)
        if key is not None:
            self._groups.setdefault(key, set()).add(name)

    def _discard(self, name: str) -> None:
        size = self._files.pop(name, None)
        if size is None:
            return
        self.total -= size
        key = _group_key(name)
        if key is not None and key in self._groups:
            self._groups[key].discard(name)
            if not self._groups[key]:
                del self._groups[key]

    # -- reading ------------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self._files

    def names(self) -> list[str]:
        return list(self._files)

    def group(self, guest_type: str, vmid: int) -> list[str]:
        """The backup file names of one prune group (``vzdump-<type>-<vmid>-…``)."""
        return sorted(self._groups.get((guest_type, int(vmid)), ()))

    def ctime(self, name: str, tz: str | None) -> int | None:
        """The backup time its name says, in the listing node's zone (cached: names never change)."""
        return self._identity(name, tz)[1]

    def _identity(self, name: str, tz: str | None) -> tuple[str, int | None]:
        """(subtype or "unknown", ctime or None) as ``archive.identify`` reads the name, cached."""
        key = (name, tz)
        if key not in self._ctimes:
            try:
                subtype, _, ctime = archive.identify(name, clock_of(tz))[:3]
                self._ctimes[key] = (subtype, ctime)
            except ValueError:
                self._ctimes[key] = ("unknown", None)
        return self._ctimes[key]

    def newest_ctime(self, tz: str | None) -> int | None:
        """The newest backup time named in the directory, names read in zone ``tz``."""
        times = [self.ctime(n, tz) for n in self._files if BACKUP_FILE_RE.match(n)]
        return max((t for t in times if t is not None), default=None)

    def entry(self, name: str, tz: str | None, with_notes: bool = True) -> dict[str, Any] | None:
        """One item of the content listing, as ``$get_subdir_files`` builds it."""
        m = BACKUP_FILE_RE.match(name)
        if not m:
            return None
        path = self.dump_dir / name
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        item: dict[str, Any] = {"volid": f"{self.storage_id}:backup/{name}", "format": m.group(2),
                                "size": st.st_size, "content": "backup"}
        item["subtype"], ctime = self._identity(name, tz)
        item["ctime"] = ctime if ctime is not None else int(st.st_ctime)
        vm = _VMID_RE.search(name)
        if vm:
            item["vmid"] = int(vm.group(1))
        if with_notes and name + archive.NOTES_EXT in self._files:
            try:
                notes = (self.dump_dir / (name + archive.NOTES_EXT)).read_text(encoding="utf-8", errors="replace")
                item["notes"] = notes.split("\n", 1)[0]
            except FileNotFoundError:
                pass
        if name + PROTECTED_EXT in self._files:
            item["protected"] = 1
        return item

    def listing(self, tz: str | None, vmid: int | None = None, with_notes: bool = True) -> list[dict[str, Any]]:
        """Backups in the directory, sorted by ``lc(volid)`` (``Storage.pm volume_list``); ``vmid``
        filters like ``$get_subdir_files`` (``\\S+-<vmid>-\\S+`` in the name)."""
        pattern = re.compile(rf"\S+-{int(vmid)}-\S+") if vmid is not None else None
        out = []
        for name in self._files:
            if pattern is not None and not pattern.search(name):
                continue
            item = self.entry(name, tz, with_notes)
            if item is not None:
                out.append(item)
        out.sort(key=lambda i: i["volid"].lower())
        return out

    def group_listing(self, guest_type: str, vmid: int, tz: str | None) -> list[dict[str, Any]]:
        """The listing items of one prune group, ``protected`` always present (what prune marks)."""
        items = [i for i in (self.entry(n, tz, with_notes=False) for n in self.group(guest_type, vmid)) if i]
        for item in items:
            item.setdefault("protected", 0)
        items.sort(key=lambda i: i["volid"].lower())
        return items


def _group_key(name: str) -> tuple[str, int] | None:
    if not BACKUP_FILE_RE.match(name):
        return None
    m = _GROUP_RE.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def auxiliary_names(name: str) -> list[str]:
    """The ``.log`` and ``.notes`` sidecars PVE removes with an archive (``archive_auxiliaries_remove``)."""
    try:
        info = archive.parse(name)
    except ValueError:
        return []
    return [n for n in (info.logfilename, info.notesfilename) if n]


def archive_remove(index: ArchiveIndex, name: str) -> None:
    """``PVE::Storage::archive_remove``: refuses a protected archive, removes it with its ``.log`` and
    ``.notes`` (``archive_auxiliaries_remove``)."""
    if index.has(name + PROTECTED_EXT):
        raise OSError(f"cannot remove protected archive '{index.dump_dir / name}'")
    for victim in (name, *auxiliary_names(name)):
        try:
            (index.dump_dir / victim).unlink()
        except FileNotFoundError:
            if victim == name:
                raise
        index.removed(victim)
