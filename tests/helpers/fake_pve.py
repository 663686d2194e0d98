"""A PVE cluster as prebuilt API answers, in PVE's shapes: for tests (``FakeApi``, an ``ApiGet``) and for
``bench/fake_pve_server.py`` (the same answers over HTTPS).

Shapes: pve-manager ``PVE/API2/Cluster.pm`` resources, ``PVE/API2/Backup.pm``, ``PVE/API2/Tasks.pm``,
``PVE/API2/Nodes.pm`` time; pve-storage ``PVE/API2/Storage/Content.pm``; pve-access-control
``src/PVE/API2/AccessControl.pm`` permissions. A cluster of two nodes, three pools with one nightly job each
and ``archives`` backups per guest on shared storages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

NODES = ("pve1", "pve2")
POOLS = ("prod", "lab", "monitoring")
DAY = 86400
HISTORY_DAYS = 8
TZ_OFFSET = 3600  # the nodes' zone: Europe/Paris in winter
NOW = 1_795_000_000  # a fixed cluster time for tests: 2026-11-18, CET in Europe/Paris
TOKEN = {"user": "monitoring@pve", "token_name": "exporter", "token_value": "00000000-0000-4000-8000-000000000000"}
PRIVILEGES = ("Sys.Audit", "VM.Audit", "Pool.Audit", "Datastore.Audit", "Datastore.AllocateSpace", "VM.Backup")


def _stamp(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + TZ_OFFSET))


def _volid(storage: str, kind: str, vmid: int, t: int) -> str:
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(t + TZ_OFFSET))
    return f"{storage}:backup/vzdump-{kind}-{vmid}-{stamp}.tar.zst"


def build(guests: int, archives: int, now: int) -> dict[str, Any]:
    """Every answer, keyed by API path (without /api2/json and without the query)."""
    night = now - now % DAY + 2 * 3600 - TZ_OFFSET  # 02:00 local of today
    if night > now:
        night -= DAY
    members = [(100 + i, POOLS[i % 3], NODES[i % 2], "lxc" if i % 2 else "qemu") for i in range(guests)]
    resources: list[dict[str, Any]] = []
    for vmid, pool, node, kind in members:
        resources.append({
            "id": f"{kind}/{vmid}", "type": kind, "vmid": vmid, "name": f"guest-{vmid}", "node": node, "pool": pool,
            "status": "running", "template": 0, "maxmem": 2 << 30, "mem": 1 << 30, "maxcpu": 2, "cpu": 0.01,
            "maxdisk": 8 << 30, "disk": 0, "uptime": 86400, "netin": 1, "netout": 1, "diskread": 1,
            "diskwrite": 1,
        })
    for node in NODES:
        resources.append({"id": f"node/{node}", "type": "node", "node": node, "status": "online", "level": "",
                          "maxcpu": 8, "cpu": 0.1, "maxmem": 64 << 30, "mem": 8 << 30, "uptime": 86400})
        for pool in POOLS:
            resources.append({"id": f"storage/{node}/backup-{pool}", "type": "storage", "storage": f"backup-{pool}",
                              "node": node, "status": "available", "content": "backup", "shared": 1,
                              "plugintype": "nfs", "maxdisk": 10 << 40, "disk": 2 << 40})
    for pool in POOLS:
        resources.append({"id": f"/pool/{pool}", "type": "pool", "pool": pool})
    answers: dict[str, Any] = {
        "cluster/resources": resources,
        "cluster/backup": [
            {"id": f"vzkeep-{pool}", "type": "vzdump", "enabled": 1, "schedule": "02:00", "pool": pool,
             "storage": f"backup-{pool}", "mode": "snapshot", "compress": "zstd", "next-run": night + DAY}
            for pool in POOLS
        ],
        "cluster/backup-info/not-backed-up": [],
        "cluster/status": [{"type": "cluster", "name": "homelab", "id": "cluster", "nodes": 2, "quorate": 1,
                            "version": 2}]
        + [{"type": "node", "name": n, "id": f"node/{n}", "online": 1, "local": int(n == "pve1"), "nodeid": i,
            "level": "", "ip": "127.0.0.1"} for i, n in enumerate(NODES, 1)],
        "version": {"version": "9.1.3", "release": "9.1", "repoid": "abcdef01"},
        "cluster/config/qdevice": {},
        "access/permissions": {p: {priv: 1 for priv in PRIVILEGES}
                               for p in ("/", "/nodes", "/pool", "/storage", "/vms", "/access")},
    }
    for node in NODES:
        answers[f"nodes/{node}/time"] = {"time": now, "localtime": now + TZ_OFFSET, "timezone": "Europe/Paris"}
        answers[f"nodes/{node}/subscription"] = {"status": "notfound", "level": ""}
        answers[f"nodes/{node}/replication"] = []
        for kind in ("qemu", "lxc"):
            answers[f"nodes/{node}/{kind}"] = [{"vmid": v, "name": f"guest-{v}", "status": "running"}
                                               for v, _, n, k in members if n == node and k == kind]
            for v, _, n, k in members:
                if n == node and k == kind:
                    answers[f"nodes/{node}/{kind}/{v}/config"] = {"name": f"guest-{v}", "onboot": 1, "memory": 2048}
        tasks = []
        for day in range(HISTORY_DAYS):
            start = night - day * DAY
            for pool in POOLS:
                upid = f"UPID:{node}:0000{day:02d}{POOLS.index(pool)}0:00000000:{start:08X}:vzdump::root@pam:"
                guests_here = [(v, k) for v, p, n, k in members if p == pool and n == node]
                end = start + 5 * len(guests_here)
                tasks.append({"upid": upid, "node": node, "pid": 1, "pstart": 1, "starttime": start, "type": "vzdump",
                              "id": "", "user": "root@pam", "endtime": end, "status": "OK"})
                answers[f"nodes/{node}/tasks/{upid}/log"] = _task_log(pool, guests_here, start)
        answers[f"nodes/{node}/tasks"] = sorted(tasks, key=lambda t: -t["starttime"])
    # GET /cluster/resources?type=vm|storage|node (pve-manager PVE/API2/Cluster.pm resources)
    for kind, types in (("vm", ("qemu", "lxc")), ("storage", ("storage",)), ("node", ("node",))):
        answers[f"cluster/resources?type={kind}"] = [r for r in resources if r["type"] in types]
    for pool in POOLS:
        content = []
        for vmid, p, _node, kind in members:
            if p != pool:
                continue
            for day in range(archives):
                t = night - day * DAY + 5
                content.append({"volid": _volid(f"backup-{pool}", kind, vmid, t), "vmid": vmid, "ctime": t,
                                "size": 100_000_000 + vmid, "format": "tar.zst", "subtype": kind, "content": "backup",
                                "notes": f"guest-{vmid} ({pool})"})
        for node in NODES:
            answers[f"nodes/{node}/storage/backup-{pool}/content"] = content
    return answers


def _task_log(pool: str, guests: list[tuple[int, str]], start: int) -> list[dict[str, Any]]:
    lines = [f"INFO: starting new backup job: vzdump --pool {pool} --storage backup-{pool} --mode snapshot "
             "--compress zstd --mailnotification always --quiet 1"]
    t = start
    for vmid, kind in guests:
        lines += [
            f"INFO: Starting Backup of VM {vmid} ({kind})",
            f"INFO: Backup started at {_stamp(t)}",
            "INFO: status = running",
            f"INFO: creating vzdump archive '/mnt/pve/backup-{pool}/dump/vzdump-{kind}-{vmid}.tar.zst'",
            "INFO: Total bytes written: 104857600 (100MiB, 50MiB/s)",
            "INFO: archive file size: 95MB",
            f"INFO: Finished Backup of VM {vmid} (00:00:05)",
            f"INFO: Backup finished at {_stamp(t + 5)}",
        ]
        t += 5
    lines += ["INFO: Backup job finished successfully", "TASK OK"]
    return [{"n": i + 1, "t": text} for i, text in enumerate(lines)]


class FakeApi:
    """An ``ApiGet`` over ``build``'s answers; ``calls`` records every path read; ``since`` filters task lists
    like PVE (``PVE/API2/Tasks.pm`` node_tasks)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, path: str, **params: Any) -> Any:
        self.calls.append(path)
        kind = params.get("type")
        answer = self.answers[f"{path}?type={kind}" if kind else path]
        if path.endswith("/tasks") and "since" in params:
            answer = [t for t in answer if t["starttime"] >= int(params["since"])]
        if isinstance(answer, Exception):
            raise answer
        return answer


