"""Where a storage's files live: one place per node for a local storage, one place for a shared one.

On PVE a storage is a line of the cluster-wide ``storage.cfg``, but a non-shared storage (``dir``, or
any with ``shared 0``) is a directory on each node's own disk: two nodes that both list ``backup-prod``
hold two different ``/var/lib/vz/dump`` directories, with their own content and capacity, and what pve1
wrote is neither listed nor readable from pve2. A shared storage (an NFS or CIFS export, or one marked
``shared 1``) is one place that every node listing it sees. pve-storage ``src/PVE/Storage/Plugin.pm``
``parse_config`` forces ``shared`` on for the types in ``@SHARED_STORAGE``.

In the sandbox a local storage whose configured directory is ``P`` lives in ``P/<node>`` on each node,
a shared one in ``P`` itself. Losing a node deletes its places (``node_places``).
"""

from __future__ import annotations

import os
from pathlib import Path

from vzkeep.sandbox.archives import ArchiveIndex
from vzkeep.sandbox.model import Cluster, Storage

FILL_FILE = ".vzkeep-sandbox-fill"  # ballast for `fill`, beside dump/ so listings ignore it


def place_key(storage: Storage, node: str) -> tuple[str, str | None]:
    """(storage id, node) for a local storage, (storage id, None) for a shared one."""
    return (storage.id, None) if storage.shared else (storage.id, node)


def storage_root(storage: Storage, node: str | None) -> Path:
    """The directory holding the storage's files as ``node`` sees it."""
    if storage.shared:
        return Path(storage.path)
    if node is None:
        raise ValueError(f"storage '{storage.id}' is local to each node: say which node")
    return Path(storage.path) / node


def confined_path(directory: Path, text: str) -> Path:
    """A storage directory given as ``text`` (relative, or absolute as PVE writes it), placed under
    ``directory``: the sandbox never writes outside its directory. Raises ``ValueError`` for a
    path with a control character (a newline would split a ``storage.cfg`` line) or a ``..`` part."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"path {text!r} contains a control character; use a plain directory path")
    parts = Path(text).parts
    if ".." in parts:
        raise ValueError(f"path {text!r} contains '..'; the storage must stay inside the sandbox's "
                         "directory")
    if not text.strip("/").strip():
        raise ValueError(f"path {text!r} is the sandbox's directory itself; name a directory inside it")
    return Path(directory) / text.lstrip("/")


class StorageDirs:
    """Every storage's places and their archive indexes (built on first use, kept up to date)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._indexes: dict[tuple[str, str | None], ArchiveIndex] = {}
        self._fresh: set[tuple[str, str | None]] = set()  # refreshed during the current engine call

    def root(self, storage: Storage, node: str) -> Path:
        return storage_root(storage, node)

    def dump_dir(self, storage: Storage, node: str) -> Path:
        return storage_root(storage, node) / "dump"

    def index(self, storage: Storage, node: str) -> ArchiveIndex:
        """The place's index, checked against the directory once per engine call (``begin_call``)."""
        key = place_key(storage, node)
        index = self._indexes.get(key)
        if index is None or index.dump_dir != self.dump_dir(storage, node):
            index = self._indexes[key] = ArchiveIndex(self.dump_dir(storage, node), storage.id)
        if key not in self._fresh:
            index.refresh()
            self._fresh.add(key)
        return index

    def begin_call(self) -> None:
        """A new engine call starts: files may have changed by hand since the last one."""
        self._fresh.clear()

    def used_bytes(self, storage: Storage, node: str) -> int:
        """What the place holds: its dump directory (indexed) plus the ``fill`` ballast."""
        ballast = self.root(storage, node) / FILL_FILE
        try:
            extra = ballast.stat().st_size
        except FileNotFoundError:
            extra = 0
        return self.index(storage, node).total + extra

    def places(self) -> list[tuple[Storage, str]]:
        """Every (storage, node) place once: local storages per node that lists them, shared ones once."""
        out: list[tuple[Storage, str]] = []
        seen: set[tuple[str, str | None]] = set()
        for storage in self.cluster.storages.values():
            for node in sorted(self.cluster.nodes):
                if storage.nodes is not None and node not in storage.nodes:
                    continue
                key = place_key(storage, node)
                if key not in seen:
                    seen.add(key)
                    out.append((storage, node))
        return out

    def node_places(self, node: str) -> list[Path]:
        """The directories on ``node``'s own disk: every local storage's place there."""
        return [storage_root(s, node) for s in self.cluster.storages.values() if not s.shared]

    def forget(self, node: str) -> None:
        """Drop the indexes of ``node``'s local places (its disk is gone)."""
        for key in [k for k in self._indexes if k[1] == node]:
            del self._indexes[key]
            self._fresh.discard(key)


def walk_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (for recovery checks)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out += [Path(dirpath) / f for f in files]
    return out
