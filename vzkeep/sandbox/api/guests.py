"""Guest endpoints: ``/nodes/{node}/qemu`` and ``/nodes/{node}/lxc`` (list, config, status, start,
stop, delete, and create-from-archive = restore).

Sources: qemu-server ``src/PVE/API2/Qemu.pm`` (``vmlist``, ``create_vm``, ``vm_config``, ``vm_status``,
``vm_start``, ``vm_stop``, ``destroy_vm``) and pve-container ``src/PVE/API2/LXC.pm``, ``LXC/Status.pm``.

Start, stop and destroy are short worker tasks (``qmstart``, ``vzstop``, ``qmdestroy``…) that finish
at once on the simulated clock; restore is the engine's (``Sandbox.restore``), which checks the
archive before it creates anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.access.rpcenv import permission_denied_text
from vzkeep.sandbox.api.common import (
    cluster_of,
    guest_figures,
    guest_label,
    guest_on_node,
    node_or_fail,
    now,
)
from vzkeep.sandbox.api.errors import die, param_error
from vzkeep.sandbox.api.formats import QEMU_DRIVES
from vzkeep.sandbox.api.guest_permissions import check_lxc_keys, check_qemu_keys
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.api.storage import backup_owner, volume_access
from vzkeep.sandbox.guestconfig import guest_config_values
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
        """``vmlist``: the node's guests the caller may audit (``VM.Audit`` on ``/vms/<vmid>``)."""
        node = req.params["node"]
        node_or_fail(req, node)
        cluster = cluster_of(req)
        with cluster.lock:
            guests = sorted((g for g in cluster.guests.values() if g.node == node and g.type == guest_type),
                            key=lambda g: g.vmid)
            return [_list_entry(g, req) for g in guests if req.allowed(f"/vms/{g.vmid}", "VM.Audit")]

    return handler


def guest_config(guest: Guest) -> dict[str, Any]:
    """The guest's config as ``GET …/config`` shows it: the engine's ``<vmid>.conf`` (the one vzdump
    embeds, so an archive and the API agree), numbers as numbers, and its ``digest``."""
    config: dict[str, Any] = {k: (v if k in ("name", "hostname") else _typed(v))
                              for k, v in guest_config_values(guest).items()}
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
                                       req.authid, at)
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


def _power(req: Request, guest: Guest, status: str) -> None:
    with configuration.guest(req.app.sandbox, guest.vmid) as draft:
        draft.status = status


def _start(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])

        def work(task: Any) -> None:
            _check_lock(guest)
            if guest.status == "running":
                raise RuntimeError(f"{guest_label(guest)} {guest.vmid} already running")
            _power(req, guest, "running")

        return _run_task(req, guest, "start", work)

    return handler


