"""The cluster's own clock, ``GET /nodes/{node}/time``, read once per poll from one online node.

Archive, task and job times are the cluster's; the ages the alerts measure must use the same clock, not the
Prometheus host's (a sandbox may run ahead of, behind or faster than the wall clock, and a monitoring host's
clock may drift). The exporter publishes it as ``vzkeep_cluster_time_seconds``.

The answer is ``{"time": epoch, "localtime": epoch shifted by the zone, "timezone": "Europe/Paris"}``
(pve-manager ``PVE/API2/Nodes.pm`` time; it needs ``Sys.Audit`` on ``/nodes/{node}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vzkeep.exporter.api import ApiGet
from vzkeep.exporter.snapshot import ClusterClock


def read_clock(get: ApiGet, nodes: Sequence[str]) -> ClusterClock | None:
    """The first online node's clock; None when no node is online."""
    if not nodes:
        return None
    node = nodes[0]
    answer: Any = get(f"nodes/{node}/time")
    if not isinstance(answer, dict) or not isinstance(answer.get("time"), int | float):
        raise ValueError(f"/nodes/{node}/time: expected an object with an integer time, got {answer!r:.100}")
    return ClusterClock(node, int(answer["time"]), str(answer.get("timezone") or "UTC"))
