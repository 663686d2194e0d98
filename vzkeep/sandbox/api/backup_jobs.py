"""Backup jobs and manual backups: ``/cluster/backup`` (CRUD, ``included_volumes``),
``/cluster/backup-info/not-backed-up`` and ``POST /nodes/{node}/vzdump``.

Sources: pve-manager ``PVE/API2/Backup.pm`` (``assert_param_permission_*``, ``$schedule_param_check``,
``create_job``, ``update_job``, ``delete_job``, ``read_job``, ``index``), ``PVE/API2/VZDump.pm``,
``PVE/VZDump.pm`` (``verify_vzdump_parameters``, ``get_included_guests``, ``exec_backup``),
``PVE/API2/Cluster/BackupInfo.pm``. The schema checks names, types, formats (``prune-backups``,
``fleecing``, ``performance`` with their validators) and ``requires``; what runs inside
``cfs_lock_file('jobs.cfg')`` and is re-thrown with ``die "$@"`` comes back as a 500 whose text is the
exception stringified (``400 Parameter verification failed.`` + ``param: message``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from vzkeep.pve import calendar, selection
from vzkeep.pve.selection import GuestRef
from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.common import cluster_of, node_or_fail, now
from vzkeep.sandbox.api.errors import ApiError, die, param_error
from vzkeep.sandbox.api.formats import FormatError, HashFormat, split_list
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.api.validation import print_property_string
from vzkeep.sandbox.model import Cluster, Guest

# pve-guest-common src/PVE/VZDump/Common.pm $PROPERTY_STRINGS
PROPERTY_FORMATS = {"fleecing": "backup-fleecing", "performance": "backup-performance",
                    "prune-backups": "prune-backups"}
PROPERTY_STRINGS = tuple(PROPERTY_FORMATS)
DELETABLE_EXTRA = ("comment", "repeat-missed")
ALL_DAYS = "mon,tue,wed,thu,fri,sat,sun"
ROOT = "root@pam"


# -- checks shared by jobs and manual runs -------------------------------------------------------------------


def assert_param_permission_common(req: Request, param: dict[str, Any], is_delete: bool = False) -> None:
    """Backup.pm: root-only options, Sys.Modify for resource limits, the fleecing storage."""
    if req.authid == ROOT:
        return
    for key in ("tmpdir", "dumpdir", "script", "job-id"):
        if key in param:
            raise param_error({key: "Only root may set this option."})
    if any(param.get(k) is not None for k in ("bwlimit", "ionice", "performance")):
        req.require("/", "Sys.Modify")
    if param.get("fleecing") and not is_delete:
        fleecing = req.version.checker.parse_property_string("backup-fleecing", str(param["fleecing"]), "fleecing")
        if fleecing.get("storage"):
            req.require(f"/storage/{fleecing['storage']}", "Datastore.AllocateSpace")


def storage_param(param: dict[str, Any]) -> str | None:
    """``get_storage_param``: none with ``dumpdir``, else the storage or ``local``."""
    return None if param.get("dumpdir") else (param.get("storage") or "local")


def verify_vzdump_parameters(req: Request, params: dict[str, Any], check_missing: bool) -> None:
    """``PVE::VZDump::verify_vzdump_parameters``, in PVE's order; sets ``all`` like PVE does."""
    for other in ("all", "exclude", "pool"):
        if params.get(other) and params.get("vmid"):
            raise param_error({other: "option conflicts with option 'vmid'"})
    if req.version.vzdump_maxfiles_to_prune_backups:
        # 8.x $parse_prune_backups_maxfiles: maxfiles becomes keep-last (or keep-all for 0)
        if params.get("prune-backups") is not None and params.get("maxfiles") is not None:
            raise param_error({"prune-backups": "option conflicts with option 'maxfiles'"})
        maxfiles = params.pop("maxfiles", None)
        if maxfiles is not None and params.get("prune-backups") is None:
            params["prune-backups"] = f"keep-last={maxfiles}" if int(maxfiles) else "keep-all=1"
    _canonical_property_strings(req, params)
    if template := params.get("notes-template"):
        problem = notes_template_problem(str(template))
        if problem:
            raise param_error({"notes-template": problem})
    if params.get("exclude") is not None and not params.get("pool"):
        params["all"] = 1
    if check_missing and not (params.get("all") or params.get("stop") or params.get("pool")) and not params.get("vmid"):
        raise param_error({"vmid": "property is missing"})


