"""vzdump, as pve-manager's ``PVE/VZDump.pm`` runs a backup job (``exec_backup``, ``exec_backup_task``).

One call = one ``vzdump`` worker task on one node. The work happens synchronously on the simulated
clock: each guest's backup starts where the previous one ended and lasts ``disk size / throughput``,
so a scenario is deterministic, while the archives are real files (``archivefile``) written as
``.dat`` and renamed (``$task->{tmptar}``), with ``.log``/``.notes``/``.protected`` sidecars, pruned
after each successful guest backup like PVE (``PVE::Storage::prune_backups`` with the job's retention).

The target storage is the node's own place for a local storage, the shared place otherwise
(``storages``); its ``ArchiveIndex`` is updated on every write and prune.

Failure modes follow ``exec_backup``: another job holding the node's global lock (we wait up to
``lockwait`` like flock, then fail without a trailer), a locked guest, a full storage (a real
``ENOSPC`` from the writer: the ``.dat`` is removed, nothing is pruned), an orphan vmid
(``unable to find VM``).
"""

from __future__ import annotations

import math
import os
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.pve import archive, localtime, retention
from vzkeep.pve.selection import GuestRef, included_guests_per_node
from vzkeep.pve.values import is_true
from vzkeep.sandbox.archivefile import compression_of, write_archive_file, writer_error
from vzkeep.sandbox.archives import PROTECTED_EXT, ArchiveIndex, archive_remove
from vzkeep.sandbox.framecache import FrameCache
from vzkeep.sandbox.guestconfig import size_text
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage
from vzkeep.sandbox.pveformat import command_line, format_size, hms, render_bytes, render_notes
from vzkeep.sandbox.settings import Settings
from vzkeep.sandbox.storages import StorageDirs
from vzkeep.sandbox.tasks import Task, TaskStore

LOCKFILE = "/var/run/vzdump.lock"  # PVE/VZDump.pm: the node-global flock
DEFAULT_LOCKWAIT_MIN = 180


@dataclass
class GuestResult:
    vmid: int
    ok: bool
    error: str | None = None
    volid: str | None = None
    size: int = 0


@dataclass
class JobLog:
    """Lines of the task log; guest lines also go to that guest's ``.log`` sidecar, time-stamped."""

    task: Task
    tz: str
    guest_lines: list[tuple[int, str]] | None = None

    def info(self, message: str, at: int) -> None:
        self.emit("INFO", message, at)

    def err(self, message: str, at: int) -> None:
        self.emit("ERROR", message, at)

    def emit(self, level: str, message: str, at: int) -> None:
        self.task.log(f"{level}: {message}")
        if self.guest_lines is not None:
            self.guest_lines.append((at, f"{level}: {message}"))

    def stamp(self, at: int) -> str:
        return localtime.clock_of(self.tz).strftime("%Y-%m-%d %H:%M:%S", at)


