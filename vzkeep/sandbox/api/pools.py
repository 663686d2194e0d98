"""Pools: ``/pools`` (GET/POST/PUT/DELETE, ``poolid`` as a parameter: the 9.x shape, also in 8.4) and
``/pools/{poolid}`` (GET/PUT/DELETE, deprecated but served by both).

Source: pve-manager ``PVE/API2/Pool.pm`` (``index``, ``create_pool``, ``update_pool``, ``read_pool``,
``delete_pool``). Errors raised inside ``lock_user_config`` carry its prefix (``create pool failed:
…``); pool members live in the engine's model (each guest's pool, ``Pool.storage``).
"""

from __future__ import annotations

import re
from typing import Any

from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.access.usercfg import delete_pool_acl
from vzkeep.sandbox.api.cluster import vm_resource
from vzkeep.sandbox.api.common import cluster_of, now
from vzkeep.sandbox.api.errors import ApiError, die, locked
from vzkeep.sandbox.api.formats import split_list
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.api.storage import storage_usage
from vzkeep.sandbox.model import Pool


def _members(req: Request, pool: Pool, kind: str | None) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    at = now(req)
    members = [vm_resource(g, req, at) for g in sorted(cluster.guests.values(), key=lambda g: str(g.vmid))
               if g.pool == pool.id and kind in (None, g.type)]
    if kind in (None, "storage"):
        for sid in sorted(pool.storage):
            storage = cluster.storages.get(sid)
            if storage is None:
                continue
            node = req.app.local_node  # "prefer local node"
            if storage.nodes and node not in storage.nodes:
                node = sorted(storage.nodes)[0]
            entry = {"id": f"storage/{node}/{sid}", "storage": sid, "node": node, "type": "storage",
                     "plugintype": storage.type, "status": "unknown", "shared": int(storage.shared),
                     "content": ",".join(sorted(storage.content))}
            if cluster.nodes.get(node) is not None and cluster.nodes[node].online and storage.visible_from(node):
                usage = storage_usage(req, storage, node)
                entry.update(maxdisk=usage["total"], disk=usage["used"], status="available")
            members.append(entry)
    return members


def _index(req: Request) -> list[dict[str, Any]]:
    """Every pool the caller may audit, or the one ``poolid`` with its members."""
    cluster = cluster_of(req)
    poolid = req.params.get("poolid")
    if poolid:
        pool = cluster.pools.get(poolid)
        if pool is None:
            raise die(f"pool '{poolid}' does not exist\n")
        entry: dict[str, Any] = {"members": _members(req, pool, req.params.get("type"))}
        if pool.comment:
            entry["comment"] = pool.comment
        entry["poolid"] = poolid
        return [entry]
    out = []
    for pid in sorted(cluster.pools):
        if not req.allowed(f"/pool/{pid}", "Pool.Audit"):
            continue
        item: dict[str, Any] = {"poolid": pid}
        if cluster.pools[pid].comment:
            item["comment"] = cluster.pools[pid].comment
        out.append(item)
    return out


def _read(req: Request) -> dict[str, Any]:
    """The deprecated ``GET /pools/{poolid}``: ``index`` for that pool, without ``poolid``."""
    entry = _index(req)[0]
    entry.pop("poolid", None)
    return entry


def _create(req: Request) -> None:
    pid = req.params["poolid"]
    try:
        with configuration.pools(req.app.sandbox) as draft:
            if pid in draft.pools:
                raise ValueError(f"pool '{pid}' already exists\n")
            parent = re.match(r"^(.*)/([^/]+)$", pid)
            if parent and parent.group(1) not in draft.pools:
                raise ValueError(f"parent '{parent.group(1)}' of pool '{pid}' does not exist\n")
            leaf = parent.group(2) if parent else pid
            if req.version.pool_name_starts_with_letter and not re.match(r"^[A-Za-z]", leaf):
                raise ValueError("pool name must start with a letter\n")
            draft.pools[pid] = Pool(id=pid, comment=req.params.get("comment") or "")
    except (ValueError, ApiError) as exc:
        raise locked("create pool failed", exc) from None


def _update(req: Request) -> None:
    """``update_pool``: comment, and VMs/storages added or (``delete``) removed; each member needs the
    right to modify permissions on it; moving a guest from another pool needs ``allow-move``."""
    p = req.params
    pid = p["poolid"]
    env, who = req.rpcenv, req.authid
    try:
        with configuration.pools(req.app.sandbox) as draft:
            pool = draft.pools.get(pid)
            if pool is None:
                raise ValueError(f"pool '{pid}' does not exist\n")
            if p.get("comment") is not None:
                pool.comment = p["comment"]
            for vmid_text in split_list(p.get("vms")) if p.get("vms") is not None else []:
                vmid = int(vmid_text)
                env.check_perm_modify(who, f"/vms/{vmid}")
                current = draft.members.get(vmid)
                if p.get("delete"):
                    if current != pid:
                        raise ValueError(f"VM {vmid} is not a pool member\n")
                    draft.members[vmid] = None
                    continue
                if current == pid:
                    raise ValueError(f"VM {vmid} is already a pool member\n")
                if current is not None:
                    if not p.get("allow-move"):
                        raise ValueError(f"VM {vmid} belongs already to pool '{current}' and 'allow-move' is not set\n")
                    env.check(who, f"/pool/{current}", ["Pool.Allocate"])
                draft.members[vmid] = pid
            for sid in split_list(p.get("storage")) if p.get("storage") is not None else []:
                env.check_perm_modify(who, f"/storage/{sid}")
                if p.get("delete"):
                    if sid not in pool.storage:
                        raise ValueError(f"Storage '{sid}' is not a pool member\n")
                    pool.storage.remove(sid)
                elif sid in pool.storage:
                    raise ValueError(f"Storage '{sid}' is already a pool member\n")
                else:
                    pool.storage.append(sid)
    except (ValueError, ApiError) as exc:
        raise locked("update pools failed", exc) from None


def _delete(req: Request) -> None:
    """``delete_pool``: only an empty pool (members that no longer exist do not count); its ACLs go too."""
    pid = req.params["poolid"]
    sandbox = req.app.sandbox
    try:
        with configuration.pools(sandbox) as draft:
            pool = draft.pools.get(pid)
            if pool is None:
                raise ValueError(f"pool '{pid}' does not exist\n")
            for sub in sorted(p for p in draft.pools if p.startswith(pid + "/")):
                raise ValueError(f"pool '{pid}' is not empty (contains pool '{sub}')\n")
            for vmid in sorted(str(v) for v, owner in draft.members.items() if owner == pid):
                raise ValueError(f"pool '{pid}' is not empty (contains VM {vmid})\n")
            for sid in sorted(pool.storage):
                if sid in cluster_of(req).storages:
                    raise ValueError(f"pool '{pid}' is not empty (contains storage '{sid}')\n")
            del draft.pools[pid]
            with configuration.access(sandbox, req.app.access) as cfg:
                delete_pool_acl(cfg, pid)
    except (ValueError, ApiError) as exc:
        raise locked("delete pool failed", exc) from None


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/pools")(_index)
    handlers.add("POST", "/pools")(_create)
    handlers.add("PUT", "/pools")(_update)
    handlers.add("DELETE", "/pools")(_delete)
    handlers.add("GET", "/pools/{poolid}")(_read)
    handlers.add("PUT", "/pools/{poolid}")(_update)
    handlers.add("DELETE", "/pools/{poolid}")(_delete)
