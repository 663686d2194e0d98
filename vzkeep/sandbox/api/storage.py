"""Storage endpoints under ``/nodes/{node}/storage`` (pve-storage ``PVE/API2/Storage/{Status,Content,
PruneBackups}.pm``, reference §4.6). Archives are files; listings are read from disk by the engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vzkeep.sandbox.api.common import cluster_of, node_or_fail, storage_or_400
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import NODE, STORAGE, Param, verify_vmid
from vzkeep.sandbox.model import Storage

# Plugin.pm: backup volume names, ``backup/<file>`` with $BACKUP_EXT_RE_2 (reference §1.2).
BACKUP_VOLNAME_RE = re.compile(r"^backup/([^/]+\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?))$")
PLUGIN_CONTENT = "backup"


def storage_usage(req: Request, storage: Storage, node: str) -> dict[str, int]:
    """``{total, used, avail}`` in bytes as the engine sees them (capacity, fill ballast)."""
    data = req.app.sandbox.storage_status(storage.id, node)
    return {"total": int(data["total"]), "used": int(data["used"]), "avail": int(data["avail"])}


def _status_entry(req: Request, storage: Storage, node: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": storage.type, "content": ",".join(sorted(storage.content)), "enabled": int(storage.enabled),
        "active": int(storage.enabled), "shared": int(storage.shared), "total": 0, "used": 0, "avail": 0,
    }
    if storage.enabled:  # an inactive or disabled storage reports 0s (reference §4.6)
        entry.update(storage_usage(req, storage, node))
    return entry


def _list_storages(req: Request) -> list[dict[str, Any]]:
    node = req.params["node"]
    node_or_fail(req, node)
    wanted = set(req.params["content"].split(",")) if "content" in req.params else None
    out = []
    for sid in sorted(cluster_of(req).storages):
        storage = cluster_of(req).storages[sid]
        if storage.nodes is not None and node not in storage.nodes:
            continue
        if "storage" in req.params and sid != req.params["storage"]:
            continue
        if wanted and not wanted & set(storage.content):
            continue
        if req.params.get("enabled") and not storage.enabled:
            continue
        entry = {"storage": sid, **_status_entry(req, storage, node)}
        if entry["total"]:
            entry["used_fraction"] = entry["used"] / entry["total"]
        out.append(entry)
    return out


def _storage_index(req: Request) -> list[dict[str, str]]:
    node_or_fail(req, req.params["node"])
    storage_or_400(req, req.params["storage"], req.params["node"])
    return [{"subdir": s} for s in ("content", "download-url", "file-restore", "prunebackups", "rrd",
                                    "rrddata", "status", "upload")]


def _status(req: Request) -> dict[str, Any]:
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    return _status_entry(req, storage, node)


def _content(req: Request) -> list[dict[str, Any]]:
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    content = req.params.get("content")
    if content is not None and content not in storage.content:
        return []
    return req.app.sandbox.listing(storage.id, node, vmid=req.params.get("vmid"), content=content)


def _volume_path(req: Request) -> tuple[Storage, str, Path]:
    """Resolve ``{volume}`` (``sid:backup/file`` or ``backup/file``) to its file (Content.pm real_volume_id)."""
    storage = storage_or_400(req, req.params["storage"], req.params["node"])
    path = req.app.sandbox.volume_path(storage.id, req.params["volume"], req.params["node"])
    return storage, f"{storage.id}:backup/{path.name}", path


def _first_line(path: Path) -> str | None:
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]


def _volume_info(req: Request) -> dict[str, Any]:
    node_or_fail(req, req.params["node"])
    _, volid, path = _volume_path(req)
    size = path.stat().st_size
    match = BACKUP_VOLNAME_RE.match(volid.partition(":")[2])
    fmt = match.group(2) if match else "raw"
    info: dict[str, Any] = {"path": str(path), "size": size, "used": size, "format": fmt}
    notes = _first_line(path.with_name(path.name + ".notes"))
    if notes is not None:
        info["notes"] = notes
    if path.with_name(path.name + ".protected").exists():
        info["protected"] = 1
    return info


def _update_volume(req: Request) -> None:
    """Notes and protection as sidecar files (DirPlugin.pm update_volume_notes / _attribute, §1.3)."""
    node_or_fail(req, req.params["node"])
    storage, volid, _ = _volume_path(req)
    protected = req.params.get("protected")
    req.app.sandbox.update_volume(req.params["node"], storage.id, volid, notes=req.params.get("notes"),
                                  protected=None if protected is None else bool(protected))


def _delete_volume(req: Request) -> str:
    """Returns the UPID of an ``imgdel`` task; a protected backup fails inside that task (§4.6)."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage, volid, _ = _volume_path(req)
    return req.app.sandbox.delete_volume(node, storage.id, volid, req.principal.userid)


def _prune_params(req: Request) -> dict[str, Any]:
    return {k: v for k, v in req.params.items() if k in ("prune-backups", "type", "vmid")}


def _prune_dry_run(req: Request) -> list[dict[str, Any]]:
    """The marks of ``PVE::Storage::prune_backups`` with dryrun=1 (reference §2.2), sorted by volid."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    return req.app.sandbox.prune(node, storage.id, _prune_params(req), req.principal.userid, dry_run=True)


def _prune(req: Request) -> str:
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    return req.app.sandbox.prune(node, storage.id, _prune_params(req), req.principal.userid)


VOLUME = {"node": NODE, "storage": STORAGE, "volume": Param(optional=False)}
PRUNE = {
    "node": NODE, "storage": STORAGE, "prune-backups": Param(),
    "type": Param(enum=("qemu", "lxc")), "vmid": Param(type="integer", format=verify_vmid),
}


def register(router: Router) -> None:
    node_storage = {"node": NODE, "storage": STORAGE}
    router.add("GET", "/nodes/{node}/storage", {
        "node": NODE, "content": Param(), "enabled": Param(type="boolean"), "format": Param(type="boolean"),
        "storage": Param(), "target": Param(),
    })(_list_storages)
    router.add("GET", "/nodes/{node}/storage/{storage}", node_storage)(_storage_index)
    router.add("GET", "/nodes/{node}/storage/{storage}/status", node_storage,
               perm=("/storage/{storage}", "Datastore.Audit"))(_status)
    router.add("GET", "/nodes/{node}/storage/{storage}/content", {
        **node_storage, "content": Param(), "vmid": Param(type="integer", format=verify_vmid),
    }, perm=("/storage/{storage}", "Datastore.Audit"))(_content)
    router.add("GET", "/nodes/{node}/storage/{storage}/content/{volume}", VOLUME,
               perm=("/storage/{storage}", "Datastore.Audit"))(_volume_info)
    router.add("PUT", "/nodes/{node}/storage/{storage}/content/{volume}", {
        **VOLUME, "notes": Param(), "protected": Param(type="boolean"),
    }, perm=("/storage/{storage}", "Datastore.Allocate"))(_update_volume)
    router.add("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}", {
        **VOLUME, "delay": Param(type="integer", minimum=1, maximum=30),
    }, perm=("/storage/{storage}", "Datastore.Allocate"))(_delete_volume)
    router.add("GET", "/nodes/{node}/storage/{storage}/prunebackups", PRUNE,
               perm=("/storage/{storage}", "Datastore.Audit"))(_prune_dry_run)
    router.add("DELETE", "/nodes/{node}/storage/{storage}/prunebackups",
               {**PRUNE, "prune-backups": Param(optional=False)},
               perm=("/storage/{storage}", "Datastore.Allocate"))(_prune)
