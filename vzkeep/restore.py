"""Restore one guest from its backup, safely: choose, pre-check, ask PVE, follow, clean up.

The steps, each a function so ``vzkeep restore``, ``vzkeep drill`` and the tests share them:

1. ``plan_restore``: which backup (newest, or ``--from TIME|VOLID``), which VMID, which node (one that
   sees the archive's storage), and the refusals that must happen before anything is written: an
   unknown guest, a node that cannot read the storage, a VMID in use without ``force``.
2. ``precheck``: when the archive file is readable from here (PVE reports its path; in the sandbox, or
   on the node or on a NAS mount, it is), ``vzkeep.verify`` reads it once. A corrupt archive stops
   everything before PVE is asked to write; ``next_good_backup`` finds the one to offer instead.
3. ``execute``: ``POST /nodes/{node}/qemu`` with ``archive`` (qemu-server ``src/PVE/API2/Qemu.pm``
   ``create_vm``) or ``/lxc`` with ``ostemplate`` + ``restore=1`` (pve-container ``src/PVE/API2/LXC.pm``
   ``create_vm``), then the task is followed to its end (``vzkeep.follow``: bounded by the command's
   ``Wait``, Ctrl-C and lost connections handled). When PVE fails, its own message is reported and a
   guest that PVE left behind, and that did not exist before, is destroyed: never a half-made guest of ours.
4. ``start_and_wait``: start the guest and wait until PVE reports it running.

Every call to PVE goes through ``vzkeep.pve.client.PveClient``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vzkeep.backups import Backup, Inventory, name_from_notes
from vzkeep.errors import ExitStatus, VzkeepError
from vzkeep.follow import Task, Wait, follow_task, poll_until
from vzkeep.pve.client import PveApiError, PveClient
from vzkeep.pve.decompress import DecompressError
from vzkeep.verify import ClusterView, ResultStore, verify_archive

CLEANUP_TIMEOUT = 300.0  # removing a half-made guest gets its own bound, even after the command's ran out

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                 "%Y_%m_%d-%H_%M_%S")
_PROGRESS_RE = re.compile(r"progress (\d+)%")
_OK_STATUS_RE = re.compile(r"^(OK|WARNINGS: \d+)$")


class RestoreError(VzkeepError):
    """A refusal (exit 2: nothing was done) or a failure (``ExitStatus.FINDING``), phrased for the user.

    ``details`` carries what a ``--json`` document reports beside the message (task, log tail, cleanup).
    """

    def __init__(self, message: str, status: ExitStatus = ExitStatus.USAGE, details: dict[str, Any] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint, status=status)
        self.details = details or {}


@dataclass(frozen=True)
class RestoreOptions:
    guest: str  # name or VMID
    source: str = "latest"  # latest | TIME | VOLID
    node: str | None = None
    storage: str | None = None  # target storage of the disks
    vmid: int | None = None  # restore as this VMID (beside the original)
    force: bool = False
    unique: bool = False
    pool: str | None = None  # None: the backup's environment pool when restoring the guest as it was


@dataclass
class RestorePlan:
    backup: Backup
    vmid: int
    node: str
    guest_type: str  # qemu | lxc
    params: dict[str, Any]
    existing: dict[str, Any] | None  # the guest now holding the VMID (only with force)
    older: list[Backup] = field(default_factory=list)  # the guest's older backups, newest first

    @property
    def create_path(self) -> str:
        return f"/nodes/{self.node}/{self.guest_type}"

    @property
    def label(self) -> str:
        return f"{'VM' if self.guest_type == 'qemu' else 'CT'} {self.vmid}"

    def api_calls(self, start: bool) -> list[str]:
        """What ``execute`` (and ``start_and_wait``) will send, for ``--dry-run``."""
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        calls = [f"POST {self.create_path} {args}",
                 f"GET /nodes/{self.node}/tasks/<UPID>/status and /log until the task has stopped"]
        if start:
            calls += [f"POST {self.create_path}/{self.vmid}/status/start",
                      f"GET {self.create_path}/{self.vmid}/status/current until status=running"]
        return calls


@dataclass
class Precheck:
    ran: bool
    ok: bool
    summary: str  # one line for the output: what was checked and the verdict, or why not
    problems: list[str] = field(default_factory=list)
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ran": self.ran, "ok": self.ok, "summary": self.summary, "problems": self.problems,
                "path": self.path}


@dataclass
class TaskResult:
    upid: str
    exitstatus: str
    log: list[str]
    wall_seconds: float  # from the POST to the moment the task was seen stopped

    @property
    def ok(self) -> bool:
        return bool(_OK_STATUS_RE.match(self.exitstatus))


# -- 1. choosing ----------------------------------------------------------------------------------------


def resolve_guest(inventory: Inventory, ref: str) -> int:
    """The VMID that ``ref`` (a VMID, or a guest name current or from backup notes) stands for."""
    ref = ref.strip()
    if ref.isdigit():
        vmid = int(ref)
        if vmid not in inventory.guests and not inventory.backups_of(vmid):
            raise RestoreError(f"unknown guest {vmid}: no guest and no backup has this VMID; "
                               "list what can be restored with: vzkeep backups list")
        return vmid
    vmids = {v for v, g in inventory.guests.items() if g.get("name") == ref}
    vmids |= {b.vmid for b in inventory.backups if b.name == ref or name_from_notes(b.notes) == ref}
    with_backups = {v for v in vmids if inventory.backups_of(v)}
    if len(vmids) > 1 and len(with_backups) == 1:
        vmids = with_backups  # e.g. a copy restored beside the original has the name but no backup yet
    if len(vmids) == 1:
        return vmids.pop()
    if vmids:
        raise RestoreError(f"guest name '{ref}' is ambiguous: VMIDs {', '.join(map(str, sorted(vmids)))} "
                           "carry it; give the VMID instead")
    names = {g.get("name", "") for g in inventory.guests.values()} | {b.name or "" for b in inventory.backups}
    close = difflib.get_close_matches(ref, sorted(n for n in names if n), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise RestoreError(f"unknown guest '{ref}': no guest and no backup notes carry this name{hint}; "
                       "list what can be restored with: vzkeep backups list")


def backup_stamp(backup: Backup) -> datetime:
    """The backup time as the node wrote it in the name: its local time (pve-manager ``PVE/VZDump.pm``)."""
    return backup.local_stamp() or datetime.utcfromtimestamp(backup.ctime)


def parse_time(text: str) -> datetime:
    """``2026-01-05`` (the end of that day), ``2026-01-05 02:00``, ISO ``T``, or a vzdump stamp."""
    text = text.strip()
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
        return day.replace(hour=23, minute=59, second=59)
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise RestoreError(f"--from {text!r}: expected latest, a time (2026-01-05, 2026-01-05 02:00, "
                       "2026_01_05-02_00_03) or a volume ID (backup-prod:backup/vzdump-…)")


def choose_backup(backups: list[Backup], source: str, vmid: int) -> Backup:
    """``latest``, the newest backup at or before TIME, or exactly VOLID; ``backups`` newest first."""
    if not backups:
        raise RestoreError(f"guest {vmid} has no backup on any storage an online node can read; "
                           "check `vzkeep backups list --guest {vmid}` and the storages' nodes", ExitStatus.FINDING)
    if source == "latest":
        return backups[0]
    if ":" in source and "backup/" in source:
        for backup in backups:
            if backup.volid == source:
                return backup
        raise RestoreError(f"--from {source}: not a backup of guest {vmid}; its backups: "
                           + ", ".join(b.volid for b in backups[:5]))
    limit = parse_time(source)
    for backup in backups:
        if backup_stamp(backup) <= limit:
            return backup
    oldest = backup_stamp(backups[-1]).isoformat(sep=" ")
    raise RestoreError(f"--from {source}: guest {vmid} has no backup at or before that time (oldest: {oldest})")


def plan_restore(inventory: Inventory, options: RestoreOptions) -> RestorePlan:
    vmid = resolve_guest(inventory, options.guest)
    backups = inventory.backups_of(vmid)
    backup = choose_backup(backups, options.source, vmid)
    if backup.guest_type not in ("qemu", "lxc", "openvz"):
        raise RestoreError(f"{backup.volid}: cannot tell whether it is a VM or a CT backup (non-standard name)")
    guest_type = "qemu" if backup.guest_type == "qemu" else "lxc"
    target = options.vmid or vmid
    existing = _check_target(inventory, target, guest_type, options)
    node = choose_node(inventory, backup, options.node, existing)
    _check_target_storage(inventory, options.storage, node)
    params = restore_params(guest_type, target, backup.volid, options, _pool(inventory, backup, target, vmid,
                                                                             existing, options))
    older = [b for b in backups if b.ctime < backup.ctime]
    return RestorePlan(backup, target, node, guest_type, params, existing, older)


def _check_target(inventory: Inventory, vmid: int, guest_type: str, options: RestoreOptions) -> dict[str, Any] | None:
    """The guest holding ``vmid``, allowed only with ``force`` and when PVE could overwrite it (qemu-server
    ``src/PVE/API2/Qemu.pm`` and pve-container ``src/PVE/API2/LXC.pm`` ``create_vm``: same type, same node)."""
    existing = inventory.guests.get(vmid)
    if existing is None:
        return None
    kind = "VM" if existing.get("type") == "qemu" else "CT"
    where = f"{kind} {vmid} ({existing.get('name', '?')}) already exists on node '{existing.get('node')}'"
    state = existing.get("status", "unknown")
    if not options.force:
        raise RestoreError(
            f"refusing to restore: {where} and is {state}; restoring over it would replace its disks. "
            f"Restore beside it with --vmid {free_vmid(inventory, vmid)}, or re-run with --force to replace it.")
    if existing.get("type") != guest_type:
        raise RestoreError(f"refusing to restore: {where}, but the backup is of a "
                           f"{'VM' if guest_type == 'qemu' else 'CT'}; PVE cannot overwrite one with the other. "
                           f"Restore beside it with --vmid {free_vmid(inventory, vmid)}.")
    if not inventory.nodes.get(existing.get("node", "")):
        raise RestoreError(f"refusing to restore: {where}, which is offline; remove the lost node's guest "
                           f"configuration first (see docs/runbooks/node-loss.md), or restore with --vmid "
                           f"{free_vmid(inventory, vmid)}.")
    if state == "running":
        command = "qm stop" if guest_type == "qemu" else "pct stop"
        raise RestoreError(f"refusing to restore: {where} and is running; stop it first ({command} {vmid}), "
                           "then re-run with --force")
    if existing.get("lock"):
        raise RestoreError(f"refusing to restore: {kind} {vmid} is locked ({existing['lock']}); wait for the "
                           "operation holding the lock to finish")
    return existing


def free_vmid(inventory: Inventory, near: int) -> int:
    """A VMID free in the cluster and among backups, to suggest restoring beside a guest."""
    used = set(inventory.guests) | {b.vmid for b in inventory.backups}
    candidate = max(near + 1000 if near + 1000 < 1_000_000_000 else 100, 100)
    while candidate in used:
        candidate += 1
    return candidate


def choose_node(inventory: Inventory, backup: Backup, wanted: str | None, existing: dict[str, Any] | None) -> str:
    """``--node`` (checked), else the existing guest's node, the original node, or any node that sees it."""
    if wanted is not None:
        _check_node(inventory, backup, wanted)
        if existing is not None and existing.get("node") != wanted:
            raise RestoreError(f"--node {wanted}: guest {backup.vmid} to be replaced lives on node "
                               f"'{existing.get('node')}'; PVE restores over a guest only on its own node")
        return wanted
    if not backup.nodes:
        raise RestoreError(f"{backup.volid}: no online node can read storage '{backup.storage}'", ExitStatus.FINDING)
    preferred = [existing.get("node") if existing else None,
                 (inventory.guests.get(backup.vmid) or {}).get("node"), backup.origin_node]
    for node in preferred:
        if node and node in backup.nodes:
            return node
    return backup.nodes[0]


