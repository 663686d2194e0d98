"""Backup jobs and manual backups: ``/cluster/backup`` (CRUD, ``included_volumes``),
``/cluster/backup-info/not-backed-up`` and ``POST /nodes/{node}/vzdump``.

Sources: pve-manager ``PVE/API2/Backup.pm``, ``PVE/API2/VZDump.pm``, ``PVE/VZDump.pm``
(``verify_vzdump_parameters``, ``get_included_guests``), ``PVE/API2/Cluster/BackupInfo.pm``;
reference/pve.md §4.1 (error quirks), §4.3, §4.4. The quirk that matters to clients: schema errors
are a real 400, but whatever ``/cluster/backup`` checks inside ``cfs_lock_file`` comes back as a
500 whose text is a stringified 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from vzkeep.pve import calendar, retention, selection
from vzkeep.pve.selection import GuestRef
from vzkeep.sandbox.api.common import cluster_of, node_or_fail, now
from vzkeep.sandbox.api.errors import ApiError, die, param_error, stringified_param_error
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import (
    NODE,
    Param,
    Schema,
    split_vmid_list,
    verify_node_name,
    verify_storage_id,
    verify_vmid_list,
)
from vzkeep.sandbox.model import Cluster, Guest


def _check_schedule(text: str) -> str | None:
    try:
        calendar.parse(text)
    except calendar.CalendarEventError as exc:
        return exc.pve_message
    return None


def _check_prune_backups(text: str) -> str | None:
    try:
        retention.parse_prune_backups(text)
    except ValueError as exc:
        return str(exc)
    return None


# The vzdump option schema shared by jobs and manual runs (pve-guest-common PVE/VZDump/Common.pm, §4.3).
VZDUMP_OPTIONS: Schema = {
    "vmid": Param(format=verify_vmid_list),
    "all": Param(type="boolean"),
    "exclude": Param(format=verify_vmid_list),
    "pool": Param(),
    "node": Param(format=verify_node_name),
    "storage": Param(format=verify_storage_id),
    "dumpdir": Param(),
    "tmpdir": Param(),
    "mode": Param(enum=("snapshot", "suspend", "stop")),
    "compress": Param(enum=("0", "1", "gzip", "lzo", "zstd")),
    "pigz": Param(type="integer"),
    "zstd": Param(type="integer"),
    "bwlimit": Param(type="integer", minimum=0),
    "ionice": Param(type="integer", minimum=0, maximum=8),
    "lockwait": Param(type="integer", minimum=0),
    "stopwait": Param(type="integer", minimum=0),
    "stdexcludes": Param(type="boolean"),
    "exclude-path": Param(),
    "prune-backups": Param(format=_check_prune_backups),
    "maxfiles": Param(type="integer", minimum=0),  # PVE 8 only, deprecated (reference §2.1)
    "remove": Param(type="boolean"),
    "notes-template": Param(max_length=1024),
    "protected": Param(type="boolean"),
    "mailto": Param(),
    "mailnotification": Param(enum=("always", "failure")),
    "notification-mode": Param(enum=("auto", "legacy-sendmail", "notification-system")),
    "notification-policy": Param(enum=("always", "failure", "never")),
    "notification-target": Param(),
    "fleecing": Param(),
    "performance": Param(),
    "pbs-change-detection-mode": Param(enum=("legacy", "data", "metadata")),
    "script": Param(),
    "quiet": Param(type="boolean"),
    "stop": Param(type="boolean"),
    "size": Param(type="integer"),
}
JOB_OPTIONS: Schema = {
    **VZDUMP_OPTIONS,
    "id": Param(pattern=r"\S+", max_length=50),
    "schedule": Param(max_length=128, format=_check_schedule),
    "enabled": Param(type="boolean"),
    "repeat-missed": Param(type="boolean"),
    "comment": Param(max_length=512),
    "starttime": Param(pattern=r"\d{1,2}:\d{1,2}"),
    "dow": Param(pattern=r"(mon|tue|wed|thu|fri|sat|sun)(,(mon|tue|wed|thu|fri|sat|sun))*"),
}
PROPERTY_STRINGS = ("prune-backups", "fleecing", "performance")
DELETABLE_EXTRA = ("comment", "repeat-missed")
ALL_DAYS = "mon,tue,wed,thu,fri,sat,sun"

ParamRaiser = Callable[[str, str], ApiError]


def verify_vzdump_parameters(params: dict[str, Any], check_missing: bool, raise_as: ParamRaiser) -> None:
    """PVE/VZDump.pm ``verify_vzdump_parameters``, in PVE's order; mutates ``all`` like PVE does."""
    for other in ("all", "exclude", "pool"):
        if params.get(other) and params.get("vmid"):
            raise raise_as(other, "option conflicts with option 'vmid'")
    if params.get("prune-backups") is not None and params.get("maxfiles") is not None:
        raise raise_as("prune-backups", "option conflicts with option 'maxfiles'")
    if params.get("notes-template") and not params.get("storage"):
        raise raise_as("notes-template", "'notes-template' requires option 'storage'")
    if params.get("protected") and not params.get("storage"):
        raise raise_as("protected", "'protected' requires option 'storage'")
    if params.get("exclude") is not None and not params.get("pool"):
        params["all"] = 1
    if check_missing and not any(params.get(k) for k in ("all", "stop", "pool", "vmid")):
        raise raise_as("vmid", "property is missing")


