"""``GET /cluster/resources``, read once per poll: guests with their pool, nodes and their state, storages.

One call without a type filter gives everything (pve-manager ``PVE/API2/Cluster.pm`` resources). What a token
may see is filtered there: guests need ``VM.Audit``, a guest's ``pool`` needs ``Pool.Audit``, storages need
``Datastore.Audit`` (see ``vzkeep.pve.privileges``). Only what the exporter uses is kept, not the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
        if not isinstance(answer, list):
            raise ValueError(f"/cluster/resources: expected a list, got {type(answer).__name__}")
        guests = sorted(
            (GuestInfo(int(r["vmid"]), str(r.get("name") or ""), str(r["type"]), str(r.get("node") or ""),
                       str(r.get("pool") or ""))
             for r in answer if r.get("type") in ("qemu", "lxc") and not int(r.get("template") or 0)),
            key=lambda g: g.vmid,
        )
        nodes = [r for r in answer if r.get("type") == "node"]
        if nodes:
            online = sorted(str(n["node"]) for n in nodes if n.get("status") == "online")
        else:  # without node entries (a restricted token), the nodes guests and storages name
            online = sorted({str(r["node"]) for r in answer if r.get("node")})
        storages = sorted(
            (_backup_storage(s) for s in answer
             if s.get("type") == "storage" and "backup" in str(s.get("content", "")).split(",")
             and s.get("status") == "available"),
            key=lambda s: (s.storage, s.node),
        )
        pools = sorted({str(r["pool"]) for r in answer if r.get("pool")})
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


def _backup_storage(entry: Mapping[str, Any]) -> BackupStorage:
    return BackupStorage(str(entry["storage"]), str(entry["node"]), bool(int(entry.get("shared") or 0)),
                         int(entry.get("maxdisk") or 0), int(entry.get("disk") or 0))