def _check_node(inventory: Inventory, backup: Backup, node: str) -> None:
    if node not in inventory.nodes:
        raise RestoreError(f"--node {node}: no such node (nodes: {', '.join(sorted(inventory.nodes))})")
    if not inventory.nodes[node]:
        raise RestoreError(f"--node {node}: the node is offline; pick one of: {', '.join(inventory.online_nodes())}")
    if node in backup.nodes:
        return
    sees = inventory.storages.get(backup.storage)
    readers = ", ".join(backup.nodes) or "no online node"
    if sees is not None and node in sees.nodes and not sees.shared:
        reason = (f"storage '{backup.storage}' is local to each node and this archive is on the copy of "
                  f"node(s) {readers}, not on node '{node}'")
    else:
        reason = f"storage '{backup.storage}' is not available on node '{node}'"
    raise RestoreError(f"--node {node}: cannot restore {backup.volid} there: {reason}. Restore on "
                       f"{readers} (--node), or choose a backup on a shared storage (--from VOLID; "
                       f"see vzkeep backups list --guest {backup.vmid})")


def _check_target_storage(inventory: Inventory, storage: str | None, node: str) -> None:
    if storage is None:
        return
    nodes = inventory.storage_nodes.get(storage)
    if nodes is None:
        raise RestoreError(f"--storage {storage}: no such storage (storages: "
                           f"{', '.join(sorted(inventory.storage_nodes))})")
    if node not in nodes:
        raise RestoreError(f"--storage {storage}: not available on node '{node}' (it is on: {', '.join(nodes)})")


