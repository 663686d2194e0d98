"""Storage endpoints under ``/nodes/{node}/storage``: status, content (list, info, notes/protection,
delete) and prune.

Sources: pve-storage ``src/PVE/API2/Storage/Status.pm`` (``index``, ``read_status``), ``Content.pm``
(``index``, ``info``, ``updateattributes``, ``delete``), ``PruneBackups.pm``, ``src/PVE/Storage.pm``
(``storage_info``, ``check_volume_access``). Archives are files; the engine lists and reads them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vzkeep.pve import archive
from vzkeep.sandbox.api.common import cluster_of, node_or_fail, storage_or_400
from vzkeep.sandbox.api.errors import ApiError, die
from vzkeep.sandbox.api.formats import split_list
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.model import Storage

# Plugin.pm: backup volume names, ``backup/<file>`` with $BACKUP_EXT_RE_2.
BACKUP_VOLNAME_RE = re.compile(r"^backup/([^/]+\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?))$")


def storage_usage(req: Request, storage: Storage, node: str) -> dict[str, int]:
    """``{total, used, avail}`` in bytes as the engine sees them (capacity, fill ballast)."""
    data = req.app.sandbox.storage_status(storage.id, node)
    return {"total": int(data["total"]), "used": int(data["used"]), "avail": int(data["avail"])}


def _storage_info(req: Request, storage: Storage, node: str) -> dict[str, Any]:
    """``storage_info`` for one storage on ``node``: usage only where it is enabled there (and so active)."""
    enabled = storage.visible_from(node)  # storage_check_enabled: not disabled, and configured for the node
    entry: dict[str, Any] = {
        "type": storage.type, "content": ",".join(sorted(storage.content)), "enabled": int(enabled),
        "active": 0, "shared": int(storage.shared), "total": 0, "used": 0, "avail": 0,
    }
    if enabled:
        entry.update(storage_usage(req, storage, node), active=1)
    return entry


def _no_such_storage() -> ApiError:
    return ApiError(400, "Parameter verification failed.\n", {"storage": "No such storage."})


def _list_storages(req: Request) -> list[dict[str, Any]]:
    """Status.pm ``index``: the storages (of the wanted content: enabled here only), that the caller may
    audit or allocate space on."""
    node = req.params["node"]
    node_or_fail(req, node)
    wanted = set(split_list(req.params["content"])) if "content" in req.params else None
    storages = {sid: s for sid, s in cluster_of(req).storages.items()
                if wanted is None or (s.visible_from(node) and wanted & set(s.content))}
    if req.params.get("storage") and req.params["storage"] not in storages:
        raise _no_such_storage()
    out = []
    for sid in sorted(storages):
        storage = storages[sid]
        if not req.allowed(f"/storage/{sid}", "Datastore.Audit", "Datastore.AllocateSpace", any_=True):
            continue
        if req.params.get("storage") and req.params["storage"] != sid:
            continue
        if req.params.get("enabled") and not storage.enabled:
            continue
        entry = {"storage": sid, **_storage_info(req, storage, node)}
        if entry["total"]:
            entry["used_fraction"] = entry["used"] / entry["total"]
        out.append(entry)
    return out


def _storage_index(req: Request) -> list[dict[str, str]]:
    return [{"subdir": s} for s in req.version.schema.children("/nodes/{node}/storage/{storage}")]


def _status(req: Request) -> dict[str, Any]:
    node = req.params["node"]
    node_or_fail(req, node)
    storage = cluster_of(req).storages.get(req.params["storage"])
    if storage is None:
        raise _no_such_storage()
    return _storage_info(req, storage, node)


# -- content ---------------------------------------------------------------------------------------------


def backup_owner(volid: str) -> int | None:
    """The guest a backup volume belongs to (Plugin.pm ``parse_volname``: from the archive name)."""
    name = volid.partition(":")[2]
    match = BACKUP_VOLNAME_RE.match(name)
    if not match:
        return None
    try:
        return archive.parse(match.group(1)).vmid
    except ValueError:
        return None


def volume_access(req: Request, volid: str, noerr: bool = False) -> bool:
    """pve-storage ``Storage.pm`` ``check_volume_access`` for backup volumes: ``Datastore.Allocate`` on
    the storage, or ``Datastore.AllocateSpace`` on it and ``VM.Backup`` on the owning guest."""
    sid = volid.partition(":")[0]
    env, who = req.rpcenv, req.authid
    if env.check(who, f"/storage/{sid}", ["Datastore.Allocate"], noerr=True):
        return True
    owner = backup_owner(volid)
    if owner is None:
        if noerr:
            return False
        raise die(f"missing privileges to access {volid}\n")
    return (env.check(who, f"/storage/{sid}", ["Datastore.AllocateSpace"], noerr)
            and env.check(who, f"/vms/{owner}", ["VM.Backup"], noerr))


def _content(req: Request) -> list[dict[str, Any]]:
    """Content.pm ``index``: the storage's volumes, each filtered through ``check_volume_access``; a
    caller without access to a volume gets a shorter list, not an error."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    content = req.params.get("content")
    if content is not None and content not in storage.content:
        return []
    listing = req.app.sandbox.listing(storage.id, node, vmid=req.params.get("vmid"), content=content)
    return [item for item in listing if volume_access(req, item["volid"], noerr=True)]


