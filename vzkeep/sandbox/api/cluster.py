"""Cluster-wide read endpoints: ``/version``, ``/cluster/status``, ``/cluster/resources``, ``/pools``,
``/cluster/config/qdevice``, ``/cluster/jobs/schedule-analyze`` (reference §4.7, §3.5)."""

from __future__ import annotations

import time
from typing import Any

from vzkeep.sandbox.api.common import cluster_of, guest_figures, guest_status, node_figures, now
from vzkeep.sandbox.api.errors import param_error
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import Param
from vzkeep.sandbox.api.storage import storage_usage
from vzkeep.sandbox.model import Guest

# What `GET /version` answers on PVE 8.3 (pve-manager PVE/API2/Version.pm: version, release, repoid).
PVE_VERSION = {"version": "8.3.2", "release": "8.3", "repoid": "3e76eec21c4a14a7"}


def _version(req: Request) -> dict[str, str]:
    return dict(PVE_VERSION)


def _cluster_status(req: Request) -> list[dict[str, Any]]:
    """One ``cluster`` entry, then one ``node`` entry per node; the first node is ``local``."""
    cluster = cluster_of(req)
    names = sorted(cluster.nodes)
    entries: list[dict[str, Any]] = [{
        "type": "cluster", "id": "cluster", "name": cluster.name, "nodes": len(names),
        "quorate": int(2 * sum(cluster.nodes[n].online for n in names) > len(names)), "version": len(names),
    }]
    for index, name in enumerate(names, start=1):
        entries.append({
            "type": "node", "id": f"node/{name}", "name": name, "nodeid": index, "ip": f"127.0.1.{index}",
            "level": "", "local": int(name == req.app.local_node), "online": int(cluster.nodes[name].online),
        })
    return entries


def _vm_resource(guest: Guest, req: Request, at: float) -> dict[str, Any]:
    node = cluster_of(req).nodes[guest.node]
    entry: dict[str, Any] = {
        "id": f"{guest.type}/{guest.vmid}", "vmid": guest.vmid, "node": guest.node, "type": guest.type,
        "status": guest_status(guest, node), "name": guest.name, "template": 0,
    }
    if node.online:
        entry.update(guest_figures(guest, node, at))
    if guest.pool:
        entry["pool"] = guest.pool
    if guest.lock:
        entry["lock"] = guest.lock
    if guest.tags:
        entry["tags"] = ";".join(guest.tags)  # PVE stores tags ';'-separated
    return entry


def _storage_resources(req: Request) -> list[dict[str, Any]]:
    """One entry per (storage, node) where the storage is enabled and visible (reference §4.7)."""
    cluster = cluster_of(req)
    entries = []
    usage_cache: dict[str, dict[str, int]] = {}
    for node_name in sorted(cluster.nodes):
        node = cluster.nodes[node_name]
        for sid in sorted(cluster.storages):
            storage = cluster.storages[sid]
            if not storage.visible_from(node_name):
                continue
            entry = {
                "id": f"storage/{node_name}/{sid}", "storage": sid, "node": node_name, "type": "storage",
                "plugintype": storage.type, "status": "available" if node.online else "unknown",
                "shared": int(storage.shared), "content": ",".join(sorted(storage.content)),
            }
            if node.online:
                # A shared storage has one usage seen from every node; compute it once per request.
                key = sid if storage.shared else f"{sid}/{node_name}"
                usage = usage_cache.get(key) or usage_cache.setdefault(key, storage_usage(req, storage, node_name))
                entry.update({"maxdisk": usage["total"], "disk": usage["used"]})
            entries.append(entry)
    return entries


def _node_resources(req: Request, at: float) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    entries = []
    for name in sorted(cluster.nodes):
        node = cluster.nodes[name]
        entry = {"id": f"node/{name}", "node": name, "type": "node", "level": "",
                 "status": "online" if node.online else "offline", "cgroup-mode": 2}
        entry.update(node_figures(node, at))
        entries.append(entry)
    return entries


def _resources(req: Request) -> list[dict[str, Any]]:
    kind = req.params.get("type")
    at = now(req)
    cluster = cluster_of(req)
    with cluster.lock:
        out: list[dict[str, Any]] = []
        if kind in (None, "vm"):
            out += [_vm_resource(g, req, at) for g in sorted(cluster.guests.values(), key=lambda g: g.vmid)]
        if kind in (None, "storage"):
            out += _storage_resources(req)
        if kind in (None, "node"):
            out += _node_resources(req, at)
        if kind is None:  # pool entries only without a type filter (reference §4.7)
            out += [{"id": f"pool/{p}", "pool": p, "type": "pool"} for p in sorted(cluster.pools)]
    return out


def _pools(req: Request) -> list[dict[str, Any]]:
    pools = cluster_of(req).pools
    return [{"poolid": p.id, **({"comment": p.comment} if p.comment else {})} for p in
            sorted(pools.values(), key=lambda p: p.id)]


def _pool(req: Request) -> dict[str, Any]:
    cluster = cluster_of(req)
    pool = cluster.pools.get(req.params["poolid"])
    if pool is None:
        raise param_error({"poolid": f"pool '{req.params['poolid']}' does not exist"})
    at = now(req)
    members = [_vm_resource(g, req, at) for g in sorted(cluster.guests.values(), key=lambda g: g.vmid)
               if g.pool == pool.id]
    return {"members": members, **({"comment": pool.comment} if pool.comment else {})}


def _qdevice(req: Request) -> dict[str, Any]:
    # No QDevice in the sandbox: PVE then returns an empty object **[derived from
    # pve-manager PVE/API2/ClusterConfig.pm]**, which the exporter treats as "not configured".
    return {}


def _schedule_analyze(req: Request) -> list[dict[str, Any]]:
    """``[{timestamp, utc}]``: the next runs of a schedule (pve-manager PVE/API2/Cluster/Jobs.pm)."""
    from vzkeep.pve import calendar

    schedule = req.params["schedule"]
    try:
        event = calendar.parse(schedule)
    except Exception as exc:
        raise param_error({"schedule": f"invalid format - {str(exc).strip()}"}) from exc
    last = int(req.params.get("starttime", int(now(req))))
    tz = cluster_of(req).nodes[req.app.local_node].timezone
    out = []
    for _ in range(req.params.get("iterations", 10)):
        nxt = event.next_after(last, tz)
        if nxt is None:
            break
        out.append({"timestamp": nxt, "utc": time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(nxt))})
        last = nxt
    return out


def register(router: Router) -> None:
    router.add("GET", "/version")(_version)
    router.add("GET", "/cluster/status", perm=("/", "Sys.Audit"))(_cluster_status)
    router.add("GET", "/cluster/resources", {"type": Param(enum=("vm", "storage", "node", "sdn"))})(_resources)
    router.add("GET", "/pools")(_pools)
    router.add("GET", "/pools/{poolid}", {"poolid": Param(optional=False), "type": Param(enum=("qemu", "lxc",
               "storage"))}, perm=("/pool/{poolid}", "Pool.Audit"))(_pool)
    router.add("GET", "/cluster/config/qdevice", perm=("/", "Sys.Audit"))(_qdevice)
    router.add("GET", "/cluster/jobs/schedule-analyze", {
        "schedule": Param(optional=False, max_length=128),
        "starttime": Param(type="integer"),
        "iterations": Param(type="integer", minimum=1, maximum=100),
    })(_schedule_analyze)