def _pool(inventory: Inventory, backup: Backup, target: int, vmid: int, existing: dict[str, Any] | None,
          options: RestoreOptions) -> str | None:
    """Put the guest back into its environment's pool so its backup job covers it again;
    a copy beside the original (another VMID) or a replaced guest (PVE keeps its pool) gets none."""
    if options.pool is not None:
        if options.pool and options.pool not in inventory.pools:
            raise RestoreError(f"--pool {options.pool}: no such pool (pools: {', '.join(sorted(inventory.pools))})")
        return options.pool or None
    if existing is not None or target != vmid or backup.env not in inventory.pools:
        return None
    return backup.env


def restore_params(guest_type: str, vmid: int, volid: str, options: RestoreOptions, pool: str | None
                   ) -> dict[str, Any]:
    """The body of ``POST /nodes/{node}/qemu`` or ``/lxc`` for a restore (``create_vm`` in qemu-server
    ``src/PVE/API2/Qemu.pm``: ``archive``; pve-container ``src/PVE/API2/LXC.pm``: ``ostemplate`` + ``restore``)."""
    params: dict[str, Any] = {"vmid": vmid}
    if guest_type == "qemu":
        params["archive"] = volid
    else:
        params.update(ostemplate=volid, restore=1)
    if options.storage:
        params["storage"] = options.storage
    if options.force:
        params["force"] = 1
    if options.unique:
        params["unique"] = 1
    if pool:
        params["pool"] = pool
    return params