def _real_volume(req: Request) -> tuple[Storage, str, Path]:
    """``$real_volume_id``: ``{volume}`` is ``sid:backup/file`` or, with ``storage``, ``backup/file``."""
    storage = storage_or_400(req, req.params["storage"], req.params["node"])
    path = req.app.sandbox.volume_path(storage.id, req.params["volume"], req.params["node"])
    return storage, f"{storage.id}:backup/{path.name}", path


def _first_line(path: Path) -> str | None:
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]


def _volume_info(req: Request) -> dict[str, Any]:
    node_or_fail(req, req.params["node"])
    _, volid, path = _real_volume(req)
    volume_access(req, volid)
    size = path.stat().st_size
    match = BACKUP_VOLNAME_RE.match(volid.partition(":")[2])
    fmt = match.group(2) if match else "raw"
    info: dict[str, Any] = {"path": str(path), "size": size, "used": size, "format": fmt}
    notes = _first_line(path.with_name(path.name + ".notes"))
    if notes is not None:
        info["notes"] = notes
    info["protected"] = 1 if path.with_name(path.name + ".protected").exists() else 0
    return info


def _update_volume(req: Request) -> None:
    """Notes and protection as sidecar files (DirPlugin.pm ``update_volume_attribute``)."""
    node_or_fail(req, req.params["node"])
    storage, volid, _ = _real_volume(req)
    volume_access(req, volid)
    protected = req.params.get("protected")
    req.app.sandbox.update_volume(req.params["node"], storage.id, volid, notes=req.params.get("notes"),
                                  protected=None if protected is None else bool(protected))


def _delete_volume(req: Request) -> str:
    """Content.pm ``delete``: backups need AllocateSpace + VM.Backup, other volumes Allocate; the UPID of
    an ``imgdel`` task (a protected backup fails inside that task)."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage, volid, _ = _real_volume(req)
    owner = backup_owner(volid)
    if owner is not None:
        req.require(f"/storage/{storage.id}", "Datastore.AllocateSpace")
        req.require(f"/vms/{owner}", "VM.Backup")
    else:
        req.require(f"/storage/{storage.id}", "Datastore.Allocate")
    return req.app.sandbox.delete_volume(node, storage.id, volid, req.authid)


# -- prune -----------------------------------------------------------------------------------------------


def _prune_params(req: Request) -> dict[str, Any]:
    return {k: v for k, v in req.params.items() if k in ("prune-backups", "type", "vmid")}


def _prune_dry_run(req: Request) -> list[dict[str, Any]]:
    """The marks of ``PVE::Storage::prune_backups`` with dryrun=1, sorted by volid."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    return req.app.sandbox.prune(node, storage.id, _prune_params(req), req.authid, dry_run=True)


def _prune(req: Request) -> str:
    """PruneBackups.pm ``delete``: one guest's backups need AllocateSpace + VM.Backup, all need Allocate."""
    node = req.params["node"]
    node_or_fail(req, node)
    storage = storage_or_400(req, req.params["storage"], node)
    if req.params.get("vmid") is not None:
        req.require(f"/storage/{storage.id}", "Datastore.AllocateSpace")
        req.require(f"/vms/{req.params['vmid']}", "VM.Backup")
    else:
        req.require(f"/storage/{storage.id}", "Datastore.Allocate")
    return req.app.sandbox.prune(node, storage.id, _prune_params(req), req.authid)


def register(handlers: Handlers) -> None:
    base = "/nodes/{node}/storage"
    handlers.add("GET", base)(_list_storages)
    handlers.add("GET", base + "/{storage}")(_storage_index)
    handlers.add("GET", base + "/{storage}/status")(_status)
    handlers.add("GET", base + "/{storage}/content")(_content)
    handlers.add("GET", base + "/{storage}/content/{volume}")(_volume_info)
    handlers.add("PUT", base + "/{storage}/content/{volume}")(_update_volume)
    handlers.add("DELETE", base + "/{storage}/content/{volume}")(_delete_volume)
    handlers.add("GET", base + "/{storage}/prunebackups")(_prune_dry_run)
    handlers.add("DELETE", base + "/{storage}/prunebackups")(_prune)