@dataclass
class VzdumpJob:
    cluster: Cluster
    tasks: TaskStore
    settings: Settings
    dirs: StorageDirs
    node: Node
    params: dict[str, Any]
    user: str
    now: int
    results: list[GuestResult] = field(default_factory=list)
    frames: FrameCache | None = None  # compressed disk data reused across backups (framecache)

    # ----- which guests -------------------------------------------------------------------------
    def split_guests(self) -> tuple[list[int], list[int]]:
        """(local vmids incl. orphans, other nodes' vmids): API2/VZDump.pm splits
        ``get_included_guests`` per node; unknown vmids run everywhere and fail visibly."""
        refs = [GuestRef(g.vmid, g.node, g.pool, g.type, g.name) for g in self.cluster.guests.values()]
        per_node = included_guests_per_node(self.params, refs, pools=set(self.cluster.pools))
        local = sorted(set(per_node.pop(self.node.name, [])) | set(per_node.pop("", [])))
        skipped = sorted(v for vmids in per_node.values() for v in vmids)
        return local, skipped

    # ----- the worker ---------------------------------------------------------------------------
    def run(self) -> str:
        if self.params.get("node") and self.params["node"] != self.node.name:
            return "OK"  # API2/VZDump.pm: node given and not this one
        local, skipped = self.split_guests()
        if not local and not is_true(self.params.get("all", False)):
            return "OK"  # silent exit: the VMs run on other nodes
        task_id = str(local[0]) if len(local) == 1 else ""
        task = self.tasks.start(self.node.name, "vzdump", task_id, self.user, self.now)
        log = JobLog(task, self.node.timezone)
        try:
            storage, keep = self.resolve_storage()
        except ValueError as exc:
            for line in str(exc).splitlines():
                log.err(line, self.now)
            task.finish(self.now, str(exc))
            return task.upid
        t = self.acquire_global_lock(log)
        if t is None:
            return task.upid
        log.info(f"starting new backup job: {command_line(self.params)}", t)
        if skipped:
            log.info(f"skip external VMs: {' '.join(map(str, skipped))}", t)
        for vmid in local:
            result, t = self.backup_guest(vmid, storage, keep, log, t)
            self.results.append(result)
        failed = [r for r in self.results if not r.ok]
        log.info("Backup job finished with errors" if failed else "Backup job finished successfully", t)
        task.finish(t, "job errors" if failed else None)
        return task.upid

    def resolve_storage(self) -> tuple[Storage, dict[str, int] | None]:
        """``PVE::VZDump->new``: the target storage and the effective retention (job, then storage,
        then keep-all; ``PVE::VZDump::get_storage_param`` and ``prune-backups`` handling)."""
        sid = str(self.params.get("storage") or "local")
        storage = self.cluster.storages.get(sid)
        if storage is None:
            raise ValueError(f"unable to get storage info for '{sid}' - storage '{sid}' does not exist")
        if not storage.visible_from(self.node.name):
            raise ValueError(f"storage '{sid}' is not available on node '{self.node.name}'")
        if "backup" not in storage.content:
            raise ValueError(f"can't use storage '{sid}' for backups - wrong content type")
        source = self.params.get("prune-backups") or storage.prune_backups or {"keep-all": 1}
        try:
            keep = retention.parse_prune_backups(source)
        except ValueError as exc:
            raise ValueError(f"invalid prune-backups: {exc}") from None
        # keep-all forces remove=0; with remove=0 vzdump never prunes
        if "keep-all" in keep or not is_true(self.params.get("remove", True)):
            return storage, None
        return storage, keep

    def acquire_global_lock(self, log: JobLog) -> int | None:
        """flock on ``/var/run/vzdump.lock``: wait for the node's running job up to ``lockwait`` min;
        on timeout the worker ``exit(-1)``s without a ``TASK`` trailer (``PVE::VZDump::getlock``, and
        ``PVE::RESTEnvironment::fork_worker``, which writes the trailer only when the worker returns)."""
        busy = self.tasks.busy_until(self.node.name, "vzdump")
        if busy <= self.now:
            return self.now
        lockwait = int(self.params.get("lockwait", DEFAULT_LOCKWAIT_MIN))
        if lockwait == 0:
            log.err(f"can't acquire lock '{LOCKFILE}' (wait = 0)", self.now)
            log.task.abort(self.now)
            return None
        log.info("trying to get global lock - waiting...", self.now)
        if busy - self.now > lockwait * 60:
            end = self.now + lockwait * 60
            log.err(f"can't acquire lock '{LOCKFILE}' - got timeout", end)
            log.task.abort(end)
            return None
        log.info("got global lock", busy)
        return busy

    # ----- one guest ------------------------------------------------------------------------------
    def backup_guest(
        self, vmid: int, storage: Storage, keep: dict[str, int] | None, log: JobLog, t: int
    ) -> tuple[GuestResult, int]:
        guest = self.cluster.guests.get(vmid)
        if guest is None:
            # exec_backup_task dies before the temp log exists: no .log sidecar
            log.err(f"Backup of VM {vmid} failed - unable to find VM '{vmid}'", t)
            return GuestResult(vmid, False, f"unable to find VM '{vmid}'"), t
        limit_error = self.check_backup_limit(guest, storage, keep)
        if limit_error:
            log.err(f"Backup of VM {vmid} failed - {limit_error}", t)
            return GuestResult(vmid, False, limit_error), t
        final = archive.archive_name(guest.type, vmid, t, self.params.get("compress", "0"), self.node.timezone)
        base = re.sub(r"\.(vma|tar)(\..*)?$", "", final)
        log.guest_lines = []
        start = t
        log.info(f"Starting Backup of VM {vmid} ({guest.type})", t)
        log.info(f"Backup started at {log.stamp(t)}", t)
        try:
            result, t = self.write_guest_archive(guest, storage, keep, final, log, t)
        except GuestFailure as exc:
            t = exc.at
            log.err(f"Backup of VM {vmid} failed - {exc}", t)
            log.info(f"Failed at {log.stamp(t)}", t)
            result = GuestResult(vmid, False, str(exc))
        else:
            log.info(f"Finished Backup of VM {vmid} ({hms(t - start)})", t)
            log.info(f"Backup finished at {log.stamp(t)}", t)
        self.write_sidecar_log(storage, base + ".log", log)
        log.guest_lines = None
        return result, t

    def check_backup_limit(self, guest: Guest, storage: Storage, keep: dict[str, int] | None) -> str | None:
        """With ``remove=0`` and a finite policy, refuse once the guest has ``sum(keep-*)`` backups ."""
        if is_true(self.params.get("remove", True)):
            return None
        source = self.params.get("prune-backups") or storage.prune_backups
        limit = retention.max_backups(source) if source else None
        if limit is None:
            return None
        group = self.index(storage).group_listing(guest.type, guest.vmid, self.node.timezone)
        count = sum(1 for e in group if not e["protected"])
        if count >= limit:
            return (f"There is a max backup limit of {limit} enforced by the target storage or the vzdump "
                    "parameters. Either increase the limit or delete old backup(s).")
        return None

    def write_guest_archive(
        self, guest: Guest, storage: Storage, keep: dict[str, int] | None, final: str, log: JobLog, t: int
    ) -> tuple[GuestResult, int]:
        label = "VM" if guest.type == "qemu" else "CT"
        running = guest.status == "running"
        log.info(f"status = {guest.status}", t)
        if guest.lock:
            raise GuestFailure(f"{label} is locked ({guest.lock})", t)
        log.info(f"{label} Name: {guest.name}", t)
        mode = str(self.params.get("mode", "snapshot")) if running else "stop"
        guest.lock = "backup"  # lock_vm: visible as lock:"backup" while the backup runs
        try:
            return self._write_locked(guest, storage, keep, final, log, t, mode)
        finally:
            guest.lock = None

    def _write_locked(
        self, guest: Guest, storage: Storage, keep: dict[str, int] | None, final: str, log: JobLog, t: int,
        mode: str,
    ) -> tuple[GuestResult, int]:
        if guest.type == "qemu":
            log.info(f"include disk 'scsi0' 'local-lvm:vm-{guest.vmid}-disk-0' {size_text(guest.disk_bytes)}", t)
        else:
            log.info("including mount point rootfs ('/') in backup", t)
        log.info(f"backup mode: {mode}", t)
        log.info(f"ionice priority: {self.params.get('ionice', 7)}", t)
        index = self.index(storage)
        dump_dir = index.dump_dir
        dump_dir.mkdir(parents=True, exist_ok=True)
        target = dump_dir / final
        dat = dump_dir / archive.dat_name(final)
        log.info(f"creating vzdump archive '{target}'", t)
        duration = max(1, math.ceil(guest.disk_bytes / self.settings.throughput))
        end = t + duration
        budget = None
        if storage.capacity_bytes is not None:
            budget = max(0, storage.capacity_bytes - self.dirs.used_bytes(storage, self.node.name))
        compress = compression_of(self.params)
        try:
            zero_fraction = write_archive_file(guest, self.settings, compress, dat, budget, t, self.frames)
        except OSError as exc:
            dat.unlink(missing_ok=True)  # vzdump unlinks the temp file on failure
            raise GuestFailure(writer_error(guest, compress, exc), end) from None
        size = dat.stat().st_size
        os.replace(dat, target)  # the archive appears whole, under its final name, or not at all
        index.added(final, size)
        self.log_transfer(guest, log, duration, zero_fraction, end)
        log.info(f"archive file size: {format_size(size)}", end)
        volid = f"{storage.id}:backup/{final}"
        if self.params.get("notes-template"):
            log.info("adding notes to backup", end)
            notes = render_notes(str(self.params["notes-template"]), self.cluster.name, guest.name,
                                 self.node.name, guest.vmid)
            self.write_file(index, final + archive.NOTES_EXT, notes)
        if is_true(self.params.get("protected", False)):
            log.info("marking backup as protected", end)
            self.write_file(index, final + PROTECTED_EXT, "")
        if keep is not None:
            self.prune_guest(guest, storage, keep, log, end)
        return GuestResult(guest.vmid, True, volid=volid, size=size), end

    def log_transfer(self, guest: Guest, log: JobLog, duration: int, zero_fraction: float, at: int) -> None:
        total = guest.disk_bytes
        rate = total / duration
        if guest.type == "qemu":
            log.info(f"started backup task '{uuidlib.uuid5(uuidlib.NAMESPACE_OID, str(at))}'", at - duration)
            written = total * (1 - zero_fraction)
            log.info(f"100% ({render_bytes(total, 1)} of {render_bytes(total, 1)}) in {duration}s, read: "
                     f"{render_bytes(rate, 1)}/s, write: {render_bytes(written / duration, 1)}/s", at)
            log.info(f"backup is sparse: {render_bytes(total * zero_fraction)} ({int(zero_fraction * 100)}%) "
                     "total zero data", at)
            log.info(f"transferred {render_bytes(total)} in {duration} seconds ({render_bytes(rate, 1)}/s)", at)
        else:
            used = int(total * (1 - zero_fraction))
            log.info(f"Total bytes written: {used} ({render_bytes(used, 1).replace(' ', '')}, "
                     f"{render_bytes(used / duration, 1).replace(' ', '')}/s)", at)

    def prune_guest(self, guest: Guest, storage: Storage, keep: dict[str, int], log: JobLog, at: int) -> None:
        """After a successful backup: prune this guest's group on the storage, every job's backups
        (``PVE::VZDump::exec_backup_task`` calls ``PVE::Storage::prune_backups`` for the guest)."""
        log.info("prune older backups with retention: "
                 + ", ".join(f"{k}={keep[k]}" for k in sorted(keep)), at)
        index = self.index(storage)
        listing = index.group_listing(guest.type, guest.vmid, self.node.timezone)
        marks = retention.mark(listing, keep, self.node.timezone, vmid=guest.vmid, type=guest.type)
        pruned = 0
        for entry in marks:
            if entry["mark"] != "remove":
                continue
            log.info(f"removing backup '{entry['volid']}'", at)
            archive_remove(index, entry["volid"].split("/", 1)[1])
            pruned += 1
        extra = " not covered by keep-retention policy" if pruned else ""
        log.info(f"pruned {pruned} backup(s){extra}", at)

    def write_sidecar_log(self, storage: Storage, name: str, log: JobLog) -> None:
        """Copy the guest's temp log beside the archive, if space allows (``exec_backup_task`` copies
        ``$task->{tmplog}`` to ``$task->{logfile}``; on a full storage the copy fails silently)."""
        lines = log.guest_lines or []
        text = "".join(f"{log.stamp(at)} {line}\n" for at, line in lines)
        used = self.dirs.used_bytes(storage, self.node.name)
        if storage.capacity_bytes is not None and used + len(text.encode()) > storage.capacity_bytes:
            return
        self.write_file(self.index(storage), name, text)

    def index(self, storage: Storage) -> ArchiveIndex:
        return self.dirs.index(storage, self.node.name)

    @staticmethod
    def write_file(index: ArchiveIndex, name: str, text: str) -> None:
        """A sidecar, written whole (temp file + rename) and accounted in the index."""
        path = index.dump_dir / name
        write_atomic(path, text, fsync=False)
        index.added(name, len(text.encode()))


class GuestFailure(Exception):
    """One guest's backup failed at simulated time ``at``; the job goes on with the next guest."""

    def __init__(self, message: str, at: int):
        super().__init__(message)
        self.at = at



