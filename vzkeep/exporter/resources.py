"""``GET /cluster/resources``, read once per poll: guests with their pool, nodes and their state, storages.

One call without a type filter gives everything (pve-manager ``PVE/API2/Cluster.pm`` resources). What a token
may see is filtered there: guests need ``VM.Audit``, a guest's ``pool`` needs ``Pool.Audit``, storages need
``Datastore.Audit`` (see ``vzkeep.pve.privileges``). Only what the exporter uses is kept, not the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vzkeep.exporter.json_items import data_items
from vzkeep.exporter.snapshot import GuestInfo, StorageUsage


@dataclass(frozen=True, slots=True)
class BackupStorage:
    """A storage with ``backup`` content as one node sees it."""

    storage: str
    node: str
    shared: bool
    size: int
    used: int


@dataclass(frozen=True)
class Resources:
    guests: tuple[GuestInfo, ...]  # by vmid, templates excluded
    online_nodes: tuple[str, ...]
    backup_storages: tuple[BackupStorage, ...]  # available ones, by (storage, node)
    pools: tuple[str, ...]

    @classmethod
    def parse(cls, answer: Any) -> Resources:
        """From the parsed answer (a list of resource objects)."""
        if not isinstance(answer, list):
            raise ValueError(f"/cluster/resources: expected a list, got {type(answer).__name__}")
        return cls._of([_entry(r) for r in answer])

    @classmethod
    def parse_body(cls, body: bytes) -> Resources:
        """From PVE's JSON body; each resource is reduced as soon as it is parsed (5,000 guests are 5,000
        objects of 20 fields each otherwise)."""
        return cls._of([_entry(r) for r in data_items(body, "/cluster/resources")])

    @classmethod
    def _of(cls, entries: list[_Entry]) -> Resources:
        guests = sorted((e.guest for e in entries if e.guest is not None), key=lambda g: g.vmid)
        nodes = [e for e in entries if e.kind == "node"]
        # Without node entries (a restricted token), the nodes guests and storages name.
        online = sorted(e.node for e in nodes if e.online) if nodes else sorted({e.node for e in entries if e.node})
        storages = sorted((e.storage for e in entries if e.storage is not None), key=lambda s: (s.storage, s.node))
        pools = sorted({e.pool for e in entries if e.pool})
        return cls(tuple(guests), tuple(online), tuple(storages), tuple(pools))

    def content_targets(self) -> list[tuple[str, str]]:
        """(storage, node) pairs to list: a shared storage once, from its first online node."""
        online = set(self.online_nodes)
        targets: dict[str, tuple[str, str]] = {}
        for entry in self.backup_storages:
            if entry.node not in online:
                continue
            key = entry.storage if entry.shared else f"{entry.storage}/{entry.node}"
            targets.setdefault(key, (entry.storage, entry.node))
        return sorted(targets.values())

    def storage_usage(self) -> list[StorageUsage]:
        return [StorageUsage(s.storage, s.node, s.size, s.used) for s in self.backup_storages if s.size]


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one resource object contributes."""

    kind: str
    node: str
    pool: str
    online: bool
    guest: GuestInfo | None
    storage: BackupStorage | None


def _entry(r: Mapping[str, Any]) -> _Entry:
    kind, node, pool = str(r.get("type") or ""), str(r.get("node") or ""), str(r.get("pool") or "")
    guest = storage = None
    if kind in ("qemu", "lxc") and not int(r.get("template") or 0):
        guest = GuestInfo(int(r["vmid"]), str(r.get("name") or ""), kind, node, pool)
    elif kind == "storage" and "backup" in str(r.get("content", "")).split(",") and r.get("status") == "available":
        storage = BackupStorage(str(r["storage"]), node, bool(int(r.get("shared") or 0)), int(r.get("maxdisk") or 0),
                                int(r.get("disk") or 0))
    return _Entry(kind, node, pool, r.get("status") == "online", guest, storage)
