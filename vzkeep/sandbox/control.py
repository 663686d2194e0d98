"""The ``/_sandbox/`` control API: things a real cluster does to you, on demand.

Clearly not PVE (a path PVE never serves), same tokens and error shapes as the PVE API; the admin
token may change things, the auditor token may only read. Every endpoint is wrapped by a
``vzkeep sandbox`` command so a scenario reads like a story::

    POST /_sandbox/advance                 seconds=86400 | duration=1d   run the scheduler up to then
                                           (at most 366 days per call; the reply's `now` says how far it got)
    GET  /_sandbox/status                                                  clock, nodes, storages, jobs
    POST /_sandbox/nodes                   name, timezone                  a fresh node joins (shared storage seen)
    POST /_sandbox/nodes/{node}/down|up                                    power a node off / on
    POST /_sandbox/nodes/{node}/lose                                       the node is gone with its disk
    POST /_sandbox/storage/{storage}/capacity  bytes=N (0 = unlimited)     writes beyond it hit ENOSPC
    POST /_sandbox/storage/{storage}/fill      percent=P | bytes=N, node   occupy space with a filler file
    POST /_sandbox/corrupt                 volid=…, how=flip|truncate|zero, offset=N, node
    POST /_sandbox/guests                  vmid, name, type, node, pool, disk_gb, status, tags
    DELETE /_sandbox/guests/{vmid}                                         the guest vanishes (no task)
    POST /_sandbox/guests/{vmid}/lock      lock=backup|… (empty = unlock)
    GET  /_sandbox/guests/{vmid}/digest                                    SHA-256 of the disk content
    POST /_sandbox/faults                  kind=restore-midway|config-update, count=N (0 = disarm),
                                           cleanup=0|1 (restore-midway: 0 = PVE's cleanup cannot write
                                           /etc/pve, the guest keeps `lock: create`)
    GET  /_sandbox/faults                                                  the armed faults
"""

from __future__ import annotations

import re
from typing import Any