def _canonical_property_strings(req: Request, params: dict[str, Any]) -> None:
    """``parse_property_string`` of prune-backups/fleecing/performance (with their validators), kept as
    PVE writes them back to jobs.cfg (``print_property_string``: ``keep-daily=0`` becomes ``keep-all=1``)."""
    checker = req.version.checker
    for key, fmt in PROPERTY_FORMATS.items():
        value = params.get(key)
        if not isinstance(value, str):
            continue
        try:
            parsed = checker.parse_property_string(fmt, value, key)
        except FormatError as exc:
            raise param_error({key: "invalid format - " + exc.stringify()}) from None
        registered = checker.formats.get(fmt)
        assert isinstance(registered, HashFormat)
        params[key] = print_property_string(parsed, registered.properties)


def notes_template_problem(template: str) -> str | None:
    """VZDump.pm ``$verify_notes_template``."""
    if "\n" in template:
        return "contains a line feed\n"
    problems = [f"escape sequence '\\{m.group(1)}' at char {m.start()}" for m in re.finditer(r"\\(.)", template)
                if m.group(1) not in ("n", "\\")]
    problems += [f"variable '{m.group(1)}' at char {m.start(1)}" for m in re.finditer(r"\{\{([^\s{}]+)\}\}", template)
                 if m.group(1) not in ("cluster", "guestname", "node", "vmid")]
    return f"found unknown: {', '.join(problems)}\n" if problems else None


def _check_pool(req: Request, params: dict[str, Any]) -> None:
    if pool := params.get("pool"):
        req.rpcenv.check_pool_exist(pool)
        req.require(f"/pool/{pool}", "VM.Backup")


def _stringified(exc: ApiError) -> ApiError:
    """``die "$@"`` after ``cfs_lock_file``: an exception comes back as its text, HTTP 500."""
    return exc if exc.plain else die(exc.stringify())


# -- which guests a job covers (vzkeep.pve.selection = PVE/VZDump.pm get_included_guests) ----------------------


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


# -- /cluster/backup ------------------------------------------------------------------------------------------


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
    # "vzdump jobs are cluster wide, there maybe was no local run so simply calculate from now"
    try:
        return calendar.parse(job["schedule"]).next_after(int(at), tz)
    except (calendar.CalendarEventError, KeyError):
        return None


def _list_jobs(req: Request) -> list[dict[str, Any]]:
    """In jobs.cfg order (the order they were created), each with its next run."""
    cluster = cluster_of(req)
    tz = cluster.nodes[req.app.local_node].timezone
    at = now(req)
    out = []
    for job_id, job in cluster.jobs.items():
        view = _job_view(job_id, job)
        nxt = _next_run(job, at, tz)
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


def _schedule_param_check(params: dict[str, Any], required: bool) -> None:
    """``$schedule_param_check``: ``schedule`` xor the legacy ``starttime`` (+ ``dow``)."""
    if params.get("schedule") is not None:
        if params.get("starttime") is not None:
            raise param_error({"starttime": "'starttime' and 'schedule' cannot both be set"})
    elif params.get("starttime") is None:
        if required:
            raise param_error({"schedule": "neither 'starttime' nor 'schedule' were set"})
    else:
        dow = ",".join(split_list(params.get("dow")))
        starttime = str(params["starttime"])
        params["schedule"] = starttime if not dow or dow == ALL_DAYS else f"{dow} {starttime}"
    params.pop("starttime", None)
    params.pop("dow", None)


def _create_job(req: Request) -> None:
    params = dict(req.params)
    assert_param_permission_common(req, params)
    if req.authid != ROOT and (storeid := storage_param(params)):
        req.require(f"/storage/{storeid}", "Datastore.Allocate")
    _check_pool(req, params)
    _schedule_param_check(params, True)
    params.setdefault("enabled", 1)
    job_id = params.pop("id", None) or str(uuid.uuid4())
    try:
        with configuration.jobs(req.app.sandbox) as jobs:
            if job_id in jobs:
                raise die(f"Job '{job_id}' already exists\n")
            verify_vzdump_parameters(req, params, True)
            jobs[job_id] = params
    except ApiError as exc:
        raise _stringified(exc) from None


def _apply_selection_rules(job: dict[str, Any], update: dict[str, Any]) -> None:
    """update_job: a new vmid drops all/exclude/pool, a new all drops vmid/pool, a pool job drops
    vmid/all/exclude."""
    if update.get("vmid") is not None:
        for key in ("all", "exclude", "pool"):
            job.pop(key, None)
    elif update.get("all"):
        for key in ("vmid", "pool"):
            job.pop(key, None)
    elif job.get("pool"):
        for key in ("vmid", "all", "exclude"):
            job.pop(key, None)