def _real_400(param: str, msg: str) -> ApiError:
    return param_error({param: msg})


# -- which guests a job covers (vzkeep.pve.selection = PVE/VZDump.pm get_included_guests) ----------


def _refs(cluster: Cluster) -> list[GuestRef]:
    return [GuestRef(vmid=g.vmid, node=g.node, pool=g.pool, type=g.type, name=g.name)
            for g in cluster.guests.values()]


def included_guests(job: dict[str, Any], cluster: Cluster) -> list[Guest]:
    """The existing guests ``job`` backs up, sorted by vmid."""
    vmids = selection.included_vmids(job, _refs(cluster))
    return [cluster.guests[v] for v in sorted(vmids)]


def _not_backed_up(req: Request) -> list[dict[str, Any]]:
    """Guests in no job at all; PVE counts every job here, enabled or not (BackupInfo.pm)."""
    cluster = cluster_of(req)
    with cluster.lock:
        missing = selection.not_backed_up(list(cluster.jobs.values()), _refs(cluster))
    return [{"vmid": g.vmid, "type": g.type, "name": g.name} for g in missing]


# -- /cluster/backup ---------------------------------------------------------------------------------


def _decode_value(key: str, value: Any) -> Any:
    """JobBase.pm ``decode_value``: property strings come back as objects with string values."""
    if key in PROPERTY_STRINGS and isinstance(value, str):
        out: dict[str, str] = {}
        for item in filter(None, value.split(",")):
            name, _, val = item.partition("=")
            out[name.strip()] = val.strip()
        return out
    return value


