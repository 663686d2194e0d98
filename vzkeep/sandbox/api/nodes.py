"""Node endpoints: ``/nodes``, ``/nodes/{node}/status``, and the node calls prometheus-pve-exporter makes
(``subscription``, ``replication``; monitoring.md §1.3)."""

from __future__ import annotations

from typing import Any

from vzkeep.sandbox.api.cluster import PVE_VERSION
from vzkeep.sandbox.api.common import NODE_CPUS, cluster_of, node_figures, node_or_fail, now
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import NODE, Param


def _nodes(req: Request) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    at = now(req)
    out = []
    for name in sorted(cluster.nodes):
        node = cluster.nodes[name]
        entry = {"node": name, "id": f"node/{name}", "type": "node", "level": "",
                 "status": "online" if node.online else "offline",
                 "ssl_fingerprint": req.app.fingerprint}
        entry.update(node_figures(node, at))
        out.append(entry)
    return out


def _node_index(req: Request) -> list[dict[str, str]]:
    node_or_fail(req, req.params["node"])
    return [{"name": n} for n in ("lxc", "qemu", "status", "storage", "subscription", "tasks", "version",
                                  "vzdump", "replication")]


def _node_status(req: Request) -> dict[str, Any]:
    node = node_or_fail(req, req.params["node"])
    fig = node_figures(node, now(req))
    free_mem = fig["maxmem"] - fig["mem"]
    free_disk = fig["maxdisk"] - fig["disk"]
    return {
        "uptime": fig["uptime"], "cpu": fig["cpu"], "wait": 0, "idle": 0,
        "loadavg": ["0.12", "0.10", "0.08"],
        "memory": {"total": fig["maxmem"], "used": fig["mem"], "free": free_mem},
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {"total": fig["maxdisk"], "used": fig["disk"], "free": free_disk, "avail": free_disk},
        "cpuinfo": {"cpus": NODE_CPUS, "sockets": 1, "cores": NODE_CPUS, "model": "vzkeep sandbox vCPU",
                    "mhz": "2400.000", "hvm": "1", "user_hz": 100, "flags": ""},
        "kversion": "Linux 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4",
        "pveversion": f"pve-manager/{PVE_VERSION['version']}/{PVE_VERSION['repoid']}",
        "current-kernel": {"sysname": "Linux", "release": "6.8.12-4-pve", "machine": "x86_64",
                           "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-4"},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "ksm": {"shared": 0},
    }


def _node_version(req: Request) -> dict[str, str]:
    node_or_fail(req, req.params["node"])
    return dict(PVE_VERSION)


def _subscription(req: Request) -> dict[str, Any]:
    # A homelab without a subscription key (pve-manager PVE/API2/Subscription.pm "notfound").
    node_or_fail(req, req.params["node"])
    return {"status": "notfound", "message": "There is no subscription key", "serverid": "SANDBOX",
            "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing"}


def _replication(req: Request) -> list[dict[str, Any]]:
    node_or_fail(req, req.params["node"])
    return []  # no storage replication jobs in the sandbox


def register(router: Router) -> None:
    node = {"node": NODE}
    router.add("GET", "/nodes")(_nodes)
    router.add("GET", "/nodes/{node}", node)(_node_index)
    router.add("GET", "/nodes/{node}/status", node, perm=("/nodes/{node}", "Sys.Audit"))(_node_status)
    router.add("GET", "/nodes/{node}/version", node)(_node_version)
    router.add("GET", "/nodes/{node}/subscription", node, perm=("/nodes/{node}", "Sys.Audit"))(_subscription)
    router.add("GET", "/nodes/{node}/replication", {**node, "guest": Param(type="integer"), "type": Param()})(
        _replication)