def _update_job(req: Request) -> None:
    params = dict(req.params)
    job_id = params.pop("id")
    delete = {k: 1 for k in split_list(params.pop("delete", None))}
    _assert_update_permissions(req, params, delete, None)
    _check_pool(req, params)
    _schedule_param_check(params, False)
    vzdump_options = req.version.schema.get("POST", "/nodes/{node}/vzdump").properties
    try:
        with configuration.jobs(req.app.sandbox) as jobs:
            if not params and not delete:
                raise die("no options specified\n")
            verify_vzdump_parameters(req, params, False)
            job = jobs.get(job_id)
            if job is None:
                raise die("no such vzdump job\n")
            _assert_update_permissions(req, params, delete, job)
            for key in delete:
                if key not in vzdump_options and key not in DELETABLE_EXTRA:
                    raise param_error({"delete": f"unknown option '{key}'"})
                job.pop(key, None)
            job.update(params)
            if job.get("exclude") is not None and job.get("pool") is None:
                job["all"] = 1
            _apply_selection_rules(job, params)
            verify_vzdump_parameters(req, job, True)
    except ApiError as exc:
        raise _stringified(exc) from None


def _assert_update_permissions(req: Request, update: dict[str, Any], delete: dict[str, Any],
                               current: dict[str, Any] | None) -> None:
    """Backup.pm ``assert_param_permission_update``: early (without the job), then against the job."""
    if req.authid == ROOT:
        return
    assert_param_permission_common(req, update)
    assert_param_permission_common(req, delete, is_delete=True)
    if update.get("storage"):
        req.require(f"/storage/{update['storage']}", "Datastore.Allocate")
    elif delete.get("storage"):
        req.require("/storage/local", "Datastore.Allocate")
    if current is None:
        return
    if current.get("dumpdir"):
        raise die("only root@pam may edit jobs with a 'dumpdir' option.")
    if storeid := storage_param(current):
        req.require(f"/storage/{storeid}", "Datastore.Allocate")


def _delete_job(req: Request) -> None:
    job_id = req.params["id"]
    try:
        with configuration.jobs(req.app.sandbox) as jobs:
            if job_id not in jobs:
                raise param_error({"id": f"No such job '{job_id}'"})
            del jobs[job_id]
    except ApiError as exc:
        raise _stringified(exc) from None


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
                     for v in split_list(str(job["vmid"])) if int(v) not in known]
    return {"children": children}


# -- POST /nodes/{node}/vzdump ----------------------------------------------------------------------------------


def _vzdump(req: Request) -> str:
    """A manual backup run (API2/VZDump.pm): checks are real 400s here; a UPID or ``"OK"``."""
    node = req.params["node"]
    node_or_fail(req, node)
    if req.params.get("stdout"):
        raise param_error({"stdout": "option is only allowed on the command line interface."})
    params = {k: v for k, v in req.params.items() if k != "node"}
    if req.authid != ROOT:
        assert_param_permission_common(req, params)
        if params.get("prune-backups") is not None and (storeid := storage_param(params)):
            req.require(f"/storage/{storeid}", "Datastore.Allocate")
    verify_vzdump_parameters(req, params, True)
    if storeid := storage_param(params):
        req.require(f"/storage/{storeid}", "Datastore.AllocateSpace")
    _guest_backup_permissions(req, params)
    return req.app.sandbox.vzdump(node, params, req.authid)


def _guest_backup_permissions(req: Request, params: dict[str, Any]) -> None:
    """``exec_backup`` checks VM.Backup per guest: with ``all`` a guest you may not back up is skipped
    (the sandbox adds it to ``exclude``); otherwise PVE's task dies on it, and the sandbox refuses
    before starting the task, with the same text."""
    if req.authid == ROOT:
        return
    cluster = cluster_of(req)
    job = dict(params)
    vmids = selection.included_vmids(job, _refs(cluster)) | {int(v) for v in split_list(params.get("vmid"))}
    denied = sorted(v for v in vmids if not req.allowed(f"/vms/{v}", "VM.Backup"))
    if not denied:
        return
    if params.get("all"):
        params["exclude"] = ",".join(sorted({*split_list(params.get("exclude")), *map(str, denied)}))
        return
    req.require(f"/vms/{denied[0]}", "VM.Backup")


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/cluster/backup")(_list_jobs)
    handlers.add("POST", "/cluster/backup")(_create_job)
    handlers.add("GET", "/cluster/backup/{id}")(_get_job)
    handlers.add("PUT", "/cluster/backup/{id}")(_update_job)
    handlers.add("DELETE", "/cluster/backup/{id}")(_delete_job)
    handlers.add("GET", "/cluster/backup/{id}/included_volumes")(_included_volumes)
    handlers.add("GET", "/cluster/backup-info/not-backed-up")(_not_backed_up)
    handlers.add("POST", "/nodes/{node}/vzdump")(_vzdump)
