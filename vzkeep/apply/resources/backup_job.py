"""``proxmoxve:backup/job:Job`` (TF ``proxmox_backup_job``): a vzdump job of ``/cluster/backup``.

bpg ``fwprovider/cluster/backup/resource.go`` (create, read, update, delete, schema) and ``model.go``
(``toAPICreate``, ``toAPIUpdate``, ``fillCommonFields``, ``fromAPI``); requests in
``proxmox/cluster/backup/backup.go``, bodies in ``backup_types.go``:

- create: ``POST /cluster/backup`` with ``id``, ``schedule``, ``storage`` and every field the program sets;
- read: ``GET /cluster/backup/<id>``;
- update: ``PUT /cluster/backup/<id>`` with ``schedule``, ``storage``, every field of the plan and
  ``delete=`` the fields the plan drops;
- delete: ``DELETE /cluster/backup/<id>`` ("does not exist" is success).

Create and update end with a read. The update sends the whole plan, not only what changed
(``fillCommonFields``); a field that is Optional+Computed with ``UseStateForUnknown`` (``enabled``,
``all``, ``mode``, ``compress``, ``bwlimit``, ``prune_backups``, ``repeat_missed``…) and not set in
the program keeps the value last read, so it is sent again rather than deleted. Booleans are 0/1,
lists comma-joined, ``prune-backups`` is ``key=value`` pairs sorted by key. ``id`` is ForceNew.
``excludes`` (PVE ``exclude``) follows bpg commit c398ad8d, the SDK's newer bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vzkeep.apply.http import PveHttpError, comma, flag, number, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ResourceKind, fail

# (Pulumi input, PVE parameter, encoder) in fillCommonFields' order; lists and maps empty = not sent.
_Encoder = Callable[[Any], str | None]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> str | None:
    return None if value is None else number(value)


def _bool(value: Any) -> str | None:
    return None if value is None else flag(bool(value))


def _list(value: Any) -> str | None:
    return comma(str(v) for v in value) if value else None


def _prune(value: Any) -> str | None:
    return ",".join(f"{k}={value[k]}" for k in sorted(value)) if value else None


def _fleecing(value: Any) -> str | None:
    """backup_types.go FleecingConfig.EncodeValues: ``enabled=1,storage=x``."""
    if value is None:
        return None
    parts = []
    if value.get("enabled") is not None:
        parts.append(f"enabled={flag(bool(value['enabled']))}")
    if value.get("storage") is not None:
        parts.append(f"storage={value['storage']}")
    return ",".join(parts) or None


def _performance(value: Any) -> str | None:
    """backup_types.go PerformanceConfig.EncodeValues: ``max-workers=N,pbs-entries-max=M``."""
    if value is None:
        return None
    parts = [f"{api}={number(value[key])}" for key, api in (("maxWorkers", "max-workers"),
                                                                ("pbsEntriesMax", "pbs-entries-max"))
             if value.get(key) is not None]
    return ",".join(parts) or None


FIELDS: tuple[tuple[str, str, _Encoder], ...] = (
    ("enabled", "enabled", _bool), ("node", "node", _text), ("all", "all", _bool), ("mode", "mode", _text),
    ("compress", "compress", _text), ("starttime", "starttime", _text), ("maxfiles", "maxfiles", _int),
    ("mailtos", "mailto", _list), ("mailnotification", "mailnotification", _text),
    ("bwlimit", "bwlimit", _int), ("ionice", "ionice", _int), ("pigz", "pigz", _int), ("zstd", "zstd", _int),
    ("pruneBackups", "prune-backups", _prune), ("remove", "remove", _bool),
    ("notesTemplate", "notes-template", _text), ("protected", "protected", _bool),
    ("repeatMissed", "repeat-missed", _bool), ("script", "script", _text), ("stdexcludes", "stdexcludes", _bool),
    ("pool", "pool", _text), ("pbsChangeDetectionMode", "pbs-change-detection-mode", _text),
    ("lockwait", "lockwait", _int), ("stopwait", "stopwait", _int), ("tmpdir", "tmpdir", _text),
    ("vmids", "vmid", _list), ("excludes", "exclude", _list), ("excludePaths", "exclude-path", _list),
    ("fleecing", "fleecing", _fleecing), ("performance", "performance", _performance),
)
# resource.go schema: Optional+Computed with UseStateForUnknown.
COMPUTED = frozenset({"enabled", "all", "mode", "compress", "mailnotification", "bwlimit", "ionice", "pruneBackups",
                      "remove", "protected", "repeatMissed", "stdexcludes"})
# toAPIUpdate's CheckDelete calls, in its order.
DELETABLE = ("node", "vmids", "excludes", "mode", "compress", "starttime", "maxfiles", "mailtos", "mailnotification",
             "bwlimit", "ionice", "pigz", "zstd", "pruneBackups", "remove", "notesTemplate", "protected",
             "repeatMissed", "script", "stdexcludes", "excludePaths", "pool", "fleecing", "performance",
             "pbsChangeDetectionMode", "lockwait", "stopwait", "tmpdir", "enabled", "all")
_API_NAME = {key: api for key, api, _ in FIELDS}


class BackupJob(ResourceKind):
    tokens = ("proxmoxve:backup/job:Job",)
    title = "backup job"
    source = ("bpg fwprovider/cluster/backup/resource.go, model.go; proxmox/cluster/backup/backup.go, "
              "backup_types.go")
    replace_on = frozenset({"resourceId"})

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        problems = []
        job = self.pve_id(inputs)
        if job in view.jobs():
            problems.append(f"Job '{job}' already exists")  # pve-manager PVE/API2/Backup.pm create_job
        pool = inputs.get("pool")
        if pool and pool not in view.pools() and pool not in declared.pools:
            problems.append(f"pool '{pool}' does not exist")  # RPCEnvironment check_pool_exist (403)
        storage = inputs.get("storage")
        if storage and storage not in view.storages() and storage not in declared.storages:
            problems.append(f"storage '{storage}' does not exist")  # PVE::Storage::storage_config
        return problems

    def create_form(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        plan = {key: inputs.get(key) for key in _API_NAME}
        return (("id", self.pve_id(inputs)), ("schedule", str(inputs["schedule"])),
                ("storage", str(inputs["storage"])), *_common(plan))

    def update_form(self, inputs: Inputs, state: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        plan = _plan(inputs, state)
        deleted = [_API_NAME[key] for key in DELETABLE if _empty(plan.get(key)) and state.get(key) is not None]
        pairs = [("schedule", str(inputs["schedule"])), ("storage", str(inputs["storage"])), *_common(plan)]
        if deleted:
            pairs.append(("delete", comma(deleted)))
        return tuple(pairs)

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        try:
            ctx.pve.call("POST", "cluster/backup", self.create_form(inputs))
        except PveHttpError as err:
            raise fail("Unable to Create Backup Job", err, "error creating backup job") from None
        return self._read_after(ctx, inputs, "Unable to Read Backup Job After Creation")

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            data = ctx.pve.call("GET", f"cluster/backup/{path_escape(applied.id)}") or {}
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail("Unable to Read Backup Job", err, "error reading backup job") from None
        return Applied(applied.id, from_api(data))

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", f"cluster/backup/{path_escape(applied.id)}", self.update_form(new, applied.outputs))
        except PveHttpError as err:
            raise fail("Unable to Update Backup Job", err, "error updating backup job") from None
        return self._read_after(ctx, new, "Unable to Read Backup Job After Update")

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("DELETE", f"cluster/backup/{path_escape(applied.id)}")
        except PveHttpError as err:
            if not err.does_not_exist:
                raise fail("Unable to Delete Backup Job", err, "error deleting backup job") from None

    def _read_after(self, ctx: Context, inputs: Inputs, summary: str) -> Applied:
        job = self.pve_id(inputs)
        try:
            data = ctx.pve.call("GET", f"cluster/backup/{path_escape(job)}") or {}
        except PveHttpError as err:
            raise fail(summary, err, "error reading backup job") from None
        return Applied(job, from_api(data))


def _plan(inputs: Inputs, state: dict[str, Any]) -> dict[str, Any]:
    """The plan Terraform hands ``Update``: the program's values, else the last read for computed fields."""
    return {key: inputs[key] if inputs.get(key) is not None else (state.get(key) if key in COMPUTED else None)
            for key in _API_NAME}


