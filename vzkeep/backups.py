"""Every backup archive of the cluster, with the guest and environment it belongs to.

One ``GET /cluster/resources`` tells which guests, nodes and storages exist (pve-manager
``PVE/API2/Cluster.pm`` resources), then one content listing per storage (pve-storage
``src/PVE/API2/Storage/Content.pm``): a shared storage once, from any online node that sees it; a
node-local storage once per node, because ``local`` on pve1 and ``local`` on pve2 are different
directories. The same file seen from several nodes (same volid, size and time) is one backup that those
nodes can restore from.

Archives of guests that no longer exist are listed too: that is exactly when they are needed. Their
name and environment then come from the notes PVE stores beside the archive (the listing shows its first
line: pve-storage ``src/PVE/Storage/Plugin.pm`` ``$get_subdir_files``), which
the vzkeep notes template writes as ``<guest name> (vmid N, env <env>, node <node>)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vzkeep.pve import archive
from vzkeep.pve.client import PveApiError, PveClient
from vzkeep.verify import VerifyResult, load_results

_NOTES_ENV_RE = re.compile(r"\benv[ =:]+([A-Za-z0-9][A-Za-z0-9_.-]*)")
_NOTES_NODE_RE = re.compile(r"\bnode[ =:]+([A-Za-z0-9][A-Za-z0-9.-]*)")
_NOTES_NAME_RE = re.compile(r"^\s*([^\s(]+)")


@dataclass(frozen=True)
class StorageView:
    """One storage id as the cluster sees it: on which nodes, shared or not."""

    id: str
    shared: bool
    nodes: tuple[str, ...]
    plugintype: str


@dataclass
class Backup:
    volid: str
    storage: str
    vmid: int
    guest_type: str  # qemu | lxc | openvz | unknown (PVE's subtype)
    ctime: int
    size: int
    format: str
    notes: str | None
    protected: bool
    nodes: tuple[str, ...]  # the online nodes that list this archive: where it can be restored
    shared: bool
    name: str | None = None
    env: str | None = None
    guest_exists: bool = False
    origin_node: str | None = None  # from the notes: the node the guest ran on when backed up
    verification: VerifyResult | None = None

    @property
    def filename(self) -> str:
        return self.volid.partition(":")[2].removeprefix("backup/")

    def local_stamp(self) -> datetime | None:
        """The time in the archive's name, as the node's clock read it (vzdump names archives in the node's
        zone: pve-manager ``PVE/VZDump.pm``); None when the name is not a standard one (PVE then gives no
        time from it either)."""
        digits = self._stamp_as_utc()
        return datetime.fromtimestamp(digits, UTC).replace(tzinfo=None) if digits is not None else None

    def utc_offset(self) -> int | None:
        """The node's UTC offset in seconds when it wrote the archive: the name's local time minus PVE's
        ``ctime`` (pve-storage ``src/PVE/Storage.pm`` ``archive_info``: ``ctime`` is ``timelocal`` of the
        name). None without a standard name, or when the difference is no whole quarter hour (no zone)."""
        digits = self._stamp_as_utc()
        if digits is None:
            return None
        offset = digits - self.ctime
        return offset if offset % 900 == 0 and abs(offset) <= 14 * 3600 else None

    def _stamp_as_utc(self) -> int | None:
        """The name's stamp read as if it were UTC, by PVE's own name rules (``vzkeep.pve.archive``)."""
        try:
            return archive.parse(self.filename, "UTC").ctime
        except ValueError:
            return None

    def verify_state(self) -> str:
        """``ok``, ``corrupt``, ``stale`` (the file changed since it was verified) or ``-`` (never)."""
        result = self.verification
        if result is None:
            return "-"
        if result.size != self.size:
            return "stale"
        return "ok" if result.ok else "corrupt"

    def to_json(self) -> dict[str, Any]:
        result = self.verification
        return {
            "volid": self.volid, "storage": self.storage, "vmid": self.vmid, "type": self.guest_type,
            "name": self.name, "env": self.env, "ctime": self.ctime, "size": self.size, "format": self.format,
            "protected": self.protected, "notes": self.notes, "nodes": list(self.nodes), "shared": self.shared,
            "guest_exists": self.guest_exists,
            "verify": {"state": self.verify_state(), "verified_at": result.verified_at if result else None,
                       "problems": list(result.problems) if result else []},
        }


@dataclass
class Inventory:
    """What the cluster has: guests (``/cluster/resources`` vm entries by vmid), nodes, storages, backups."""

    guests: dict[int, dict[str, Any]]
    nodes: dict[str, bool]  # node -> online
    storages: dict[str, StorageView]
    backups: list[Backup]
    warnings: list[str] = field(default_factory=list)
    pools: set[str] = field(default_factory=set)
    # every storage (not only backup ones: restore targets such as local-lvm) -> nodes that see it
    storage_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def online_nodes(self) -> list[str]:
        return sorted(n for n, up in self.nodes.items() if up)

    def backups_of(self, vmid: int) -> list[Backup]:
        """Newest first."""
        return sorted((b for b in self.backups if b.vmid == vmid), key=lambda b: (b.ctime, b.volid), reverse=True)


# -- notes ------------------------------------------------------------------------------------------------


def name_from_notes(notes: str | None) -> str | None:
    match = _NOTES_NAME_RE.match(notes or "")
    return match.group(1) if match else None


def env_from_notes(notes: str | None) -> str | None:
    match = _NOTES_ENV_RE.search(notes or "")
    return match.group(1) if match else None


def node_from_notes(notes: str | None) -> str | None:
    match = _NOTES_NODE_RE.search(notes or "")
    return match.group(1) if match else None


# -- collecting -------------------------------------------------------------------------------------------


def collect(api: PveClient, verify_results: dict[str, VerifyResult] | None = None) -> Inventory:
    """The whole inventory: 1 call for resources, then 1 listing per storage (per node if not shared)."""
    resources = api.get("cluster/resources")
    guests = {int(r["vmid"]): r for r in resources if r.get("type") in ("qemu", "lxc")}
    nodes = {r["node"]: r.get("status") == "online" for r in resources if r.get("type") == "node"}
    storages = _storage_views(resources)
    inventory = Inventory(guests, nodes, storages, [], pools={r["pool"] for r in resources if r.get("type") == "pool"})
    for r in resources:
        if r.get("type") == "storage":
            inventory.storage_nodes[r["storage"]] = tuple(sorted({*inventory.storage_nodes.get(r["storage"], ()),
                                                                  r["node"]}))
    seen: dict[tuple[str, int, int], Backup] = {}
    for storage in storages.values():
        for node in _nodes_to_list(storage, nodes, inventory.warnings):
            for item in _list_content(api, node, storage.id, inventory.warnings):
                _merge(seen, item, storage, node)
    inventory.backups = sorted(seen.values(), key=lambda b: (b.vmid, -b.ctime, b.volid))
    _annotate(inventory, verify_results if verify_results is not None else all_verify_results())
    return inventory


def _storage_views(resources: Iterable[dict[str, Any]]) -> dict[str, StorageView]:
    by_id: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r.get("type") != "storage" or "backup" not in str(r.get("content", "")).split(","):
            continue
        entry = by_id.setdefault(r["storage"], {"shared": bool(int(r.get("shared", 0))), "nodes": [],
                                                "plugintype": r.get("plugintype", "")})
        entry["nodes"].append(r["node"])
    return {sid: StorageView(sid, e["shared"], tuple(sorted(e["nodes"])), e["plugintype"])
            for sid, e in sorted(by_id.items())}


def _nodes_to_list(storage: StorageView, nodes: dict[str, bool], warnings: list[str]) -> list[str]:
    online = [n for n in storage.nodes if nodes.get(n)]
    offline = [n for n in storage.nodes if not nodes.get(n)]
    if storage.shared:
        if not online:
            warnings.append(f"storage '{storage.id}' is shared but no node that sees it is online: not listed")
        return online[:1]
    for node in offline:
        warnings.append(f"node '{node}' is offline: its storage '{storage.id}' was not listed")
    return online


def _list_content(api: PveClient, node: str, storage: str, warnings: list[str]) -> list[dict[str, Any]]:
    try:
        return api.get(f"nodes/{node}/storage/{storage}/content", content="backup")
    except PveApiError as exc:
        warnings.append(f"storage '{storage}' on node '{node}' could not be listed: {pve_message(exc)}")
        return []


def _merge(seen: dict[tuple[str, int, int], Backup], item: dict[str, Any], storage: StorageView, node: str) -> None:
    key = (item["volid"], int(item.get("size", 0)), int(item.get("ctime", 0)))
    if key in seen:
        seen[key].nodes = tuple(sorted({*seen[key].nodes, node}))
        return
    seen[key] = Backup(
        volid=item["volid"], storage=storage.id, vmid=int(item.get("vmid") or 0),
        guest_type=str(item.get("subtype") or "unknown"), ctime=int(item.get("ctime", 0)),
        size=int(item.get("size", 0)), format=str(item.get("format", "")), notes=item.get("notes"),
        protected=bool(int(item.get("protected", 0) or 0)), nodes=(node,), shared=storage.shared,
    )


def _annotate(inventory: Inventory, verify_results: dict[str, VerifyResult]) -> None:
    by_name = _results_by_filename(verify_results)
    for backup in inventory.backups:
        guest = inventory.guests.get(backup.vmid)
        backup.guest_exists = guest is not None and _same_type(guest, backup)
        backup.name = (guest.get("name") if backup.guest_exists else None) or name_from_notes(backup.notes)
        backup.env = (guest.get("pool") if backup.guest_exists else None) or env_from_notes(backup.notes)
        backup.origin_node = node_from_notes(backup.notes)
        backup.verification = _verification(backup, verify_results, by_name)


def _same_type(guest: dict[str, Any], backup: Backup) -> bool:
    # vmid 101 may now be a CT while the archive is of the VM that had the id before
    return backup.guest_type in ("unknown", guest.get("type")) or (
        backup.guest_type == "openvz" and guest.get("type") == "lxc")


def _verification(backup: Backup, results: dict[str, VerifyResult],
                  by_name: dict[tuple[str, int], VerifyResult]) -> VerifyResult | None:
    """The result recorded for this volid; else one for a file of the same name and size, but only when it
    found a problem: "ok" is said only of the archive that was read, never of a look-alike (a copy, another
    cluster's file, a re-created storage)."""
    result = results.get(backup.volid)
    if result is not None:
        return result
    alike = by_name.get((backup.filename, backup.size))
    return alike if alike is not None and not alike.ok else None


def _results_by_filename(results: dict[str, VerifyResult]) -> dict[tuple[str, int], VerifyResult]:
    """Results recorded without a volid (``vzkeep verify FILE``), by file name and size."""
    out: dict[tuple[str, int], VerifyResult] = {}
    for result in results.values():
        if not result.volid:
            out[(result.path.rsplit("/", 1)[-1], result.size)] = result
    return out


def all_verify_results(path: str | os.PathLike[str] | None = None) -> dict[str, VerifyResult]:
    """Volid (or path, for archives verified without a storage) -> last result; no store = empty.
    A damaged store raises ``vzkeep.verify.StoreError``, an unreadable one ``OSError``."""
    return {(r.volid or p): r for p, r in load_results(path).items()}


# -- filtering --------------------------------------------------------------------------------------------


def matches_guest(backup: Backup, guest: str) -> bool:
    """``guest`` is a vmid or a name (the guest's current name, or the one in the notes)."""
    if guest.isdigit():
        return backup.vmid == int(guest)
    return backup.name == guest or name_from_notes(backup.notes) == guest


def select(backups: Iterable[Backup], env: str | None = None, guest: str | None = None,
           storage: str | None = None) -> list[Backup]:
    return [b for b in backups if (env is None or b.env == env) and (guest is None or matches_guest(b, guest))
            and (storage is None or b.storage == storage)]


def pve_message(exc: PveApiError) -> str:
    """PVE's own words for a failed call: the reason phrase (its first line), plus parameter errors."""
    return exc.pve_words()