from vzkeep.pve.values import UnknownTimeZone, load_zone
from vzkeep.sandbox.api.common import cluster_of, storage_or_400
from vzkeep.sandbox.api.errors import die, param_error
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import NODE, STORAGE, VMID, Param, verify_node_name
from vzkeep.sandbox.engine import MAX_ADVANCE_SECONDS, advance_seconds
from vzkeep.sandbox.faults import KINDS
from vzkeep.sandbox.model import Guest, Storage

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
WRITE = ("/", "Sys.Modify")
READ = ("/", "Sys.Audit")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``12h``, ``1d``, ``2w`` → seconds; ValueError names what is allowed."""
    total = 0.0
    parts = text.replace(",", " ").split()
    for part in parts or [text]:
        match = DURATION_RE.match(part)
        if not match:
            raise ValueError(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 1d, 12h, 90m)")
        total += float(match.group(1)) * UNITS[match.group(2) or "s"]
    return total


def _advance(req: Request) -> dict[str, Any]:
    if "duration" in req.params:
        try:
            seconds = parse_duration(req.params["duration"])
        except ValueError as exc:
            raise param_error({"duration": str(exc)}) from exc
    elif "seconds" in req.params:
        seconds = req.params["seconds"]
    else:
        raise param_error({"duration": "property is missing and it is not optional"})
    seconds = advance_seconds(seconds)
    sandbox = req.app.sandbox
    before = sandbox.clock.now()
    result = sandbox.advance(seconds)
    now = sandbox.clock.now()
    out: dict[str, Any] = {"now": int(now), "advanced": seconds}
    if now < before + seconds:  # interrupted (the sandbox is stopping): say how far it got
        out["interrupted"] = 1
        out["advanced"] = int(now - before)
    if isinstance(result, list):
        out["tasks"] = result
    return out


def _storage_view(req: Request, storage: Storage, node: str | None = None) -> dict[str, Any]:
    """One row per place: a shared storage once, a local one per node that lists it."""
    from vzkeep.sandbox.api.storage import storage_usage

    cluster = cluster_of(req)
    nodes = [node] if node else [n for n in sorted(cluster.nodes) if storage.visible_from(n)]
    view = {"storage": storage.id, "type": storage.type, "shared": int(storage.shared), "path": storage.path,
            "capacity": storage.capacity_bytes}
    if not nodes:
        return {**view, "node": None, "total": 0, "used": 0, "avail": 0}
    return {**view, "node": None if storage.shared else nodes[0], **storage_usage(req, storage, nodes[0])}


def _storage_views(req: Request, storage: Storage) -> list[dict[str, Any]]:
    if storage.shared:
        return [_storage_view(req, storage)]
    cluster = cluster_of(req)
    return [_storage_view(req, storage, n) for n in sorted(cluster.nodes)
            if storage.visible_from(n) and not cluster.nodes[n].lost]


def _status(req: Request) -> dict[str, Any]:
    cluster = cluster_of(req)
    clock = req.app.sandbox.clock
    return {
        "cluster": cluster.name,
        "now": int(clock.now()),
        "clock": getattr(clock, "mode", "real"),
        "nodes": [{"node": n.name, "online": int(n.online), "lost": int(n.lost), "timezone": n.timezone}
                  for n in sorted(cluster.nodes.values(), key=lambda n: n.name)],
        "guests": len(cluster.guests),
        "pools": sorted(cluster.pools),
        "jobs": sorted(cluster.jobs),
        "storages": [v for s in sorted(cluster.storages.values(), key=lambda s: s.id) for v in _storage_views(req, s)],
        "faults": req.app.sandbox.faults.armed(),
    }


def _node_power(online: bool):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> None:
        name = req.params["node"]
        if name not in cluster_of(req).nodes:
            raise param_error({"node": f"no such node '{name}'"})
        if online:
            req.app.sandbox.node_up(name)
        else:
            req.app.sandbox.node_down(name)

    return handler


def _lose_node(req: Request) -> dict[str, Any]:
    """The node is gone for good (see ``Sandbox.lose_node``); the reply names what was lost."""
    name = req.params["node"]
    if name not in cluster_of(req).nodes:
        raise param_error({"node": f"no such node '{name}'"})
    return req.app.sandbox.lose_node(name)


def _add_node(req: Request) -> dict[str, Any]:
    """A fresh node joins (see ``Sandbox.add_node``); the reply names the storages it sees."""
    timezone = req.params.get("timezone", "Europe/Paris")
    try:
        load_zone(timezone)
    except UnknownTimeZone as exc:
        raise param_error({"timezone": str(exc)}) from None
    node = req.app.sandbox.add_node(req.params["name"], timezone)
    storages = sorted(s.id for s in cluster_of(req).storages.values() if s.visible_from(node.name))
    return {"node": node.name, "timezone": node.timezone, "online": int(node.online), "storages": storages}


def _arm_fault(req: Request) -> dict[str, Any]:
    fault = req.app.sandbox.faults.arm(req.params["kind"], req.params.get("count", 1),
                                       bool(req.params.get("cleanup", 1)))
    return fault.to_json()


def _faults(req: Request) -> list[dict[str, Any]]:
    return req.app.sandbox.faults.armed()


def _capacity(req: Request) -> dict[str, Any]:
    storage = storage_or_400(req, req.params["storage"])
    req.app.sandbox.set_capacity(storage.id, req.params["bytes"] or None)
    return _storage_views(req, storage)[0]


def _fill(req: Request) -> dict[str, Any]:
    """Occupy space with a ballast file: ``bytes`` more, or up to ``percent`` of the capacity, in the
    storage's place on ``node`` (needed for a local storage that several nodes list)."""
    storage = storage_or_400(req, req.params["storage"], req.params.get("node"))
    sandbox = req.app.sandbox
    if "bytes" in req.params:
        node = sandbox.fill_storage(storage.id, req.params["bytes"], req.params.get("node"))["node"]
    elif "percent" in req.params:
        if storage.capacity_bytes is None:
            raise die(f"storage '{storage.id}' has no capacity; set one first (POST /_sandbox/storage/"
                      f"{storage.id}/capacity bytes=N)")
        node = sandbox.fill_storage(storage.id, 0, req.params.get("node"))["node"]  # start from no ballast
        wanted = int(storage.capacity_bytes * req.params["percent"] / 100)
        sandbox.fill_storage(storage.id, wanted - sandbox.storage_status(storage.id, node)["used"], node)
    else:
        raise param_error({"percent": "property is missing and it is not optional"})
    return _storage_view(req, storage, node)