# -- 2. pre-check ---------------------------------------------------------------------------------------


def archive_path(client: PveClient, node: str, backup: Backup) -> str | None:
    """The archive's file as PVE names it (``GET /nodes/{node}/storage/{storage}/content/{volume}``,
    pve-storage ``src/PVE/API2/Storage/Content.pm`` ``info``)."""
    try:
        info = client.get(f"nodes/{node}/storage/{backup.storage}/content/{backup.volid}")
    except PveApiError:
        return None
    return info.get("path") if isinstance(info, dict) else None


def node_timezone(backup: Backup) -> str | None:
    """The node's UTC offset when the backup was written, from PVE's own reading of the name (pve-storage
    ``src/PVE/Storage.pm`` ``archive_info``: ``ctime`` is ``timelocal`` of the name's stamp), as a fixed-offset
    zone."""
    offset = backup.utc_offset()
    if offset is None or offset % 3600:
        return None  # a fixed-offset zone name (Etc/GMT±h) exists for whole hours only
    hours = offset // 3600
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"  # POSIX sign: Etc/GMT-2 is UTC+2


def precheck(client: PveClient, backup: Backup, node: str, store: ResultStore | None = None) -> Precheck:
    """Verify the archive when this machine can read it; record the result for `backups list` and the exporter."""
    path = archive_path(client, node, backup)
    if not path:
        return Precheck(False, True, "pre-check skipped: PVE did not report the archive's path")
    if not os.path.isfile(path) or os.path.getsize(path) != backup.size:
        return Precheck(False, True, f"pre-check skipped: {path} is not readable from this machine "
                                     "(run vzkeep on the node or where the storage is mounted to check first)",
                        path=path)
    cluster_clock = ClusterView(client).clock()  # the result is dated as the backups and the exporter's ages are
    try:
        result = verify_archive(path, tz=node_timezone(backup), volid=backup.volid, clock=cluster_clock)
    except (OSError, DecompressError) as exc:
        return Precheck(False, True, f"pre-check skipped: {path} could not be read ({exc})", path=path)
    _record(store, result)
    if result.ok:
        return Precheck(True, True, f"pre-check: {backup.volid} is sound (sha256 {result.sha256[:16]}…)", path=path)
    return Precheck(True, False, f"pre-check: {backup.volid} is CORRUPT", list(result.problems), path)


def _record(store: ResultStore | None, result: Any) -> None:
    if store is None:
        return
    # the results store is a convenience here; the verdict was already taken
    with contextlib.suppress(OSError, ValueError):
        store.save([result])


def next_good_backup(client: PveClient, inventory: Inventory, plan: RestorePlan,
                     store: ResultStore | None = None) -> tuple[Backup, Precheck] | None:
    """The newest older backup that passes the pre-check (or that cannot be checked from here)."""
    for older in plan.older:
        if not older.nodes:
            continue
        node = plan.node if plan.node in older.nodes else older.nodes[0]
        check = precheck(client, older, node, store)
        if check.ok:
            return older, check
    return None


# -- 3. restoring ---------------------------------------------------------------------------------------


def progress_percent(line: str) -> int | None:
    match = _PROGRESS_RE.search(line)
    return int(match.group(1)) if match else None