def _common(plan: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for key, api, encode in FIELDS:
        value = encode(plan.get(key))
        if value is not None:
            pairs.append((api, value))
    return pairs


def _empty(value: Any) -> bool:
    """attribute.go planRemovesField: null, or an empty list, set or map."""
    return value is None or (isinstance(value, (list, dict)) and not value)


def from_api(data: dict[str, Any]) -> dict[str, Any]:
    """model.go fromAPI: the job as its state holds it, in the SDK's names (None = null)."""

    def boolean(key: str) -> bool | None:
        value = data.get(key)
        return None if value is None else value in (1, True, "1", "true")

    def integer(key: str) -> int | None:
        value = data.get(key)
        return None if value is None else int(value)

    def split(key: str) -> list[str] | None:
        value = data.get(key)
        if value in (None, ""):
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items]

    prune = data.get("prune-backups")
    if isinstance(prune, dict):  # backup_types.go PruneBackupsString: an object is read as sorted k=v
        prune = ",".join(f"{k}={prune[k]}" for k in sorted(prune))
    fleecing = data.get("fleecing")
    if isinstance(fleecing, str):
        fleecing = dict(part.split("=", 1) for part in fleecing.split(",") if "=" in part)
    performance = data.get("performance")
    if isinstance(performance, str):
        performance = dict(part.split("=", 1) for part in performance.split(",") if "=" in part)
    return {
        "resourceId": str(data.get("id", "")), "schedule": data.get("schedule"), "storage": data.get("storage"),
        "enabled": boolean("enabled"), "node": data.get("node"), "all": boolean("all"), "vmids": split("vmid"),
        "excludes": split("exclude"), "mode": data.get("mode"), "compress": data.get("compress"),
        "starttime": data.get("starttime"), "maxfiles": integer("maxfiles"), "mailtos": split("mailto"),
        "mailnotification": data.get("mailnotification"), "bwlimit": integer("bwlimit"), "ionice": integer("ionice"),
        "pigz": integer("pigz"), "zstd": integer("zstd"),
        "pruneBackups": dict(part.split("=", 1) for part in str(prune).split(",") if "=" in part) if prune else None,
        "remove": boolean("remove"), "notesTemplate": data.get("notes-template"), "protected": boolean("protected"),
        "repeatMissed": boolean("repeat-missed"), "script": data.get("script"),
        "stdexcludes": boolean("stdexcludes"), "excludePaths": split("exclude-path"), "pool": data.get("pool"),
        "fleecing": {"enabled": fleecing.get("enabled") in (1, True, "1"), "storage": fleecing.get("storage")}
        if isinstance(fleecing, dict) else None,
        "performance": {"maxWorkers": int(performance["max-workers"]) if "max-workers" in performance else None,
                        "pbsEntriesMax": int(performance["pbs-entries-max"]) if "pbs-entries-max" in performance
                        else None} if isinstance(performance, dict) else None,
        "pbsChangeDetectionMode": data.get("pbs-change-detection-mode"), "lockwait": integer("lockwait"),
        "stopwait": integer("stopwait"), "tmpdir": data.get("tmpdir"),
    }