def fake_cluster(guests: int = 9, archives: int = 3, now: int = NOW,
                 change: Callable[[dict[str, Any]], None] | None = None, **overrides: Any) -> FakeApi:
    """The tests' one cluster builder: ``build``'s answers, with ``overrides`` (path -> answer) replacing some
    and ``change`` editing them in place (a failed task, a full storage...), behind a ``FakeApi``."""
    answers = build(guests, archives, now)
    answers.update(overrides)
    if change is not None:
        change(answers)
    return FakeApi(answers)


def failed_backup(vmid: int, error: str) -> Callable[[dict[str, Any]], None]:
    """A ``change`` for ``fake_cluster``: the newest backup of ``vmid`` failed with ``error`` inside its
    multi-guest job task, in vzdump's words (pve-manager ``PVE/VZDump.pm``: "Backup of VM ... failed - ...",
    then "Failed at ..."), and the task ended with "job errors"."""

    def change(answers: dict[str, Any]) -> None:
        def log(task: dict[str, Any]) -> list[str]:
            return [line["t"] for line in answers[f"nodes/pve1/tasks/{task['upid']}/log"]]

        finished = f"INFO: Finished Backup of VM {vmid} (00:00:05)"
        newest = max((t for t in answers["nodes/pve1/tasks"] if finished in log(t)), key=lambda t: t["starttime"])
        lines = log(newest)
        at = lines.index(finished)  # then "INFO: Backup finished at <local time>"
        lines[at:at + 2] = [f"ERROR: Backup of VM {vmid} failed - {error}",
                            lines[at + 1].replace("Backup finished at", "Failed at")]
        answers[f"nodes/pve1/tasks/{newest['upid']}/log"] = [{"n": i + 1, "t": t} for i, t in enumerate(lines)]
        newest["status"] = "job errors"

    return change


def granted_only(privileges: Iterable[str]) -> Callable[[dict[str, Any]], None]:
    """A ``change`` for ``fake_cluster``: the cluster as PVE shows it to a token holding ``privileges`` on ``/``
    (propagated). Without Datastore.AllocateSpace and VM.Backup, every backup volume fails pve-storage
    ``PVE/Storage.pm`` ``check_volume_access``: the content listing answers 200 with an empty list."""
    held = frozenset(privileges)

    def change(answers: dict[str, Any]) -> None:
        paths = ["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"]
        paths += [f"/vms/{r['vmid']}" for r in answers["cluster/resources"] if "vmid" in r and r.get("pool")]
        answers["access/permissions"] = {p: {priv: 1 for priv in held} for p in paths}
        if not {"Datastore.AllocateSpace", "VM.Backup"} <= held:
            for path in [p for p in answers if p.endswith("/content")]:
                answers[path] = []

    return change
