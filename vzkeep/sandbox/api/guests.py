"""Guest endpoints: ``/nodes/{node}/qemu`` and ``/nodes/{node}/lxc`` (list, config, status, start,
stop, delete, and create-from-archive = restore; reference §4.8).

Start, stop and destroy are short worker tasks (``qmstart``, ``vzstop``, ``qmdestroy``…) that finish
at once on the simulated clock; restore is the engine's (``Sandbox.restore``), which checks the
archive before it creates anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vzkeep.sandbox.api.common import (
    cluster_of,
    guest_cores,
    guest_figures,
    guest_label,
    guest_memory_bytes,
    guest_on_node,
    node_or_fail,
    now,
)
from vzkeep.sandbox.api.errors import die
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import NODE, VMID, Param
from vzkeep.sandbox.guestconfig import mac_address
from vzkeep.sandbox.model import Guest

TASK_PREFIX = {"qemu": "qm", "lxc": "vz"}


def _list_entry(guest: Guest, req: Request) -> dict[str, Any]:
    node = cluster_of(req).nodes[guest.node]
    fig = guest_figures(guest, node, now(req))
    entry: dict[str, Any] = {
        "vmid": guest.vmid, "name": guest.name, "status": guest.status,
        "cpus": fig["maxcpu"], "cpu": fig["cpu"], "maxmem": fig["maxmem"], "mem": fig["mem"],
        "maxdisk": fig["maxdisk"], "disk": fig["disk"], "uptime": fig["uptime"],
        "netin": fig["netin"], "netout": fig["netout"], "diskread": fig["diskread"],
        "diskwrite": fig["diskwrite"],
    }
    if guest.type == "lxc":
        entry["type"] = "lxc"
        entry["maxswap"] = 512 * 1024**2
    if guest.tags:
        entry["tags"] = ";".join(guest.tags)
    if guest.lock:
        entry["lock"] = guest.lock
    return entry


def _list(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> list[dict[str, Any]]:
        node = req.params["node"]
        node_or_fail(req, node)
        cluster = cluster_of(req)
        with cluster.lock:
            guests = sorted((g for g in cluster.guests.values() if g.node == node and g.type == guest_type),
                            key=lambda g: g.vmid)
            return [_list_entry(g, req) for g in guests]

    return handler


def _disk_size_text(guest: Guest) -> str:
    gib = guest.disk_bytes / 1024**3
    return f"{gib:g}G"


def unnamed(guest: Guest) -> str:
    """The name PVE shows for a guest whose config has none (``vmstatus``: ``VM 100`` / ``CT100``)."""
    return f"VM {guest.vmid}" if guest.type == "qemu" else f"CT{guest.vmid}"


def _default_config(guest: Guest) -> dict[str, Any]:
    # The MACs are vzdump's (``mac_address``), so a restored guest's config matches what GET showed.
    size = _disk_size_text(guest)
    if guest.type == "qemu":
        return {
            "name": guest.name, "memory": guest_memory_bytes(guest) // 1024**2, "cores": guest_cores(guest),
            "sockets": 1, "ostype": "l26", "scsihw": "virtio-scsi-single", "boot": "order=scsi0",
            "scsi0": f"local-lvm:vm-{guest.vmid}-disk-0,iothread=1,size={size}",
            "net0": f"virtio={mac_address(guest.vmid)},bridge=vmbr0",
        }
    return {
        "hostname": guest.name, "memory": guest_memory_bytes(guest) // 1024**2, "cores": guest_cores(guest),
        "swap": 512, "arch": "amd64", "ostype": "debian", "unprivileged": 1,
        "rootfs": f"local-lvm:subvol-{guest.vmid}-disk-0,size={size}",
        "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac_address(guest.vmid)},ip=dhcp,type=veth",
    }


def guest_config(guest: Guest) -> dict[str, Any]:
    """The guest's config as ``GET …/config`` shows it; ``Guest.config`` overrides the defaults, or is
    the whole config once ``Guest.full_config`` is set (then a name PVE would not have is left out)."""
    if guest.full_config:
        name_key = "name" if guest.type == "qemu" else "hostname"
        config: dict[str, Any] = {name_key: guest.name} if guest.name != unnamed(guest) else {}
    else:
        config = _default_config(guest)
    config.update({k: _typed(v) for k, v in guest.config.items()})
    if guest.tags:
        config["tags"] = ";".join(guest.tags)
    if guest.lock:
        config["lock"] = guest.lock
    config["digest"] = config_digest(config)
    return config


def config_digest(config: dict[str, Any]) -> str:
    """A SHA-1 over the config, like PVE's digest of the config file (``digest`` itself left out)."""
    body = {k: v for k, v in config.items() if k != "digest"}
    return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _typed(value: str) -> Any:
    return int(value) if str(value).isdigit() else value


