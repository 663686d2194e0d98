"""Task endpoints: ``/cluster/tasks``, ``/nodes/{node}/tasks[/{upid}/status|log]`` (reference §4.5).

The task store (``vzkeep.sandbox.tasks``) owns the PVE semantics; this module maps HTTP to it.
Users without Sys.Audit see only their own tasks, as pve-manager ``PVE/API2/Tasks.pm`` filters.
"""

from __future__ import annotations

from typing import Any

from vzkeep.sandbox.api.common import cluster_of, node_or_fail
from vzkeep.sandbox.api.router import PagedResult, Request, Router
from vzkeep.sandbox.api.schema import NODE, Param, verify_vmid


def _own_only(req: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if req.principal.can("Sys.Audit"):
        return items
    return [t for t in items if t.get("user") == req.principal.user]


def _cluster_tasks(req: Request) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    online = [n for n in sorted(cluster.nodes) if cluster.nodes[n].online]
    return _own_only(req, req.app.sandbox.tasks.list_cluster(online))


def _node_tasks(req: Request) -> PagedResult:
    node = req.params["node"]
    node_or_fail(req, node)
    p = req.params
    items, total = req.app.sandbox.tasks.list_node(
        node, start=p.get("start", 0), limit=p.get("limit", 50), typefilter=p.get("typefilter"),
        vmid=p.get("vmid"), errors=bool(p.get("errors", 0)), source=p.get("source", "archive"),
        since=p.get("since"), until=p.get("until"), statusfilter=p.get("statusfilter"),
        userfilter=p.get("userfilter"),
    )
    return PagedResult(_own_only(req, items), total)


def _task_index(req: Request) -> list[dict[str, str]]:
    node_or_fail(req, req.params["node"])
    req.app.sandbox.tasks.status(req.params["node"], req.params["upid"])
    return [{"name": "log"}, {"name": "status"}]


def _task_status(req: Request) -> dict[str, Any]:
    node_or_fail(req, req.params["node"])
    return req.app.sandbox.tasks.status(req.params["node"], req.params["upid"])


def _task_log(req: Request) -> PagedResult:
    node_or_fail(req, req.params["node"])
    lines, total = req.app.sandbox.tasks.log(
        req.params["node"], req.params["upid"], start=req.params.get("start", 0),
        limit=req.params.get("limit", 50),
    )
    return PagedResult(lines, total)


UPID = {"node": NODE, "upid": Param(optional=False)}


def register(router: Router) -> None:
    router.add("GET", "/cluster/tasks")(_cluster_tasks)
    router.add("GET", "/nodes/{node}/tasks", {
        "node": NODE, "start": Param(type="integer", minimum=0), "limit": Param(type="integer", minimum=0),
        "userfilter": Param(), "typefilter": Param(), "vmid": Param(type="integer", format=verify_vmid),
        "errors": Param(type="boolean"), "source": Param(enum=("archive", "active", "all")),
        "since": Param(type="integer"), "until": Param(type="integer"), "statusfilter": Param(),
    })(_node_tasks)
    router.add("GET", "/nodes/{node}/tasks/{upid}", UPID)(_task_index)
    router.add("GET", "/nodes/{node}/tasks/{upid}/status", UPID)(_task_status)
    router.add("GET", "/nodes/{node}/tasks/{upid}/log", {
        **UPID, "start": Param(type="integer", minimum=0), "limit": Param(type="integer", minimum=0),
        "download": Param(type="boolean"),
    })(_task_log)