def execute(client: PveClient, plan: RestorePlan, wait: Wait,
            on_line: Callable[[str], None] | None = None) -> TaskResult:
    """Ask PVE to restore and follow the task; on failure remove a guest PVE left that was not there before.

    A wait that ends before the task (``TaskStillRunning``, ``TaskInterrupted``) propagates as it is: the
    task is still running, so nothing is cleaned up, and the error names the task.
    """
    existed_before = plan.existing is not None
    started = time.monotonic()
    try:
        upid = client.post(plan.create_path, **plan.params)
    except PveApiError as exc:
        cleanup = None if existed_before else remove_half_made(client, plan.vmid, wait.bounded(CLEANUP_TIMEOUT))
        raise RestoreError(f"PVE refused to restore {plan.label} from {plan.backup.volid}: {exc}",
                           ExitStatus.FINDING, {"cleanup": cleanup}) from None
    except KeyboardInterrupt:
        kind = "qmrestore" if plan.guest_type == "qemu" else "vzrestore"
        raise RestoreError(
            f"interrupted while asking PVE to restore {plan.label}: PVE may have started the restore anyway",
            ExitStatus.INTERRUPTED, hint=f"look for a {kind} task of {plan.vmid} on node {plan.node} (on the "
            f"node: pvenode task list --typefilter {kind})",
        ) from None
    task = Task(plan.node, str(upid), f"restore of {plan.label}")
    exitstatus, log = follow_task(client, task, wait, on_line)
    result = TaskResult(str(upid), exitstatus, log, time.monotonic() - started)
    if not result.ok:
        cleanup = None if existed_before else remove_half_made(client, plan.vmid, wait.bounded(CLEANUP_TIMEOUT))
        raise RestoreError(
            f"PVE's restore task failed: {exitstatus}", ExitStatus.FINDING,
            {"upid": upid, "exitstatus": exitstatus, "log_tail": log[-10:], "cleanup": cleanup,
             "task_seconds": result.wall_seconds})
    return result


def guest_resource(client: PveClient, vmid: int) -> dict[str, Any] | None:
    for entry in client.get("cluster/resources", type="vm"):
        if int(entry.get("vmid", -1)) == vmid:
            return entry
    return None


def remove_half_made(client: PveClient, vmid: int, wait: Wait) -> str:
    """Destroy guest ``vmid`` if PVE left one behind; say what happened (the caller made sure it is ours)."""
    guest = guest_resource(client, vmid)
    if guest is None:
        return "no guest was left behind"
    node, kind = guest["node"], guest["type"]
    label = f"{'VM' if kind == 'qemu' else 'CT'} {vmid}"
    tool = "qm" if kind == "qemu" else "pct"
    manual = f"remove it by hand on node '{node}': {tool} unlock {vmid} && {tool} destroy {vmid} --purge"
    try:
        # DELETE /nodes/{node}/qemu/{vmid} (qemu-server Qemu.pm destroy_vm; pve-container LXC.pm destroy_vm)
        upid = client.delete(f"nodes/{node}/{kind}/{vmid}", purge=1, **{"destroy-unreferenced-disks": 1})
        status, _ = follow_task(client, Task(node, str(upid), f"removal of the half-made {label}"), wait)
    except PveApiError as exc:
        return f"the half-made {label} could NOT be removed ({exc}); {manual}"
    if not _OK_STATUS_RE.match(status):
        return f"the half-made {label} could NOT be removed ({status}); {manual}"
    return f"removed the half-made {label} that the failed restore left on node '{node}'"


# -- 4. starting ----------------------------------------------------------------------------------------


def start_and_wait(client: PveClient, node: str, guest_type: str, vmid: int, wait: Wait) -> float:
    """Start the guest and wait until PVE reports it running; returns the seconds it took."""
    began = time.monotonic()
    path = f"nodes/{node}/{guest_type}/{vmid}"
    try:
        upid = client.post(f"{path}/status/start")
    except PveApiError as exc:
        raise RestoreError(f"PVE refused to start {guest_type}/{vmid}: {exc}", ExitStatus.FINDING) from None
    task = Task(node, str(upid), f"start of {guest_type}/{vmid}")
    status, _ = follow_task(client, task, wait)
    if not _OK_STATUS_RE.match(status):
        raise RestoreError(f"starting {guest_type}/{vmid} failed: {status}", ExitStatus.FINDING)
    poll_until(lambda: client.get(f"{path}/status/current").get("status") == "running", task, wait,
               f"{guest_type}/{vmid} to be running (it was started)")
    return time.monotonic() - began