def _job_view(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    view = {"id": job_id, "type": "vzdump", **{k: _decode_value(k, v) for k, v in job.items()}}
    view.setdefault("enabled", 1)
    return view


def _next_run(job: dict[str, Any], at: float, tz: str) -> int | None:
    # Computed from now even for disabled jobs: jobs are cluster-wide (reference §4.3).
    try:
        return calendar.parse(job["schedule"]).next_after(int(at), tz)
    except (calendar.CalendarEventError, KeyError):
        return None


def _list_jobs(req: Request) -> list[dict[str, Any]]:
    cluster = cluster_of(req)
    tz = cluster.nodes[req.app.local_node].timezone
    at = now(req)
    out = []
    for job_id in sorted(cluster.jobs):
        view = _job_view(job_id, cluster.jobs[job_id])
        nxt = _next_run(cluster.jobs[job_id], at, tz)
        if nxt is not None:
            view["next-run"] = nxt
        out.append(view)
    return out


def _job_or_400(req: Request) -> dict[str, Any]:
    job = cluster_of(req).jobs.get(req.params["id"])
    if job is None:
        raise param_error({"id": f"No such job '{req.params['id']}'"})
    return job


def _get_job(req: Request) -> dict[str, Any]:
    return _job_view(req.params["id"], _job_or_400(req))


def _schedule_from_legacy(params: dict[str, Any]) -> None:
    """Deprecated ``starttime`` + ``dow`` become ``schedule = "<dow> <starttime>"`` (Backup.pm)."""
    starttime = params.pop("starttime", None)
    dow = params.pop("dow", None)
    if starttime and not params.get("schedule"):
        params["schedule"] = f"{dow or ALL_DAYS} {starttime}"


def _sync_job_states(req: Request) -> None:
    """Let the scheduler see the change now (Jobs.pm ``synchronize_job_states_with_config``): a new
    job starts "created" at this time; an edited schedule/enabled sets ``updated = now``, so an edit
    never triggers an immediate run (reference §3.5). The scheduler owns ``Cluster.job_state``."""
    req.app.sandbox.jobs_changed()


def _create_job(req: Request) -> None:
    params = dict(req.params)
    if not params.get("schedule") and not params.get("starttime"):
        raise param_error({"schedule": "neither 'starttime' nor 'schedule' were set"})  # before the lock
    _schedule_from_legacy(params)
    cluster = cluster_of(req)
    with cluster.lock:  # everything below runs "inside cfs_lock_file": param errors become 500s
        job_id = params.pop("id", None) or str(uuid.uuid4())
        if job_id in cluster.jobs:
            raise die(f"Job '{job_id}' already exists")
        verify_vzdump_parameters(params, True, stringified_param_error)
        params.setdefault("enabled", 1)
        cluster.jobs[job_id] = params
    _sync_job_states(req)


def _apply_selection_rules(job: dict[str, Any], update: dict[str, Any]) -> None:
    """Backup.pm update_job: a new vmid drops all/exclude/pool, a new all drops vmid/pool, a pool job
    drops vmid/all/exclude."""
    if "vmid" in update:
        for key in ("all", "exclude", "pool"):
            job.pop(key, None)
    if "all" in update:
        for key in ("vmid", "pool"):
            job.pop(key, None)
    if job.get("pool"):
        for key in ("vmid", "all", "exclude"):
            job.pop(key, None)


def _update_job(req: Request) -> None:
    params = dict(req.params)
    job_id = params.pop("id")
    delete = params.pop("delete", None)
    _schedule_from_legacy(params)
    cluster = cluster_of(req)
    with cluster.lock:
        job = cluster.jobs.get(job_id)
        if job is None:
            raise die("no such vzdump job")
        updated = dict(job)
        for key in filter(None, (k.strip() for k in (delete or "").split(","))):
            if key not in VZDUMP_OPTIONS and key not in DELETABLE_EXTRA:
                raise stringified_param_error("delete", f"unknown option '{key}'")
            updated.pop(key, None)
        if "pool" in params:  # a new pool replaces any other selection
            for key in ("vmid", "all", "exclude"):
                updated.pop(key, None)
        updated.update(params)
        _apply_selection_rules(updated, params)
        verify_vzdump_parameters(updated, True, stringified_param_error)
        cluster.jobs[job_id] = updated
    _sync_job_states(req)


def _delete_job(req: Request) -> None:
    cluster = cluster_of(req)
    with cluster.lock:
        if req.params["id"] not in cluster.jobs:
            raise stringified_param_error("id", f"No such job '{req.params['id']}'")
        del cluster.jobs[req.params["id"]]
    _sync_job_states(req)


def _volume_children(guest: Guest) -> list[dict[str, Any]]:
    if guest.type == "lxc":
        return [{"id": f"{guest.vmid}:rootfs", "name": f"local-lvm:subvol-{guest.vmid}-disk-0",
                 "included": 1, "reason": "rootfs", "leaf": 1}]
    return [{"id": f"{guest.vmid}:scsi0", "name": f"local-lvm:vm-{guest.vmid}-disk-0",
             "included": 1, "reason": "default", "leaf": 1}]


def _included_volumes(req: Request) -> dict[str, Any]:
    job = _job_or_400(req)
    cluster = cluster_of(req)
    children = [
        {"id": g.vmid, "name": g.name, "type": g.type, "children": _volume_children(g), "leaf": 0}
        for g in included_guests(job, cluster)
    ]
    if job.get("vmid"):  # listed vmids that no longer exist show as type "unknown"
        known = {g.vmid for g in cluster.guests.values()}
        children += [{"id": int(v), "type": "unknown", "children": [], "leaf": 0}
                     for v in split_vmid_list(str(job["vmid"])) if int(v) not in known]
    return {"children": children}


# -- POST /nodes/{node}/vzdump -------------------------------------------------------------------------


def _vzdump(req: Request) -> str:
    """A manual backup run: checks are real 400s here; returns a UPID or ``"OK"`` (reference §4.4)."""
    node = req.params["node"]
    # The path's {node} and vzdump's ``node`` option are one parameter in the API, so over HTTP a
    # run always targets the node it is sent to; the engine gets the node separately.
    params = {k: v for k, v in req.params.items() if k != "node"}
    node_or_fail(req, node)
    verify_vzdump_parameters(params, True, _real_400)
    for vmid in split_vmid_list(str(params.get("vmid") or "")):
        req.require(f"/vms/{vmid}", "VM.Backup")
    req.require(f"/storage/{params.get('storage', 'local')}", "Datastore.AllocateSpace")
    job_id = params.pop("job-id", None)
    if job_id is not None and req.principal.userid != "root@pam":
        raise die("Only root may set job-id")  # root@pam only (reference §4.4)
    if job_id is not None:
        params["job-id"] = job_id
    return req.app.sandbox.vzdump(node, params, req.principal.userid)


JOB_WRITE = ("/", "Sys.Modify")
JOB_READ = ("/", "Sys.Audit")
JOB_ID = {"id": Param(optional=False, max_length=50)}


def register(router: Router) -> None:
    router.add("GET", "/cluster/backup", perm=JOB_READ)(_list_jobs)
    router.add("POST", "/cluster/backup", JOB_OPTIONS, perm=JOB_WRITE)(_create_job)
    router.add("GET", "/cluster/backup/{id}", JOB_ID, perm=JOB_READ)(_get_job)
    router.add("PUT", "/cluster/backup/{id}", {**JOB_OPTIONS, **JOB_ID, "delete": Param(max_length=4096)},
               perm=JOB_WRITE)(_update_job)
    router.add("DELETE", "/cluster/backup/{id}", JOB_ID, perm=JOB_WRITE)(_delete_job)
    router.add("GET", "/cluster/backup/{id}/included_volumes", JOB_ID, perm=JOB_READ)(_included_volumes)
    router.add("GET", "/cluster/backup-info/not-backed-up", perm=JOB_READ)(_not_backed_up)
    router.add("POST", "/nodes/{node}/vzdump", {**VZDUMP_OPTIONS, "node": NODE, "job-id": Param(),
                                                 "stdout": Param(type="boolean")})(_vzdump)
