"""Task endpoints: ``/cluster/tasks``, ``/nodes/{node}/tasks[/{upid}[/status|/log]]``, and stopping a task.

The task store (``vzkeep.sandbox.tasks``) owns the PVE semantics; this module maps HTTP to it and
applies who sees what (pve-manager ``PVE/API2/Tasks.pm``: ``$check_task_user``, ``Sys.Audit`` on the
node; ``PVE/API2/Cluster.pm`` ``tasks``: ``Sys.Audit`` on ``/``).
"""

from __future__ import annotations

from typing import Any

from vzkeep.sandbox.api.common import cluster_of, node_or_fail
from vzkeep.sandbox.api.errors import die, param_error
from vzkeep.sandbox.api.router import Handlers, PagedResult, Request

EVERYTHING = 1 << 31


def task_owned(task: dict[str, Any], authid: str) -> bool:
    """``$check_task_user``: a user sees its own tasks and its tokens'; a token only its own."""
    if task.get("tokenid"):
        return authid in (f"{task['user']}!{task['tokenid']}", task["user"])
    return authid == task.get("user")


def _cluster_tasks(req: Request) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    online = [n for n in sorted(cluster.nodes) if cluster.nodes[n].online]
    items = req.app.sandbox.tasks.list_cluster(online)
    if req.allowed("/", "Sys.Audit"):
        return items
    return [t for t in items if t.get("user") == req.authid]


def _node_tasks(req: Request) -> PagedResult:
    node = req.params["node"]
    node_or_fail(req, node)
    p = req.params
    start, limit = int(req.get("start") or 0), int(req.get("limit") if req.get("limit") is not None else 50)
    auditor = req.allowed(f"/nodes/{node}", "Sys.Audit")
    items, total = req.app.sandbox.tasks.list_node(
        node, start=start if auditor else 0, limit=limit if auditor else EVERYTHING, typefilter=p.get("typefilter"),
        vmid=p.get("vmid"), errors=bool(p.get("errors", 0)), source=req.get("source") or "archive",
        since=p.get("since"), until=p.get("until"), statusfilter=p.get("statusfilter"),
        userfilter=p.get("userfilter"),
    )
    if not auditor:
        own = [t for t in items if task_owned(t, req.authid)]
        items, total = own[start:start + limit], len(own)
    return PagedResult(items, total)


def _task(req: Request) -> dict[str, Any]:
    """The task, after ``Tasks.pm``'s check: not yours needs Sys.Audit on the node."""
    task = req.app.sandbox.tasks.status(req.params["node"], req.params["upid"])
    if not task_owned(task, req.authid):
        req.require(f"/nodes/{req.params['node']}", "Sys.Audit")
    return task


def _task_index(req: Request) -> list[dict[str, str]]:
    node_or_fail(req, req.params["node"])
    _task(req)
    return [{"name": "log"}, {"name": "status"}]


def _task_status(req: Request) -> dict[str, Any]:
    node_or_fail(req, req.params["node"])
    return _task(req)


def _task_log(req: Request) -> PagedResult:
    node_or_fail(req, req.params["node"])
    _task(req)
    if req.params.get("download") and ("start" in req.params or "limit" in req.params):
        raise die("'download' cannot be used together with 'start' or 'limit' parameters\n")
    lines, total = req.app.sandbox.tasks.log(req.params["node"], req.params["upid"],
                                             start=int(req.get("start") or 0),
                                             limit=int(req.get("limit") if req.get("limit") is not None else 50))
    return PagedResult(lines, total)


def _stop_task(req: Request) -> None:
    """pve-manager ``PVE/API2/Tasks.pm`` ``stop_task``: the UPID must parse and name a task of this node
    (its log file exists there), and stopping another user's task needs ``Sys.Modify`` on the node."""
    node = req.params["node"]
    node_or_fail(req, node)
    task = req.app.sandbox.tasks.status(node, req.params["upid"])  # 400 "unable to parse …" / "no such task"
    if task["node"] != node:  # the proxied call looks for the log on {node}: another node's task is not there
        raise param_error({"upid": "no such task"})
    if not task_owned(task, req.authid):
        req.require(f"/nodes/{node}", "Sys.Modify")
    req.app.sandbox.stop_task(req.params["upid"])


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/cluster/tasks")(_cluster_tasks)
    handlers.add("GET", "/nodes/{node}/tasks")(_node_tasks)
    handlers.add("GET", "/nodes/{node}/tasks/{upid}")(_task_index)
    handlers.add("GET", "/nodes/{node}/tasks/{upid}/status")(_task_status)
    handlers.add("GET", "/nodes/{node}/tasks/{upid}/log")(_task_log)
    handlers.add("DELETE", "/nodes/{node}/tasks/{upid}")(_stop_task)

