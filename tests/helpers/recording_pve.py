"""A recording, in-memory stand-in for the PVE routes ``sandbox apply`` calls, for unit tests of the apply engine.

It records every request (``requests``) and keeps just enough state to answer reads the way PVE
shapes them (storage config, pools, jobs.cfg, users, roles, ACL, tokens, containers and their
tasks). ``fail_on`` makes one request fail as PVE would. Behaviour that matters for real lives in
the sandbox and is tested against it; this double only lets the engine's logic be tested alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from vzkeep.apply.http import PveHttpError, PveRequest


class FakePve:
    def __init__(self, nodes: tuple[str, ...] = ("pve1", "pve2"), version: str = "9.1.2") -> None:
        self.version = version
        self.nodes = list(nodes)
        self.requests: list[PveRequest] = []
        self.storages: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, list[str]] = {}
        self.acl: list[dict[str, Any]] = []
        self.tokens: dict[str, dict[str, Any]] = {}
        self.guests: dict[int, dict[str, Any]] = {}
        self.fail_on: Callable[[PveRequest], PveHttpError | None] = lambda _r: None
        self.after: Callable[[PveRequest], None] = lambda _r: None

    # -- transport ------------------------------------------------------------------------------------

    def send(self, request: PveRequest) -> Any:
        self.requests.append(request)
        error = self.fail_on(request)
        if error is not None:
            raise error
        split = urlsplit(request.target())
        query = dict(parse_qsl(split.query))
        body = dict(request.form)
        result = self._route(request.method, split.path, query, body)
        self.after(request)
        return result

    def mutations(self) -> list[str]:
        return [str(r) for r in self.requests if r.method != "GET"]

    def _route(self, method: str, path: str, query: dict[str, str], body: dict[str, str]) -> Any:
        for pattern, handler in _ROUTES:
            match = re.fullmatch(pattern, f"{method} {path}")
            if match:
                return handler(self, *match.groups(), query=query, body=body)
        raise PveHttpError(501, f"Method '{method} /{path}' not implemented")

    # -- handlers -------------------------------------------------------------------------------------

    def get_version(self, **_: Any) -> Any:
        return {"version": self.version, "release": self.version.rsplit(".", 1)[0], "repoid": "fake"}

    def list_nodes(self, **_: Any) -> Any:
        return [{"node": n, "status": "online"} for n in self.nodes]

    def list_resources(self, query: dict[str, str], **_: Any) -> Any:
        return [{"vmid": vmid, "type": g["type"], "node": g["node"]} for vmid, g in self.guests.items()]

    def list_storage(self, **_: Any) -> Any:
        return [{"storage": sid, **cfg} for sid, cfg in self.storages.items()]

    def create_storage(self, body: dict[str, str], **_: Any) -> Any:
        sid = body.pop("storage")
        _insert(self.storages, sid, _fields(body, skip=_CREATE_ONLY),
                f"create storage failed: storage ID '{sid}' already defined")
        return {"storage": sid, "type": body["type"]}

    def get_storage(self, sid: str, **_: Any) -> Any:
        if sid not in self.storages:
            raise PveHttpError(500, f"storage '{sid}' does not exist")
        return {"storage": sid, "digest": "x", **self.storages[sid]}

    def update_storage(self, sid: str, body: dict[str, str], **_: Any) -> Any:
        self.get_storage(sid)
        self.storages[sid].update(_fields(body, skip=_CREATE_ONLY))

    def delete_storage(self, sid: str, **_: Any) -> Any:
        self.get_storage(sid)
        del self.storages[sid]

    def pools_get(self, query: dict[str, str], **_: Any) -> Any:
        if "poolid" in query:
            pool = self.pools.get(query["poolid"])
            members = [{"id": f"{g['type']}/{v}", "vmid": v, "node": g["node"], "type": g["type"]}
                       for v, g in self.guests.items() if g.get("pool") == query["poolid"]]
            return [] if pool is None else [{"poolid": query["poolid"], **pool, "members": members}]
        return [{"poolid": p, **cfg} for p, cfg in self.pools.items()]

    def pools_create(self, body: dict[str, str], **_: Any) -> Any:
        pool = body["poolid"]
        _insert(self.pools, pool, {"comment": body.get("comment", "")},
                f"create pool failed: pool '{pool}' already exists")

    def pools_update(self, query: dict[str, str], body: dict[str, str], **_: Any) -> Any:
        pool = query["poolid"]
        if "comment" in body:
            self.pools[pool]["comment"] = body["comment"]
        for vmid in [int(v) for v in body.get("vms", "").split(",") if v]:
            self.guests[vmid]["pool"] = None if body.get("delete") == "1" else pool

    def pools_delete(self, query: dict[str, str], **_: Any) -> Any:
        if query["poolid"] not in self.pools:
            raise PveHttpError(500, f"delete pool failed: pool '{query['poolid']}' does not exist")
        del self.pools[query["poolid"]]

    def jobs_list(self, **_: Any) -> Any:
        return [{"id": j, **cfg} for j, cfg in self.jobs.items()]

    def jobs_create(self, body: dict[str, str], **_: Any) -> Any:
        job = body.pop("id")
        _insert(self.jobs, job, {"type": "vzdump", "enabled": 1, **_fields(body)}, f"Job '{job}' already exists")

    def jobs_get(self, job: str, **_: Any) -> Any:
        if job not in self.jobs:
            raise PveHttpError(400, "Parameter verification failed.", {"errors": {"id": f"No such job '{job}'"}})
        return {"id": job, **self.jobs[job]}

    def jobs_update(self, job: str, body: dict[str, str], **_: Any) -> Any:
        self.jobs_get(job)
        for key in (body.pop("delete", "") or "").split(","):
            self.jobs[job].pop(key, None)
        self.jobs[job].update(_fields(body))

    def jobs_delete(self, job: str, **_: Any) -> Any:
        self.jobs_get(job)
        del self.jobs[job]

    def users_list(self, **_: Any) -> Any:
        return [{"userid": u, **cfg} for u, cfg in self.users.items()]

    def users_create(self, body: dict[str, str], **_: Any) -> Any:
        self.users[body.pop("userid")] = _fields(body)

    def users_get(self, user: str, **_: Any) -> Any:
        if user not in self.users:
            raise PveHttpError(500, f"no such user ('{user}')")
        return self.users[user]

    def users_delete(self, user: str, **_: Any) -> Any:
        del self.users[user]

    def roles_list(self, **_: Any) -> Any:
        return [{"roleid": r, "privs": ",".join(p)} for r, p in self.roles.items()]

    def roles_create(self, body: dict[str, str], **_: Any) -> Any:
        self.roles[body["roleid"]] = body["privs"].split(",")

    def roles_get(self, role: str, **_: Any) -> Any:
        if role not in self.roles:
            raise PveHttpError(500, f"role '{role}' does not exist")
        return dict.fromkeys(self.roles[role], 1)

    def roles_update(self, role: str, body: dict[str, str], **_: Any) -> Any:
        self.roles[role] = body["privs"].split(",")

    def roles_delete(self, role: str, **_: Any) -> Any:
        del self.roles[role]

    def acl_get(self, **_: Any) -> Any:
        return list(self.acl)

    def acl_put(self, body: dict[str, str], **_: Any) -> Any:
        for field, kind in (("users", "user"), ("tokens", "token"), ("groups", "group")):
            if field in body:
                entry = {"path": body["path"], "roleid": body["roles"], "type": kind, "ugid": body[field],
                         "propagate": int(body.get("propagate", "1"))}
                self.acl = [a for a in self.acl if {**a, "propagate": 0} != {**entry, "propagate": 0}]
                if body.get("delete") != "1":
                    self.acl.append(entry)

    def token_list(self, user: str, **_: Any) -> Any:
        return [{"tokenid": t.split("!", 1)[1], **cfg} for t, cfg in self.tokens.items() if t.startswith(user + "!")]

    def token_create(self, user: str, name: str, body: dict[str, str], **_: Any) -> Any:
        self.tokens[f"{user}!{name}"] = _fields(body)
        return {"full-tokenid": f"{user}!{name}", "value": str(uuid.uuid4()), "info": {}}

    def token_get(self, user: str, name: str, **_: Any) -> Any:
        return self.tokens[f"{user}!{name}"]

    def token_delete(self, user: str, name: str, **_: Any) -> Any:
        del self.tokens[f"{user}!{name}"]

    def lxc_create(self, node: str, body: dict[str, str], **_: Any) -> Any:
        vmid = int(body["vmid"])
        if vmid in self.guests:
            raise PveHttpError(500, f"CT {vmid} already exists on node '{self.guests[vmid]['node']}'")
        self.guests[vmid] = {"type": "lxc", "node": node, "config": dict(body),
                             "status": "running" if body.get("start") == "1" else "stopped"}
        return f"UPID:{node}:00000001:00000001:00000001:vzcreate:{vmid}:root@pam!vzkeep:"

    def task_status(self, node: str, upid: str, **_: Any) -> Any:
        return {"status": "stopped", "exitstatus": "OK", "upid": upid}

    def lxc_status(self, node: str, vmid: str, **_: Any) -> Any:
        return {"status": self.guests[int(vmid)]["status"], "vmid": int(vmid)}

    def lxc_config(self, node: str, vmid: str, **_: Any) -> Any:
        return self.guests[int(vmid)]["config"]

    def lxc_interfaces(self, node: str, vmid: str, **_: Any) -> Any:
        raise PveHttpError(501, "Method not implemented")


_CREATE_ONLY = ("create-base-path", "create-subdirs")  # storage options PVE acts on and does not keep


def _typed(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _fields(body: dict[str, str], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A form body as PVE keeps it in its config: digits as integers, ``skip`` left out."""
    return {k: _typed(v) for k, v in body.items() if k not in skip}


