"""A container created from a CT template: ``POST /nodes/{node}/lxc`` without ``restore``.

pve-container ``src/PVE/API2/LXC.pm`` ``create_vm``: the vmid must be unused (``check_vmid_unused``),
the template is a ``vztmpl`` volume, the root disk goes on ``rootfs``'s storage (``STORAGE:SIZE_GB``,
or ``storage`` with 4 GiB) which must hold ``rootdir``; a ``vzcreate`` worker extracts the template
(``PVE::LXC::Create::restore_archive``: a missing file is ``can't find file '<volid>'``, pve-storage
``abs_filesystem_path``), writes the config with its defaults (hostname ``CT<vmid>``, memory 512,
swap 512), adds the container to ``pool`` and, with ``start``, starts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from vzkeep.pve.values import is_true
from vzkeep.sandbox.guestconfig import mac_address
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage
from vzkeep.sandbox.restore import check_target_vmid
from vzkeep.sandbox.tasks import ParamError, PveError, TaskStore
from vzkeep.sandbox.templates import template_path

DEFAULT_ROOTFS_GB = 4  # LXC.pm: "$storage:4", defaults to 4GB
EXTRACT_SECONDS = 3  # a small template unpacks in a few seconds
# What create_vm takes out of the parameters before the rest becomes the container's configuration.
CONTROLS = {"node", "vmid", "ignore-unpack-errors", "bwlimit", "start", "ha-managed", "unprivileged", "restore",
            "unique", "force", "password", "ssh-public-keys", "pool", "ostemplate", "storage", "rootfs"}


@dataclass(frozen=True)
class CreateRequest:
    node: Node
    vmid: int
    ostemplate: str
    template_storage: Storage
    rootfs_storage: Storage
    size_gb: float
    pool: str | None
    start: bool
    unprivileged: bool
    config: dict[str, str]


def rootfs_storage_id(params: dict[str, Any]) -> str:
    """The storage of the root disk: ``rootfs``'s volume (``STORAGE:SIZE`` or ``volume=…``), else ``storage``."""
    volume = _rootfs_volume(params)
    return volume.partition(":")[0]


def _rootfs_volume(params: dict[str, Any]) -> str:
    storage = str(params.get("storage") or "local")
    rootfs = params.get("rootfs")
    if rootfs is None:
        return f"{storage}:{DEFAULT_ROOTFS_GB}"
    value = str(rootfs)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return f"{storage}:{value}"  # "allow to use simple numbers (add default storage in that case)"
    parts = dict(p.split("=", 1) if "=" in p else ("volume", p) for p in value.split(","))
    return parts.get("volume", "")


def prepare(cluster: Cluster, node: Node, params: dict[str, Any]) -> CreateRequest:
    vmid = int(params["vmid"])
    check_target_vmid(cluster, node, "lxc", vmid, force=False)
    ostemplate = str(params.get("ostemplate") or "")
    sid, _, volname = ostemplate.partition(":")
    if not volname.startswith("vztmpl/"):
        # pve-storage src/PVE/Storage.pm check_volume_access with content type 'vztmpl'
        raise PveError(f"unable to use volume {ostemplate} - content type needs to be 'vztmpl'")
    template_storage = _enabled(cluster, sid, node)
    volume = _rootfs_volume(params)
    root_sid, _, size = volume.partition(":")
    rootfs = _enabled(cluster, root_sid, node)
    if "rootdir" not in rootfs.content:
        raise ParamError({"storage": f"storage '{root_sid}' does not support container directories"})
    if not re.fullmatch(r"\d+(\.\d+)?", size):
        raise ParamError({"rootfs": f"unable to parse volume '{volume}'"})
    config = {k: str(v) for k, v in params.items() if k not in CONTROLS}
    return CreateRequest(node=node, vmid=vmid, ostemplate=ostemplate, template_storage=template_storage,
                         rootfs_storage=rootfs, size_gb=float(size), pool=params.get("pool"),
                         start=is_true(params.get("start", 0)),
                         unprivileged=params.get("unprivileged") is None or is_true(params["unprivileged"]),
                         config=config)


def _enabled(cluster: Cluster, sid: str, node: Node) -> Storage:
    """pve-storage ``storage_check_enabled``: the storage exists and is enabled on the node."""
    storage = cluster.storages.get(sid)
    if storage is None:
        raise PveError(f"storage '{sid}' does not exist")
    if not storage.visible_from(node.name):
        raise PveError(f"storage '{sid}' is not available on node '{node.name}'")
    return storage


def run(cluster: Cluster, tasks: TaskStore, req: CreateRequest, user: str, now: int) -> str:
    """The ``vzcreate`` worker: the template extracted, the container written, then started if asked."""
    task = tasks.start(req.node.name, "vzcreate", str(req.vmid), user, now)
    path = template_path(req.template_storage, req.node.name, req.ostemplate)
    if path is None:
        task.finish(now + 1, f"unable to create CT {req.vmid} - can't find file '{req.ostemplate}'")
        return task.upid
    shown = PurePosixPath(req.template_storage.options.get("path", req.template_storage.path), "template", "cache",
                          path.name)
    size = path.stat().st_size
    task.log(f"extracting archive '{shown}'")
    task.log(f"Total bytes read: {size} ({size / 1024**2:.1f}MiB, {size / 1024**2:.1f}MiB/s)")
    task.log("Detected container architecture: " + req.config.get("arch", "amd64"))
    config = dict(req.config)
    disk = "vm" if req.rootfs_storage.type == "lvmthin" else "subvol"
    config["rootfs"] = f"{req.rootfs_storage.id}:{disk}-{req.vmid}-disk-0,size={req.size_gb:g}G"
    for key in [k for k in config if re.fullmatch(r"net\d+", k)]:
        # pve-container src/PVE/LXC/Config.pm parse_lxc_network: a random MAC and type veth when not given
        if "hwaddr=" not in config[key]:
            config[key] += f",hwaddr={mac_address(req.vmid, key)}"
        if "type=" not in config[key]:
            config[key] += ",type=veth"
    config.setdefault("memory", "512")
    config.setdefault("swap", "512")
    if req.unprivileged:
        config["unprivileged"] = "1"
    name = config.pop("hostname", f"CT{req.vmid}")
    tags = [t for t in re.split(r"[;, ]+", config.pop("tags", "")) if t]
    cluster.guests[req.vmid] = Guest(vmid=req.vmid, name=name, type="lxc", node=req.node.name, pool=req.pool,
                                     disk_bytes=int(req.size_gb * 1024**3), status="stopped", tags=tags,
                                     config=config)
    if req.start:
        cluster.guests[req.vmid].status = "running"  # LXC.pm: vm_start right after the create
    task.finish(now + EXTRACT_SECONDS)
    return task.upid
