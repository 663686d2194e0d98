"""Node endpoints: ``/nodes``, ``/nodes/{node}``, ``status``, ``version``, ``time``, and the node calls
prometheus-pve-exporter makes (``subscription``, ``replication``).

Sources: pve-manager ``PVE/API2/Nodes.pm`` (``index``, ``status``, ``version``, ``time``),
``PVE/API2Tools.pm`` ``extract_node_stats``, ``PVE/API2/Subscription.pm``, ``PVE/API2/Replication.pm``.
The unknown/offline node answers come from ``dispatch`` (``proxyto``).
"""

from __future__ import annotations

import calendar as gmcalendar
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from vzkeep.sandbox.api.cluster import node_resource
from vzkeep.sandbox.api.common import NODE_CPUS, cluster_of, node_figures, node_or_fail, now
from vzkeep.sandbox.api.router import Handlers, Request


def _nodes(req: Request) -> list[dict[str, Any]]:
    """Every node; figures only where the caller has Sys.Audit (``extract_node_stats``)."""
    at = now(req)
    out = []
    for name in sorted(cluster_of(req).nodes):
        entry = node_resource(req, name, at)
        entry["ssl_fingerprint"] = req.app.fingerprint
        out.append(entry)
    return out


def _node_index(req: Request) -> list[dict[str, str]]:
    node_or_fail(req, req.params["node"])
    return [{"name": n} for n in req.version.schema.children("/nodes/{node}")]


def _node_status(req: Request) -> dict[str, Any]:
    node = node_or_fail(req, req.params["node"])
    fig = node_figures(node, now(req))
    free_mem = fig["maxmem"] - fig["mem"]
    free_disk = fig["maxdisk"] - fig["disk"]
    kernel = req.version.kernel
    build = f"#1 SMP PREEMPT_DYNAMIC PMX {kernel.removesuffix('-pve')}"
    return {
        "uptime": fig["uptime"], "cpu": fig["cpu"], "wait": 0, "idle": 0,
        "loadavg": ["0.12", "0.10", "0.08"],
        "memory": {"total": fig["maxmem"], "used": fig["mem"], "free": free_mem, "available": free_mem},
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {"total": fig["maxdisk"], "used": fig["disk"], "free": free_disk, "avail": free_disk},
        "cpuinfo": {"cpus": NODE_CPUS, "sockets": 1, "cores": NODE_CPUS, "model": "vzkeep sandbox vCPU",
                    "mhz": "2400.000", "hvm": "1", "user_hz": 100, "flags": ""},
        "kversion": f"Linux {kernel} {build}",
        "pveversion": f"pve-manager/{req.version.version}/{req.version.repoid}",
        "current-kernel": {"sysname": "Linux", "release": kernel, "machine": "x86_64", "version": build},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "ksm": {"shared": 0},
    }


def _node_version(req: Request) -> dict[str, str]:
    node_or_fail(req, req.params["node"])
    return req.version.version_info()


def _node_time(req: Request) -> dict[str, Any]:
    """``Nodes.pm`` time: the node's clock (here the sandbox clock), its zone (``/etc/timezone``) and
    ``localtime``, the local wall-clock reading encoded as if it were UTC (``timegm(localtime(t))``)."""
    node = node_or_fail(req, req.params["node"])
    at = int(now(req))
    local = datetime.fromtimestamp(at, ZoneInfo(node.timezone))
    return {"timezone": node.timezone, "time": at, "localtime": gmcalendar.timegm(local.timetuple())}


def _subscription(req: Request) -> dict[str, Any]:
    # A homelab without a subscription key (Subscription.pm: status "notfound").
    node_or_fail(req, req.params["node"])
    return {"status": "notfound", "message": "There is no subscription key", "serverid": "SANDBOX",
            "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing"}


def _replication(req: Request) -> list[dict[str, Any]]:
    node_or_fail(req, req.params["node"])
    return []  # no storage replication jobs in the sandbox


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/nodes")(_nodes)
    handlers.add("GET", "/nodes/{node}")(_node_index)
    handlers.add("GET", "/nodes/{node}/status")(_node_status)
    handlers.add("GET", "/nodes/{node}/version")(_node_version)
    handlers.add("GET", "/nodes/{node}/time")(_node_time)
    handlers.add("GET", "/nodes/{node}/subscription")(_subscription)
    handlers.add("GET", "/nodes/{node}/replication")(_replication)