def _insert(table: dict[str, Any], key: str, entry: Any, duplicate: str) -> None:
    """Add a section to a config table; an existing key fails with PVE's message (500, as inside cfs_lock)."""
    if key in table:
        raise PveHttpError(500, duplicate)
    table[key] = entry


_ROUTES: list[tuple[str, Callable[..., Any]]] = [
    (r"GET version", FakePve.get_version),
    (r"GET nodes", FakePve.list_nodes),
    (r"GET cluster/resources", FakePve.list_resources),
    (r"GET storage", FakePve.list_storage),
    (r"POST storage", FakePve.create_storage),
    (r"GET storage/([^/]+)", FakePve.get_storage),
    (r"PUT storage/([^/]+)", FakePve.update_storage),
    (r"DELETE storage/([^/]+)", FakePve.delete_storage),
    (r"GET pools", FakePve.pools_get),
    (r"POST pools", FakePve.pools_create),
    (r"PUT pools", FakePve.pools_update),
    (r"DELETE pools", FakePve.pools_delete),
    (r"GET cluster/backup", FakePve.jobs_list),
    (r"POST cluster/backup", FakePve.jobs_create),
    (r"GET cluster/backup/([^/]+)", FakePve.jobs_get),
    (r"PUT cluster/backup/([^/]+)", FakePve.jobs_update),
    (r"DELETE cluster/backup/([^/]+)", FakePve.jobs_delete),
    (r"GET access/users", FakePve.users_list),
    (r"POST access/users", FakePve.users_create),
    (r"GET access/users/([^/]+)/token", FakePve.token_list),
    (r"POST access/users/([^/]+)/token/([^/]+)", FakePve.token_create),
    (r"GET access/users/([^/]+)/token/([^/]+)", FakePve.token_get),
    (r"DELETE access/users/([^/]+)/token/([^/]+)", FakePve.token_delete),
    (r"GET access/users/([^/]+)", FakePve.users_get),
    (r"DELETE access/users/([^/]+)", FakePve.users_delete),
    (r"GET access/roles", FakePve.roles_list),
    (r"POST access/roles", FakePve.roles_create),
    (r"GET access/roles/([^/]+)", FakePve.roles_get),
    (r"PUT access/roles/([^/]+)", FakePve.roles_update),
    (r"DELETE access/roles/([^/]+)", FakePve.roles_delete),
    (r"GET access/acl", FakePve.acl_get),
    (r"PUT access/acl", FakePve.acl_put),
    (r"POST nodes/([^/]+)/lxc", FakePve.lxc_create),
    (r"GET nodes/([^/]+)/tasks/([^/]+)/status", FakePve.task_status),
    (r"GET nodes/([^/]+)/lxc/(\d+)/status/current", FakePve.lxc_status),
    (r"GET nodes/([^/]+)/lxc/(\d+)/config", FakePve.lxc_config),
    (r"GET nodes/([^/]+)/lxc/(\d+)/interfaces", FakePve.lxc_interfaces),
]
