"""The emulated cluster's data: nodes, storages, pools, guests and backup jobs.

Plain data plus JSON persistence, nothing else: the HTTP layer (``server``/``api``), the vzdump
engine (``vzdump``), the scheduler and restore all read and change a ``Cluster`` under its lock.
Archives are not part of the model: they are real files in each storage's ``dump/`` directory, one
per node for a local storage (``storages``), read as PVE reads them (pve-storage
``src/PVE/Storage/Plugin.pm`` ``list_volumes``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic

GuestType = str  # "qemu" | "lxc"


# pve-storage src/PVE/Storage/Plugin.pm @SHARED_STORAGE: parse_config sets `shared 1` for these types.
SHARED_TYPES = ("iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "zfs", "drbd", "pbs")


@dataclass
class Node:
    name: str
    timezone: str = "Europe/Paris"
    online: bool = True
    lost: bool = False  # gone for good with its disk (``node lose``): only a fresh node may take its name


@dataclass
class Storage:
    id: str
    type: str  # "dir" | "nfs"
    path: str  # a real directory; backups live in <path>/dump, or <path>/<node>/dump if not shared
    shared: bool = False
    nodes: list[str] | None = None  # None = every node
    content: list[str] = field(default_factory=lambda: ["backup"])
    capacity_bytes: int | None = None  # writes beyond it fail with ENOSPC
    enabled: bool = True
    server: str | None = None  # nfs only
    export: str | None = None  # nfs only
    prune_backups: str | None = None  # storage-level fallback retention (the storage's `prune-backups`)
    # The other storage.cfg properties, as PVE's API sets and returns them (``content-dirs``,
    # ``max-protected-backups``…, and ``path`` as configured when the files live elsewhere).
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type in SHARED_TYPES:
            self.shared = True

    def visible_from(self, node: str) -> bool:
        return self.enabled and (self.nodes is None or node in self.nodes)


@dataclass
class Guest:
    vmid: int
    name: str
    type: GuestType
    node: str
    pool: str | None = None
    disk_bytes: int = 8 * 1024**3  # the guest's (virtual) disk size, as PVE reports maxdisk
    status: str = "running"  # "running" | "stopped"
    tags: list[str] = field(default_factory=list)
    lock: str | None = None  # e.g. "backup", "create"
    generation: int = 0  # bumps when the guest's disk content changes (new data to back up)
    config: dict[str, str] = field(default_factory=dict)  # extra qemu-server/pct config keys
    # True once ``config`` is the guest's whole config (after ``PUT …/config``, or what a failed restore
    # left): no defaults are filled in around it, so a deleted key stays deleted.
    full_config: bool = False
    # A restored guest's disk, materialised from its archive (diskdata: others are generated).
    disk_image: str | None = None


_GUEST_FIELDS = fields(Guest)


@dataclass
class Pool:
    id: str
    comment: str = ""
    storage: list[str] = field(default_factory=list)  # storages in the pool (user.cfg pool line)


@dataclass
class Cluster:
    """The whole emulated cluster. Guard every access with ``lock``."""

    name: str = "vzkeep-sandbox"
    nodes: dict[str, Node] = field(default_factory=dict)
    storages: dict[str, Storage] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    guests: dict[int, Guest] = field(default_factory=dict)
    # Backup jobs exactly as /etc/pve/jobs.cfg stores them: option name -> value.
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-job scheduler state, like /var/lib/pve-manager/jobs/vzdump-<id>.json (pve-manager PVE/Jobs.pm).
    job_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock_epoch: float | None = None  # the simulated time, persisted across restarts
    pve_version: str = "9"  # the PVE major version the API plays (vzkeep.sandbox.api.versions)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        # Not asdict(self): it would deep-copy the RLock, which cannot be copied.
        return {
            "name": self.name,
            "nodes": {k: asdict(v) for k, v in self.nodes.items()},
            "storages": {k: asdict(v) for k, v in self.storages.items()},
            "pools": {k: asdict(v) for k, v in self.pools.items()},
            # Shallow: serialised at once, under the lock (asdict's deep copy is most of a commit at 500 guests).
            "guests": {str(k): {f.name: getattr(v, f.name) for f in _GUEST_FIELDS} for k, v in self.guests.items()},
            "jobs": self.jobs,
            "job_state": self.job_state,
            "clock_epoch": self.clock_epoch,
            "pve_version": self.pve_version,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cluster:
        return cls(
            name=data.get("name", "vzkeep-sandbox"),
            nodes={k: Node(**v) for k, v in data.get("nodes", {}).items()},
            storages={k: Storage(**v) for k, v in data.get("storages", {}).items()},
            pools={k: Pool(**v) for k, v in data.get("pools", {}).items()},
            guests={int(k): Guest(**v) for k, v in data.get("guests", {}).items()},
            jobs=data.get("jobs", {}),
            job_state=data.get("job_state", {}),
            clock_epoch=data.get("clock_epoch"),
            pve_version=str(data.get("pve_version", "9")),
        )

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves a half-written state file."""
        with self.lock:
            text = json.dumps(self.to_json(), indent=1, sort_keys=True)
        write_atomic(path, text, fsync=False)

    @classmethod
    def load(cls, path: Path) -> Cluster:
        return cls.from_json(json.loads(path.read_text()))