def _config(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> dict[str, Any]:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        return guest_config(guest)

    return handler


def _guest_index(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> list[dict[str, str]]:
        node_or_fail(req, req.params["node"])
        guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        return [{"subdir": s} for s in ("config", "status")]

    return handler


def _status_current(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> dict[str, Any]:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        entry = _list_entry(guest, req)
        entry["ha"] = {"managed": 0}
        if guest_type == "qemu":
            entry["qmpstatus"] = guest.status
        return entry

    return handler


def _run_task(req: Request, guest: Guest, action: str, work) -> str:  # type: ignore[no-untyped-def]
    """Run ``work(task)`` as a worker task; its exception text becomes ``TASK ERROR: …``."""
    at = now(req)
    task = req.app.sandbox.tasks.start(guest.node, f"{TASK_PREFIX[guest.type]}{action}", str(guest.vmid),
                                       req.principal.userid, at)
    try:
        work(task)
    except Exception as exc:
        task.log(str(exc).strip())
        task.finish(at + 1, str(exc))
    else:
        task.finish(at + 1)
    return task.upid


def _check_lock(guest: Guest) -> None:
    if guest.lock:
        raise RuntimeError(f"{guest_label(guest)} is locked ({guest.lock})")


def _start(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])

        def work(task: Any) -> None:
            _check_lock(guest)
            if guest.status == "running":
                raise RuntimeError(f"{guest_label(guest)} {guest.vmid} already running")
            guest.status = "running"

        return _run_task(req, guest, "start", work)

    return handler


def _stop(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])

        def work(task: Any) -> None:
            if guest.lock and not req.params.get("skiplock"):
                _check_lock(guest)
            guest.status = "stopped"

        return _run_task(req, guest, "stop", work)

    return handler


def _destroy(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        if guest.lock:  # checked before the worker starts (Qemu.pm destroy_vm check_lock)
            raise die(f"{guest_label(guest)} is locked ({guest.lock})")
        if guest.status == "running":
            raise die(f"{guest_label(guest)} {guest.vmid} is running - destroy failed")
        cluster = cluster_of(req)

        def work(task: Any) -> None:
            task.log(f"Removing image: 100% complete...done.\n  Logical volume \"vm-{guest.vmid}-disk-0\" "
                     "successfully removed.")
            with cluster.lock:
                cluster.guests.pop(guest.vmid, None)

        return _run_task(req, guest, "destroy", work)

    return handler


def _create(guest_type: str):  # type: ignore[no-untyped-def]
    archive_key = "archive" if guest_type == "qemu" else "ostemplate"

    def handler(req: Request) -> str:
        node = req.params["node"]
        node_or_fail(req, node)
        params = {k: v for k, v in req.params.items() if k != "node"}
        if guest_type == "lxc" and not params.get("restore"):
            raise die("sandbox: only restores are supported here (set restore=1 with ostemplate=<backup volid>);"
                      " add new guests with `vzkeep sandbox guest add`")
        if not params.get(archive_key):
            raise die("sandbox: only restores are supported here (give 'archive'); "
                      "add new guests with `vzkeep sandbox guest add`")
        return req.app.sandbox.restore(node, guest_type, params, req.principal.userid)

    return handler


CREATE_SCHEMA = {
    "qemu": {"node": NODE, "vmid": VMID, "archive": Param(max_length=255), "storage": Param(),
             "force": Param(type="boolean"), "unique": Param(type="boolean"), "pool": Param(),
             "bwlimit": Param(type="integer", minimum=0), "start": Param(type="boolean"),
             "live-restore": Param(type="boolean"), "ha-managed": Param(type="boolean"), "name": Param()},
    "lxc": {"node": NODE, "vmid": VMID, "ostemplate": Param(max_length=255), "restore": Param(type="boolean"),
            "storage": Param(), "force": Param(type="boolean"), "unique": Param(type="boolean"),
            "pool": Param(), "bwlimit": Param(type="integer", minimum=0), "start": Param(type="boolean"),
            "ignore-unpack-errors": Param(type="boolean"), "ha-managed": Param(type="boolean"),
            "hostname": Param()},
}


def register(router: Router) -> None:
    for kind in ("qemu", "lxc"):
        base = f"/nodes/{{node}}/{kind}"
        one = {"node": NODE, "vmid": VMID}
        audit = ("/vms/{vmid}", "VM.Audit")
        router.add("GET", base, {"node": NODE, "full": Param(type="boolean")})(_list(kind))
        router.add("POST", base, CREATE_SCHEMA[kind], perm=("/vms", "VM.Allocate"))(_create(kind))
        router.add("GET", base + "/{vmid}", one, perm=audit)(_guest_index(kind))
        router.add("GET", base + "/{vmid}/config", {**one, "current": Param(type="boolean"),
                                                    "snapshot": Param()}, perm=audit)(_config(kind))
        router.add("GET", base + "/{vmid}/status/current", one, perm=audit)(_status_current(kind))
        router.add("POST", base + "/{vmid}/status/start", {**one, "skiplock": Param(type="boolean"),
                   "timeout": Param(type="integer")}, perm=("/vms/{vmid}", "VM.PowerMgmt"))(_start(kind))
        router.add("POST", base + "/{vmid}/status/stop", {**one, "skiplock": Param(type="boolean"),
                   "timeout": Param(type="integer"), "overrule-shutdown": Param(type="boolean")},
                   perm=("/vms/{vmid}", "VM.PowerMgmt"))(_stop(kind))
        router.add("DELETE", base + "/{vmid}", {**one, "purge": Param(type="boolean"), "force": Param(
                   type="boolean"), "skiplock": Param(type="boolean"), "destroy-unreferenced-disks": Param(
                   type="boolean")}, perm=("/vms/{vmid}", "VM.Allocate"))(_destroy(kind))