def _corrupt(req: Request) -> dict[str, Any]:
    how = req.params["how"]
    return req.app.sandbox.corrupt(req.params["volid"], how, req.params.get("offset"), req.params.get("node"))


def _add_guest(req: Request) -> dict[str, Any]:
    p = req.params
    guest = req.app.sandbox.add_guest(Guest(
        vmid=p["vmid"], name=p["name"], type=p["type"], node=p["node"], pool=p.get("pool"),
        disk_bytes=int(p.get("disk_gb", 8) * 1024**3), status=p.get("status", "running"),
        tags=[t for t in re.split(r"[;,\s]+", p.get("tags", "")) if t],
    ))
    return {"vmid": guest.vmid, "name": guest.name, "type": guest.type, "node": guest.node, "pool": guest.pool}


def _guest_or_400(req: Request) -> Guest:
    guest = cluster_of(req).guests.get(req.params["vmid"])
    if guest is None:
        raise param_error({"vmid": f"no such guest {req.params['vmid']}"})
    return guest


def _delete_guest(req: Request) -> None:
    guest = _guest_or_400(req)
    req.app.sandbox.delete_guest(guest.vmid)


def _lock_guest(req: Request) -> dict[str, Any]:
    guest = _guest_or_400(req)
    req.app.sandbox.lock_guest(guest.vmid, req.params.get("lock") or None)
    return {"vmid": guest.vmid, "lock": guest.lock}


def _digest(req: Request) -> dict[str, Any]:
    guest = _guest_or_400(req)
    return {"vmid": guest.vmid, "digest": req.app.sandbox.disk_digest(guest.vmid)}


def build_control_router() -> Router:
    router = Router()
    router.add("POST", "/advance", {"seconds": Param(type="number", minimum=0, maximum=MAX_ADVANCE_SECONDS),
                                    "duration": Param()}, perm=WRITE)(_advance)
    router.add("GET", "/status", perm=READ)(_status)
    router.add("POST", "/nodes", {"name": Param(optional=False, format=verify_node_name), "timezone": Param()},
               perm=WRITE)(_add_node)
    router.add("POST", "/faults", {"kind": Param(optional=False, enum=tuple(KINDS)), "count": Param(
        type="integer", minimum=0), "cleanup": Param(type="boolean")}, perm=WRITE)(_arm_fault)
    router.add("GET", "/faults", perm=READ)(_faults)
    router.add("POST", "/nodes/{node}/down", {"node": NODE}, perm=WRITE)(_node_power(False))
    router.add("POST", "/nodes/{node}/up", {"node": NODE}, perm=WRITE)(_node_power(True))
    router.add("POST", "/nodes/{node}/lose", {"node": NODE}, perm=WRITE)(_lose_node)
    router.add("POST", "/storage/{storage}/capacity", {"storage": STORAGE, "bytes": Param(
        type="integer", optional=False, minimum=0)}, perm=WRITE)(_capacity)
    router.add("POST", "/storage/{storage}/fill", {"storage": STORAGE, "percent": Param(
        type="number", minimum=0, maximum=100), "bytes": Param(type="integer", minimum=0),
        "node": Param(format=verify_node_name)}, perm=WRITE)(_fill)
    router.add("POST", "/corrupt", {"volid": Param(optional=False), "how": Param(
        optional=False, enum=("flip", "truncate", "zero")), "offset": Param(type="integer", minimum=0),
        "node": Param(format=verify_node_name)}, perm=WRITE)(_corrupt)
    router.add("POST", "/guests", {
        "vmid": VMID, "name": Param(optional=False), "type": Param(optional=False, enum=("qemu", "lxc")),
        "node": Param(optional=False, format=verify_node_name), "pool": Param(),
        "disk_gb": Param(type="number", minimum=0.001), "status": Param(enum=("running", "stopped")),
        "tags": Param(),
    }, perm=WRITE)(_add_guest)
    router.add("DELETE", "/guests/{vmid}", {"vmid": VMID}, perm=WRITE)(_delete_guest)
    router.add("POST", "/guests/{vmid}/lock", {"vmid": VMID, "lock": Param()}, perm=WRITE)(_lock_guest)
    router.add("GET", "/guests/{vmid}/digest", {"vmid": VMID}, perm=READ)(_digest)
    return router
