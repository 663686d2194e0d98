"""Lookups shared by the API areas, each failing the way PVE fails for an unknown object."""

from __future__ import annotations

import time
from typing import Any

from vzkeep.sandbox.api.errors import ApiError, die, param_error
from vzkeep.sandbox.api.router import Request
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage


def now(req: Request) -> float:
    """The sandbox clock (simulated time), falling back to wall time before the engine exists."""
    clock = getattr(req.app.sandbox, "clock", None)
    return float(clock.now()) if clock is not None else time.time()


def cluster_of(req: Request) -> Cluster:
    return req.app.cluster


def node_or_fail(req: Request, name: str) -> Node:
    """The node, else PVE's proxy errors: unknown name -> 500 lookup failure, node off -> 595.

    PVE proxies ``/nodes/{node}/…`` to that node (``proxyto``); an unknown name fails the host lookup
    and an unreachable node gives status 595 **[derived from pve-http-server AnyEvent.pm]**.
    """
    node = cluster_of(req).nodes.get(name)
    if node is None:
        raise die(
            f"hostname lookup '{name}' failed - failed to get address info for: {name}: "
            "Name or service not known"
        )
    if not node.online:
        raise ApiError(595, f"Connection refused - node '{name}' is offline (sandbox: node down)")
    return node


def storage_or_400(req: Request, storage_id: str, node: str | None = None) -> Storage:
    """The storage, else 400 ``{"storage": "No such storage."}`` (pve-storage ``API2/Storage/Status.pm``)."""
    storage = cluster_of(req).storages.get(storage_id)
    if storage is None:
        raise param_error({"storage": "No such storage."})
    if node is not None and storage.nodes is not None and node not in storage.nodes:
        raise die(f"storage '{storage_id}' is not available on node '{node}'")
    return storage


def config_path(node: str, guest_type: str, vmid: int) -> str:
    subdir = "qemu-server" if guest_type == "qemu" else "lxc"
    return f"nodes/{node}/{subdir}/{vmid}.conf"


def guest_on_node(req: Request, node: str, guest_type: str, vmid: int) -> Guest:
    """The guest, else PVE's ``Configuration file '…' does not exist`` (500)."""
    guest = cluster_of(req).guests.get(int(vmid))
    if guest is None or guest.node != node or guest.type != guest_type:
        raise die(f"Configuration file '{config_path(node, guest_type, vmid)}' does not exist")
    return guest


def guest_label(guest: Guest) -> str:
    return "VM" if guest.type == "qemu" else "CT"


# -- deterministic "live" figures: stable numbers derived from the model, no randomness -----------


def guest_memory_bytes(guest: Guest) -> int:
    return int(guest.config.get("memory", 2048 if guest.type == "qemu" else 512)) * 1024**2


def guest_cores(guest: Guest) -> int:
    return int(guest.config.get("cores", 2 if guest.type == "qemu" else 1))


def guest_figures(guest: Guest, node: Node, at: float) -> dict[str, Any]:
    """cpu/mem/uptime/io as PVE's RRD-backed fields; zero when the guest or its node is stopped."""
    running = guest.status == "running" and node.online
    maxmem = guest_memory_bytes(guest)
    # CTs report the used space of their rootfs, VMs report 0 without a guest agent.
    disk = guest.disk_bytes * 3 // 10 if guest.type == "lxc" else 0
    seed = guest.vmid % 97
    return {
        "maxcpu": guest_cores(guest),
        "cpu": (0.01 + seed / 9700) if running else 0,
        "maxmem": maxmem,
        "mem": maxmem * (30 + seed % 40) // 100 if running else 0,
        "maxdisk": guest.disk_bytes,
        "disk": disk,
        "uptime": int(at) % 86400 + 3600 if running else 0,
        "netin": (guest.vmid * 7919) % 10**9 if running else 0,
        "netout": (guest.vmid * 104729) % 10**9 if running else 0,
        "diskread": (guest.vmid * 1299709) % 10**10 if running else 0,
        "diskwrite": (guest.vmid * 15485863) % 10**10 if running else 0,
    }


def guest_status(guest: Guest, node: Node) -> str:
    # A guest on a node that is down is "unknown" in /cluster/resources (no fresh RRD data).
    return guest.status if node.online else "unknown"


NODE_MEMORY = 64 * 1024**3
NODE_DISK = 100 * 1024**3
NODE_CPUS = 8


def node_figures(node: Node, at: float) -> dict[str, Any]:
    if not node.online:
        return {}
    return {
        "maxcpu": NODE_CPUS,
        "cpu": 0.05,
        "maxmem": NODE_MEMORY,
        "mem": NODE_MEMORY // 4,
        "maxdisk": NODE_DISK,
        "disk": NODE_DISK // 5,
        "uptime": int(at) % (30 * 86400) + 86400,
    }