def _stop(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        if req.params.get("skiplock") and req.authid != "root@pam":
            raise param_error({"skiplock": "Only root may use this option."})

        def work(task: Any) -> None:
            if guest.lock and not req.params.get("skiplock"):
                _check_lock(guest)
            _power(req, guest, "stopped")

        return _run_task(req, guest, "stop", work)

    return handler


def _destroy(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> str:
        node_or_fail(req, req.params["node"])
        guest = guest_on_node(req, req.params["node"], guest_type, req.params["vmid"])
        if guest.lock:  # checked before the worker starts (Qemu.pm destroy_vm check_lock)
            raise die(f"{guest_label(guest)} is locked ({guest.lock})\n")
        if guest.status == "running":
            raise die(f"{guest_label(guest)} {guest.vmid} is running - destroy failed\n")

        def work(task: Any) -> None:
            task.log(f"Removing image: 100% complete...done.\n  Logical volume \"vm-{guest.vmid}-disk-0\" "
                     "successfully removed.")
            req.app.sandbox.delete_guest(guest.vmid)

        return _run_task(req, guest, "destroy", work)

    return handler


# Parameters the create handlers take out before the guest's configuration (Qemu.pm / LXC.pm create_vm).
CREATE_CONTROLS = {
    "qemu": {"node", "vmid", "archive", "bwlimit", "force", "pool", "start", "ha-managed", "storage", "unique",
             "live-restore", "import-working-storage"},
    "lxc": {"node", "vmid", "ignore-unpack-errors", "bwlimit", "start", "ha-managed", "unprivileged", "restore",
            "unique", "force", "password", "ssh-public-keys", "pool", "ostemplate", "storage"},
}


def _create_from_template(req: Request, node: str, vmid: int, params: dict[str, Any], overrides: list[str]) -> str:
    """pve-container ``src/PVE/API2/LXC.pm`` ``create_vm`` without ``restore``: the config keys need their
    ``VM.Config.*`` privileges, the template needs read access to its storage and the root disk
    ``Datastore.AllocateSpace`` on its storage (``check_volume_access``, ``$check_and_activate_storage``)."""
    from vzkeep.sandbox.create import rootfs_storage_id

    check_lxc_keys(req, vmid, params.get("pool"), overrides)
    template_sid = str(params.get("ostemplate") or "").partition(":")[0]
    if template_sid and not req.allowed(f"/storage/{template_sid}", "Datastore.AllocateSpace", "Datastore.Audit",
                                        any_=True):
        req.require(f"/storage/{template_sid}", "Datastore.AllocateSpace")
    req.require(f"/storage/{rootfs_storage_id(params)}", "Datastore.AllocateSpace")
    return req.app.sandbox.create_container(node, params, req.authid)


def _check_create_permissions(req: Request, guest_type: str, restore: bool) -> None:
    """``create_vm``'s checks before any work: the pool exists, the storage may be used, and the caller
    may allocate the guest (on /vms/<vmid> or its pool), or restore over an existing one with VM.Backup."""
    p, env, who = req.params, req.rpcenv, req.authid
    vmid, pool = int(p["vmid"]), p.get("pool")
    if pool is not None:
        env.check_pool_exist(pool)
    if guest_type == "qemu" and p.get("storage") is not None:
        req.require(f"/storage/{p['storage']}", "Datastore.AllocateSpace")
    existing = cluster_of(req).guests.get(vmid)
    exists_here = existing is not None and existing.node == p["node"] and existing.type == guest_type
    if env.check(who, f"/vms/{vmid}", ["VM.Allocate"], noerr=True):
        return
    if pool and env.check(who, f"/pool/{pool}", ["VM.Allocate"], noerr=True):
        return
    if restore and p.get("force") and exists_here and env.check(who, f"/vms/{vmid}", ["VM.Backup"], noerr=True):
        return
    raise permission_denied_text(None)


def _check_archive_access(req: Request, vmid: int, volid: str) -> None:
    """``check_volume_access($vmid, $archive, 'backup')``: your own guest's backup is yours to restore."""
    owner = backup_owner(volid)
    if ":" not in volid:
        if req.authid != "root@pam":
            raise die("Only root can pass arbitrary filesystem paths.")
        return
    if owner is None:
        raise die(f"unable to use volume {volid} - content type needs to be 'backup'\n")
    if owner == vmid and not req.allowed(f"/storage/{volid.partition(':')[0]}", "Datastore.Allocate"):
        return
    volume_access(req, volid)


def _check_privileged_restore(req: Request, params: dict[str, Any]) -> None:
    """PVE 9 (pve-container ``create_vm``): restoring a privileged container, or making one privileged,
    needs ``Sys.Modify`` on ``/``. An explicit ``unprivileged=0`` is checked here; an archive whose
    configuration is privileged, too (PVE checks that one inside the worker)."""
    if not req.version.privileged_ct_restore_needs_sys_modify or req.allowed("/", "Sys.Modify"):
        return
    explicit = params.get("unprivileged")
    if explicit is not None and not explicit:
        req.require("/", "Sys.Modify")
    if explicit is None and not archived_ct_unprivileged(req, str(params["ostemplate"])):
        req.require("/", "Sys.Modify")


def archived_ct_unprivileged(req: Request, volid: str) -> bool:
    """Whether a container backup's configuration says ``unprivileged: 1`` (read from the archive)."""
    from vzkeep.pve import archive as archive_names
    from vzkeep.pve import ct_tar
    from vzkeep.pve.decompress import DecompressedStream, ExactReader

    sid = volid.partition(":")[0]
    try:
        path = req.app.sandbox.volume_path(sid, volid, node=req.params["node"])
        info = archive_names.parse(path.name)
        with open(path, "rb") as raw:
            stream = DecompressedStream(raw, info.compression)
            try:
                config = ct_tar.extract_ct_tar(ExactReader(stream), lambda _info, _data: None)
            finally:
                stream.close()
    except Exception:
        return True  # the engine reports an unreadable archive in its own words
    text = config.decode("utf-8", "replace")
    return any(line.split(":", 1)[1].strip() == "1" for line in text.splitlines()
               if line.startswith("unprivileged:"))


def _create(guest_type: str):  # type: ignore[no-untyped-def]
    archive_key = "archive" if guest_type == "qemu" else "ostemplate"

    def handler(req: Request) -> str:
        node = req.params["node"]
        node_or_fail(req, node)
        params = {k: v for k, v in req.params.items() if k != "node"}
        restore = bool(params.get(archive_key)) if guest_type == "qemu" else bool(params.get("restore"))
        if guest_type == "lxc" and not restore:
            unprivileged = params.get("unprivileged", 1)
            if not unprivileged:
                req.require("/", "Sys.Modify")
        _check_create_permissions(req, guest_type, restore)
        vmid = int(params["vmid"])
        overrides = [k for k in params if k not in CREATE_CONTROLS[guest_type]]
        if guest_type == "lxc" and not restore:
            return _create_from_template(req, node, vmid, params, overrides)
        if guest_type == "qemu" and restore:
            for key in sorted(overrides):
                if key in QEMU_DRIVES:
                    raise param_error({key: "option conflicts with option 'archive'"})
        if not restore:
            raise die("sandbox: a VM is only restored here (give 'archive'); add new VMs with "
                      "`vzkeep sandbox guest add`\n")
        _check_archive_access(req, vmid, str(params[archive_key]))
        existing = cluster_of(req).guests.get(vmid)
        pool = params.get("pool") or (existing.pool if existing else None)
        if guest_type == "qemu":
            check_qemu_keys(req, vmid, pool, overrides)
        else:
            check_lxc_keys(req, vmid, pool, overrides)
            _check_privileged_restore(req, params)
        return req.app.sandbox.restore(node, guest_type, params, req.authid)

    return handler


def register(handlers: Handlers) -> None:
    for kind in ("qemu", "lxc"):
        base = f"/nodes/{{node}}/{kind}"
        handlers.add("GET", base)(_list(kind))
        handlers.add("POST", base)(_create(kind))
        handlers.add("GET", base + "/{vmid}")(_guest_index(kind))
        handlers.add("GET", base + "/{vmid}/config")(_config(kind))
        handlers.add("GET", base + "/{vmid}/status/current")(_status_current(kind))
        handlers.add("POST", base + "/{vmid}/status/start")(_start(kind))
        handlers.add("POST", base + "/{vmid}/status/stop")(_stop(kind))
        handlers.add("DELETE", base + "/{vmid}")(_destroy(kind))
