"""Cluster-wide reads: ``/version``, ``/cluster/status``, ``/cluster/resources``,
``/cluster/config/qdevice``, ``/cluster/jobs/schedule-analyze``.

Sources: pve-manager ``PVE/API2/Version.pm``, ``PVE/API2/Cluster.pm`` (``get_status``, ``resources``),
``PVE/API2Tools.pm`` (``extract_vm_stats``, ``extract_node_stats``, ``extract_storage_stats``),
``PVE/API2/ClusterConfig.pm``, ``PVE/API2/Cluster/Jobs.pm``.
"""

from __future__ import annotations

import time
from typing import Any

from vzkeep.pve import calendar
from vzkeep.sandbox.api.common import cluster_of, guest_figures, guest_status, node_figures, now
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.api.storage import storage_usage
from vzkeep.sandbox.model import Guest


def _version(req: Request) -> dict[str, str]:
    return req.version.version_info()


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


def vm_resource(guest: Guest, req: Request, at: float) -> dict[str, Any]:
    """``extract_vm_stats``: id, vmid, node, type, status, then the RRD figures when the node reports."""
    node = cluster_of(req).nodes[guest.node]
    entry: dict[str, Any] = {"id": f"{guest.type}/{guest.vmid}", "vmid": guest.vmid, "node": guest.node,
                             "type": guest.type, "status": guest_status(guest, node)}
    if node.online:
        figures = guest_figures(guest, node, at)
        entry.update({"name": guest.name, "template": 0, **figures})
    else:
        entry["name"] = guest.name
    return entry


def _storage_resources(req: Request) -> list[dict[str, Any]]:
    """One entry per (storage, node) where the storage is enabled and visible, for storages the caller
    may audit (``Datastore.Audit`` on ``/storage/<id>``)."""
    cluster = cluster_of(req)
    entries = []
    usage_cache: dict[str, dict[str, int]] = {}
    for sid in sorted(cluster.storages):
        if not req.allowed(f"/storage/{sid}", "Datastore.Audit"):
            continue
        storage = cluster.storages[sid]
        for node_name in sorted(cluster.nodes):
            node = cluster.nodes[node_name]
            if not storage.visible_from(node_name):
                continue
            entry: dict[str, Any] = {
                "id": f"storage/{node_name}/{sid}", "storage": sid, "node": node_name, "type": "storage",
                "plugintype": storage.type, "status": "unknown", "shared": int(storage.shared),
                "content": ",".join(sorted(storage.content)),
            }
            if node.online:
                # A shared storage has one usage seen from every node; compute it once per request.
                key = sid if storage.shared else f"{sid}/{node_name}"
                usage = usage_cache.get(key) or usage_cache.setdefault(key, storage_usage(req, storage, node_name))
                entry.update({"maxdisk": usage["total"], "disk": usage["used"], "status": "available"})
            entries.append(entry)
    return entries


def node_resource(req: Request, name: str, at: float) -> dict[str, Any]:
    """``extract_node_stats``: figures only for callers with ``Sys.Audit`` on the node."""
    node = cluster_of(req).nodes[name]
    entry: dict[str, Any] = {"id": f"node/{name}", "node": name, "type": "node",
                             "status": "online" if node.online else "offline"}
    if node.online:
        entry["level"] = ""
    if req.allowed(f"/nodes/{name}", "Sys.Audit"):
        figures = node_figures(node, at)
        entry.update({k: figures[k] for k in ("uptime", "cpu", "mem", "disk", "maxcpu", "maxmem", "maxdisk")
                      if k in figures})
    return entry


def _resources(req: Request) -> list[dict[str, Any]]:
    """In PVE's order: pools, guests, nodes, storages; each filtered by what the caller may audit."""
    kind = req.params.get("type")
    at = now(req)
    cluster = cluster_of(req)
    out: list[dict[str, Any]] = []
    with cluster.lock:
        if kind is None:
            out += [{"id": f"/pool/{p}", "pool": p, "type": "pool"} for p in sorted(cluster.pools)
                    if req.allowed(f"/pool/{p}", "Pool.Audit")]
        if kind in (None, "vm"):
            for guest in sorted(cluster.guests.values(), key=lambda g: str(g.vmid)):
                if not req.allowed(f"/vms/{guest.vmid}", "VM.Audit"):
                    continue
                entry = vm_resource(guest, req, at)
                if guest.lock:
                    entry["lock"] = guest.lock
                if guest.tags:
                    entry["tags"] = ";".join(guest.tags)  # PVE stores tags ';'-separated
                if guest.pool and req.allowed(f"/pool/{guest.pool}", "Pool.Audit"):
                    entry["pool"] = guest.pool
                out.append(entry)
        if kind in (None, "node"):
            out += [node_resource(req, name, at) | {"cgroup-mode": 2} for name in sorted(cluster.nodes)]
        if kind in (None, "storage"):
            out += _storage_resources(req)
    return out


def _qdevice(req: Request) -> dict[str, Any]:
    # No QDevice in the sandbox: ClusterConfig.pm then returns an empty object, which the exporter
    # treats as "not configured".
    return {}


def _schedule_analyze(req: Request) -> list[dict[str, Any]]:
    """``[{timestamp, utc}]``: the next runs of a schedule (the schema has checked its format)."""
    event = calendar.parse(req.params["schedule"])
    last = int(req.params["starttime"]) if "starttime" in req.params else int(now(req))
    tz = cluster_of(req).nodes[req.app.local_node].timezone
    out = []
    for _ in range(int(req.get("iterations") or 10)):
        nxt = event.next_after(last, tz)
        if nxt is None:
            break
        out.append({"timestamp": nxt, "utc": time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(nxt))})
        last = nxt
    return out


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/version")(_version)
    handlers.add("GET", "/cluster/status")(_cluster_status)
    handlers.add("GET", "/cluster/resources")(_resources)
    handlers.add("GET", "/cluster/config/qdevice")(_qdevice)
    handlers.add("GET", "/cluster/jobs/schedule-analyze")(_schedule_analyze)
