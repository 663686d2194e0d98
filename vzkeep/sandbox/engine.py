"""The ``Sandbox`` facade: the emulated cluster's engine, as the HTTP layer and the CLI call it.

It owns the ``Cluster`` (model), the ``Clock``, the ``TaskStore``, the ``Scheduler`` and the storages'
places (``StorageDirs``: one per node for a local storage), and runs vzdump, restores, deletions and
prunes synchronously on the simulated clock. Every public method takes ``cluster.lock``; the ones that
change state are one ``journal.Transaction`` each, so an HTTP request thread, the background ticker
and a test can call it concurrently, and a SIGKILL at any moment reopens to a consistent cluster.

The sandbox's directory::

    cluster.json   the model (Cluster.save), including clock_epoch and job states
    journal.json   only while an engine call commits (journal.py)
    engine.json    engine settings (bytes per GiB, throughput) fixed at creation
    tasks/<node>/  task index and logs (tasks.py)
    disks/         disk images of restored guests (restore.py)

What a reopen repairs (``open``): a committed call the crash cut short is finished from the journal;
files of a call that never committed (``.dat`` archives being written, temporary files, disk images
no guest refers to) are deleted; the clock resumes no earlier than the newest archive and the end of
the newest task (a rebooted node runs no task, and time never runs backwards past its own work).

Errors are ``ParamError`` (HTTP 400) / ``PveError`` (HTTP 500 or given status) from ``tasks``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.pve import archive, retention
from vzkeep.sandbox import create as create_mod
from vzkeep.sandbox import journal
from vzkeep.sandbox import restore as restore_mod
from vzkeep.sandbox.archives import PROTECTED_EXT, ArchiveIndex, archive_remove
from vzkeep.sandbox.clock import Clock
from vzkeep.sandbox.diskdata import file_digest
from vzkeep.sandbox.faults import Faults
from vzkeep.sandbox.framecache import FrameCache
from vzkeep.sandbox.guestconfig import guest_disk
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage
from vzkeep.sandbox.scheduler import SCHEDULER_USER, Scheduler
from vzkeep.sandbox.settings import Settings
from vzkeep.sandbox.storages import FILL_FILE, StorageDirs, storage_root
from vzkeep.sandbox.tasks import ParamError, PveError, TaskStore
from vzkeep.sandbox.templates import templates_of
from vzkeep.sandbox.vzdump import VzdumpJob

CLUSTER_FILE = journal.CLUSTER_FILE
SETTINGS_FILE = "engine.json"
CORRUPTIONS = ("flip", "truncate", "zero")
# The longest single `advance`: a year and a day. Beyond it a typo (`advance 1e9`) would simulate for
# hours; run several advances instead. Between scheduled events the cluster lock is released and an
# interruption (``interrupt``, Ctrl-C on `serve`) is honoured.
MAX_ADVANCE_SECONDS = 366 * 86400

__all__ = ["CORRUPTIONS", "MAX_ADVANCE_SECONDS", "ParamError", "PveError", "Sandbox", "Settings",
           "advance_seconds"]


def advance_seconds(value: Any) -> float:
    """``value`` as a number of seconds an ``advance`` may take, else a 400 naming what is allowed."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_ADVANCE_SECONDS:
        raise ParamError({"seconds": f"value '{value}' is not allowed: give a finite number of seconds from 0 to "
                                     f"{MAX_ADVANCE_SECONDS} (366 days); advance again for more"})
    return seconds


class Sandbox:
    def __init__(self, directory: Path, cluster: Cluster, clock: Clock, settings: Settings):
        self.directory = Path(directory)
        self.cluster = cluster
        self.clock = clock
        self.settings = settings
        self.tasks = TaskStore(self.directory / "tasks", clock.now)
        self.scheduler = Scheduler(cluster, self.tasks, self._run_scheduled_job)
        self.dirs = StorageDirs(cluster)
        self.frames = FrameCache(self.directory / "cache")
        self.faults = Faults()
        self._last_tick = clock.time()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._interrupt = threading.Event()
        self._txn: journal.Transaction | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike[str], cluster: Cluster, *, speed: float | None = None,
               stepped: bool = False, settings: Settings | None = None) -> Sandbox:
        """A new sandbox in ``directory``; the clock starts at ``cluster.clock_epoch`` (or now)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        settings = settings or Settings()
        write_atomic(root / SETTINGS_FILE, json.dumps(asdict(settings), indent=1))
        sandbox = cls(root, cluster, Clock(cluster.clock_epoch, speed=speed, stepped=stepped), settings)
        with sandbox._change():
            sandbox.scheduler.sync_states(sandbox.clock.time())
        return sandbox

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, speed: float | None = None,
             stepped: bool = False) -> Sandbox:
        """Reopen a saved sandbox, repaired as the module docstring says. The clock resumes where it
        stopped; each online node's scheduler starts afresh, so missed runs are dropped unless a job
        has ``repeat-missed`` (pve-manager ``PVE/Jobs.pm``)."""
        root = Path(directory)
        path = root / CLUSTER_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no sandbox here (create one with Sandbox.create)")
        journal.recover(root)
        cluster = Cluster.load(path)
        settings_path = root / SETTINGS_FILE
        settings = Settings(**json.loads(settings_path.read_text())) if settings_path.exists() else Settings()
        sandbox = cls(root, cluster, Clock(cluster.clock_epoch, speed=speed, stepped=stepped), settings)
        with sandbox._change():
            sandbox._remove_uncommitted()
            sandbox.clock.set(sandbox._newest_work())
            sandbox._last_tick = sandbox.clock.time()
            now = sandbox.clock.time()
            for name, node in cluster.nodes.items():
                if node.online:
                    sandbox.scheduler.scheduler_start(name, now)
        return sandbox

    def save(self) -> None:
        """Persist the cluster (after a change made outside the engine's own methods)."""
        with self._change():
            pass

    @contextmanager
    def _change(self) -> Iterator[journal.Transaction]:
        """One state-changing engine call: under the lock, committed as one transaction at the end
        (also when it fails midway: what was done is kept, consistently). Nested calls join it."""
        with self.cluster.lock:
            if self._txn is not None:
                yield self._txn
                return
            self.dirs.begin_call()
            txn = self._txn = journal.Transaction()
            self.tasks.pending = txn.task_lines
            try:
                yield txn
            finally:
                self.tasks.pending = None
                self._txn = None
                self._commit(txn)

    def _commit(self, txn: journal.Transaction) -> None:
        self.cluster.clock_epoch = self.clock.now()
        journal.commit(self.directory, txn, self.cluster.to_json())
        self.tasks.compact()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self.cluster.lock:
            if self._txn is None:
                self.dirs.begin_call()
            yield

    def _remove_uncommitted(self) -> None:
        """Files of calls that never committed: partial archives and temporary files (nothing lists
        them), disk images no guest refers to."""
        for storage, node in self.dirs.places():
            dump = self.dirs.dump_dir(storage, node)
            if dump.is_dir():
                for entry in os.scandir(dump):
                    if entry.name.endswith(".dat") or entry.name.startswith("."):
                        Path(entry.path).unlink(missing_ok=True)
        for temp in [*self.directory.glob(".*.json.*"), *self.tasks.root.glob("*/*/.*")]:
            temp.unlink(missing_ok=True)  # write_atomic's temporary files (a write the kill cut short)
        self.frames.remove_temporary()
        disks = self.directory / "disks"
        if disks.is_dir():
            used = {g.disk_image for g in self.cluster.guests.values() if g.disk_image}
            for entry in os.scandir(disks):
                if entry.is_file() and entry.path not in used:
                    Path(entry.path).unlink(missing_ok=True)

    def _newest_work(self) -> int:
        """The newest archive's time and the end of the newest task: the clock's floor on reopen."""
        newest = 0
        for storage, node in self.dirs.places():
            zones = {self.cluster.nodes[n].timezone for n in self.cluster.nodes if storage.visible_from(n)}
            index = self.dirs.index(storage, node)
            for tz in zones or {self.cluster.nodes[node].timezone}:
                newest = max(newest, index.newest_ctime(tz) or 0)
        for node in self.cluster.nodes:
            newest = max(newest, *(r.endtime for r in self.tasks.records(node)), 0)
        return newest

    # -- the clock -----------------------------------------------------------------------------
    def now(self) -> int:
        return self.clock.time()

    def advance(self, seconds: float) -> list[str]:
        """Jump the clock forward, running every scheduled job start on the way at its own time
        (event to event, not minute by minute). Returns the UPIDs of the jobs that started.

        Bounded (``MAX_ADVANCE_SECONDS``) and interruptible: each event is committed on its own and
        the lock is released between events; after ``interrupt`` the clock stays at the last event."""
        seconds = advance_seconds(seconds)
        self._interrupt.clear()
        with self.cluster.lock:
            target = int(self.clock.now() + seconds)
        started: list[str] = []
        events: list[int] = []  # the event run by the last step (at most one: see after_event)
        while not self._interrupt.is_set():
            events.clear()
            with self._change():
                started += self.scheduler.run_until(self.clock.time(), target, self.clock.set,
                                                    after_event=lambda at: bool(events.append(at)))
                if not events:
                    self.clock.set(target)
                    self._last_tick = max(self._last_tick, target)
                    return started
                self._last_tick = max(self._last_tick, events[-1])
        return started

    def interrupt(self) -> None:
        """Stop a running ``advance`` after its current event (Ctrl-C on ``serve``, shutdown)."""
        self._interrupt.set()

    def tick(self) -> list[str]:
        """Run what came due since the last tick (real-time and accelerated clocks)."""
        with self.cluster.lock:
            now = self.clock.time()
            due = self.scheduler.next_due(self._last_tick)
            if due is None or due > now:
                self._last_tick = max(self._last_tick, now)
                return []
            with self._change():
                started = self.scheduler.run_until(self._last_tick, now, lambda _t: None)
                self._last_tick = max(self._last_tick, now)
                return started

    def start_ticker(self, interval: float = 1.0) -> None:
        """A daemon thread calling ``tick`` every ``interval`` wall seconds (pvescheduler's loop)."""
        if self._ticker is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                self.tick()

        self._ticker = threading.Thread(target=loop, name="sandbox-scheduler", daemon=True)
        self._ticker.start()

    def stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def jobs_changed(self) -> None:
        """Call after creating/updating/deleting a backup job: PVE's ``create_job`` and
        ``detect_changed_runtime_props`` stamp the job state with the current time."""
        with self._change():
            self.scheduler.sync_states(self.clock.time())

    # -- vzdump ----------------------------------------------------------------------------------
    def vzdump(self, node: str, params: dict[str, Any], user: str, job_id: str | None = None) -> str:
        """``POST /nodes/{node}/vzdump``: the UPID, or ``"OK"`` when nothing runs here."""
        with self._change():
            return self._vzdump(self._online_node(node), dict(params), user, self.clock.time())

    def _run_scheduled_job(self, job_id: str, params: dict[str, Any], node: str, at: int) -> str:
        return self._vzdump(self.cluster.nodes[node], params, SCHEDULER_USER, at)

    def _vzdump(self, node: Node, params: dict[str, Any], user: str, now: int) -> str:
        try:
            return VzdumpJob(self.cluster, self.tasks, self.settings, self.dirs, node, params, user, now,
                             frames=self.frames).run()
        except ValueError as exc:
            raise PveError(str(exc)) from None

    # -- restore -----------------------------------------------------------------------------------
    def restore(self, node: str, guest_type: str, params: dict[str, Any], user: str) -> str:
        """``POST /nodes/{node}/qemu`` with ``archive`` / ``/lxc`` with ``ostemplate`` + ``restore=1``.
        The archive must be readable from ``node``: its own place of a local storage, or a shared one."""
        if guest_type not in ("qemu", "lxc"):
            raise PveError(f"guest type '{guest_type}' cannot be restored (allowed: qemu, lxc)", 400)
        with self._change() as txn:
            node_obj = self._online_node(node)
            req = restore_mod.prepare(self.cluster, self.dirs, node_obj, guest_type, params)
            return restore_mod.run_restore(self.cluster, self.tasks, self.settings, self.directory / "disks",
                                           req, user, self.clock.time(), txn, self.faults.take("restore-midway"))

    def create_container(self, node: str, params: dict[str, Any], user: str) -> str:
        """``POST /nodes/{node}/lxc`` without ``restore``: a container from a CT template (``create.py``)."""
        with self._change():
            req = create_mod.prepare(self.cluster, self._online_node(node), params)
            return create_mod.run(self.cluster, self.tasks, req, user, self.clock.time())

    # -- stopping a task ---------------------------------------------------------------------------
    def stop_task(self, upid: str) -> bool:
        """``check_worker($upid, 1)`` (pve-common ``src/PVE/RESTEnvironment.pm``): a running worker is
        killed and ends now with its interrupt handler's error; a finished one is left alone. False when
        the task had already ended.

        A restore also takes its error path (``restore.stop_restore``). Other workers end with their
        handler's text (vzdump: "interrupted by signal", pve-manager ``PVE/API2/VZDump.pm``; the rest:
        fork_worker's "received interrupt"), but what the engine did when they started stays done."""
        with self._change() as txn:
            record = self.tasks.find(upid)
            now = int(self.clock.time())
            if record is None or not record.running_at(now):
                return False
            lines = self.tasks.log_lines(upid)
            kind = record.info.type
            if kind in restore_mod.RESTORE_TASKS:
                lines = restore_mod.stop_restore(self.cluster, kind, int(record.info.id), lines, txn)
            else:
                reason = "interrupted by signal" if kind == "vzdump" else "received interrupt"
                lines = [*(line for line in lines if not line.startswith("TASK ")), f"TASK ERROR: {reason}"]
            txn.writes.append(self.tasks.end_early(upid, now, lines))
            return True

    # -- storage content ---------------------------------------------------------------------------
    def dump_dir(self, storage_id: str, node: str) -> Path:
        """The directory holding ``storage_id``'s backups as ``node`` sees it (tests, tools)."""
        return self.dirs.dump_dir(self._storage(storage_id, None), node)

    def listing(self, storage_id: str, node: str, vmid: int | str | None = None,
                content: str | None = None) -> list[dict[str, Any]]:
        """The backup content of a storage as ``node`` sees it, read from disk, sorted by ``lc(volid)``
        (pve-storage ``PVE/API2/Storage/Content.pm`` index)."""
        with self._reading():
            storage = self._storage(storage_id, node)
            wanted = int(vmid) if vmid not in (None, "") else None
            templates = templates_of(storage, node) if content in (None, "vztmpl") and wanted is None else []
            if content not in (None, "backup") or "backup" not in storage.content:
                return templates
            tz = self.cluster.nodes[node].timezone if node in self.cluster.nodes else None
            return sorted(templates + self._index(storage, node).listing(tz, vmid=wanted),
                          key=lambda item: str(item["volid"]).lower())

    def volume_path(self, storage_id: str, volume: str, node: str | None = None) -> Path:
        """``sid:backup/file`` or ``backup/file`` on ``storage_id``, as ``node`` sees it, to its file
        (must exist). Without ``node``, a local storage's volume is looked up on every node (it must be
        on exactly one)."""
        with self._reading():
            storage = self._storage(storage_id, node)
            name = _volume_name(storage_id, volume)
            nodes = [node] if node is not None or storage.shared else self._nodes_of(storage)
            places = {self.dirs.dump_dir(storage, n or "") / name for n in nodes}
            found = sorted(p for p in places if p.is_file())
            if not found:
                raise PveError(f"volume '{storage_id}:backup/{name}' does not exist")
            if len(found) > 1:
                raise ParamError({"node": f"volume '{storage_id}:backup/{name}' exists on several nodes "
                                          f"({', '.join(nodes)}): say which"})
            return found[0]

    def update_volume(self, node: str, storage_id: str, volume: str, notes: str | None = None,
                      protected: bool | None = None) -> None:
        """``PUT …/content/{volume}``: notes and protection as sidecar files (pve-storage
        ``PVE/Storage/Plugin.pm`` ``update_volume_attribute``; an empty note deletes the file)."""
        with self._change():
            storage = self._storage(storage_id, node)
            path = self.volume_path(storage_id, volume, node)
            index = self._index(storage, node)
            if notes is not None:
                if notes == "":
                    _remove(index, path.name + archive.NOTES_EXT)
                else:
                    write_atomic(index.dump_dir / (path.name + archive.NOTES_EXT), notes, fsync=False)
                    index.added(path.name + archive.NOTES_EXT, len(notes.encode()))
            if protected is not None:
                if protected:
                    write_atomic(index.dump_dir / (path.name + PROTECTED_EXT), "", fsync=False)
                    index.added(path.name + PROTECTED_EXT, 0)
                else:
                    _remove(index, path.name + PROTECTED_EXT)

    def delete_volume(self, node: str, storage: str, volume: str, user: str) -> str:
        """``DELETE .../content/{volume}``: an ``imgdel`` task; a protected backup fails inside it."""
        with self._change():
            self._online_node(node)
            store = self._storage(storage, node)
            path = self.volume_path(storage, volume, node)
            volname = f"backup/{path.name}"
            try:
                vmid = archive.parse(path.name).vmid
            except ValueError:
                vmid = None
            task = self.tasks.start(node, "imgdel", f"{vmid}@{storage}" if vmid else storage, user,
                                    self.clock.time())
            index = self._index(store, node)
            if index.has(path.name + PROTECTED_EXT):
                task.finish(self.clock.time(), f"cannot remove protected volume '{volname}' on '{storage}'")
            else:
                archive_remove(index, path.name)
                task.log(f"Removed volume '{storage}:{volname}'")
                task.finish(self.clock.time())
            return task.upid

    def prune(self, node: str, storage: str, params: dict[str, Any], user: str,
              dry_run: bool = False) -> Any:
        """``GET`` (dry run: the marks) / ``DELETE .../prunebackups`` (a ``prunebackups`` task;
        pve-storage ``PVE/API2/Storage/PruneBackups.pm``)."""
        with self._change():
            self._online_node(node)
            store = self._storage(storage, node)
            text = params.get("prune-backups") or store.prune_backups
            if not text:
                raise PveError(f"no prune-backups options configured for storage '{storage}'")
            try:
                keep = retention.parse_prune_backups(text)
            except ValueError as exc:
                raise ParamError({"prune-backups": str(exc)}) from None
            vmid = int(params["vmid"]) if params.get("vmid") not in (None, "") else None
            tz = self.cluster.nodes[node].timezone
            index = self._index(store, node)
            marks = retention.mark(index.listing(tz, with_notes=False), keep, tz, vmid=vmid, type=params.get("type"))
            if dry_run:
                return sorted(marks, key=lambda e: e["volid"])
            task = self.tasks.start(node, "prunebackups", f"{vmid}@{storage}" if vmid else storage, user,
                                    self.clock.time())
            failed = False
            for entry in marks:
                if entry["mark"] != "remove":
                    continue
                task.log(f"removing backup '{entry['volid']}'")
                try:
                    archive_remove(index, entry["volid"].split("/", 1)[1])
                except OSError as exc:
                    task.log(f"error when removing backup '{entry['volid']}' - {exc}")
                    failed = True
            task.finish(self.clock.time(), "error pruning backups - check log" if failed else None)
            return task.upid

    def storage_status(self, storage_id: str, node: str) -> dict[str, Any]:
        """``GET .../storage/{storage}/status`` as ``node`` sees it: a capacity-limited storage
        reports ``total = capacity`` and what that node's place holds; others report the host file
        system they live on."""
        with self._reading():
            storage = self._storage(storage_id, node)
            status: dict[str, Any] = {
                "type": storage.type, "content": ",".join(sorted(storage.content)),
                "enabled": int(storage.enabled), "active": int(storage.enabled), "shared": int(storage.shared),
                "total": 0, "used": 0, "avail": 0,
            }
            if not storage.enabled:
                return status
            if storage.capacity_bytes is not None:
                used = self.dirs.used_bytes(storage, node)
                total = storage.capacity_bytes
                status.update(total=total, used=used, avail=max(0, total - used))
            else:
                root = self.dirs.root(storage, node)
                root.mkdir(parents=True, exist_ok=True)
                usage = shutil.disk_usage(root)
                status.update(total=usage.total, used=usage.used, avail=usage.free)
            return status

    # -- sandbox controls (/_sandbox/) --------------------------------------------------------------
    def node_down(self, name: str) -> None:
        with self._change():
            self._node(name).online = False

    def node_up(self, name: str) -> None:
        """Boot the node: its scheduler starts afresh (missed runs dropped unless repeat-missed)."""
        with self._change():
            node = self._node(name)
            if node.lost:
                raise PveError(f"node '{name}' was lost with its disk: it cannot boot again; add a fresh "
                               f"node (`vzkeep sandbox node add {name}`)", 400)
            if not node.online:
                node.online = True
                self.scheduler.scheduler_start(name, self.clock.time())

    def lose_node(self, name: str) -> dict[str, Any]:
        """The node is gone for good with its disk: it is off, its guests (configs and disks) and the
        content of every local storage on it are deleted, its task logs too. Shared storages keep
        everything. Returns what was lost. A fresh node may then take the name (``add_node``)."""
        with self._change() as txn:
            node = self._node(name)
            node.online, node.lost = False, True
            guests = sorted(vmid for vmid, g in self.cluster.guests.items() if g.node == name)
            for vmid in guests:
                guest = self.cluster.guests.pop(vmid)
                if guest.disk_image:
                    txn.removals.append(guest.disk_image)
            storages = sorted(s.id for s in self.cluster.storages.values() if not s.shared and s.visible_from(name))
            txn.trees += [str(p) for p in self.dirs.node_places(name)]
            txn.trees.append(str(self.tasks.root / name))
            self.dirs.forget(name)
            self.tasks.forget(name)
            return {"node": name, "guests": guests, "storages": storages}

    def add_node(self, name: str, timezone: str = "Europe/Paris") -> Node:
        """A fresh node joins the cluster (``pvecm add``), up, with no guests; it may take the name of
        a lost node (a reinstall), never of a live one.

        ``storage.cfg`` is cluster-wide, so every storage without a ``nodes`` list is visible from it at
        once; a shared storage restricted to some nodes gets the new one added, as an admin does with
        ``pvesm set <id> --nodes …,<new>`` when the node is meant to replace one (the same NAS export).
        Local storages restricted to other nodes stay theirs."""
        with self._change():
            old = self.cluster.nodes.get(name)
            if old is not None and not old.lost:
                raise ParamError({"name": f"node '{name}' already exists"})
            node = Node(name=name, timezone=timezone, online=True)
            self.cluster.nodes[name] = node
            for storage in self.cluster.storages.values():
                if storage.shared and storage.nodes is not None and name not in storage.nodes:
                    storage.nodes.append(name)
            self.scheduler.scheduler_start(name, self.clock.time())
            return node

    def add_guest(self, guest: Guest) -> Guest:
        """A guest appears (made outside the API, like a VM created by hand)."""
        with self._change():
            if guest.vmid in self.cluster.guests:
                raise ParamError({"vmid": f"VM {guest.vmid} already exists"})
            if guest.node not in self.cluster.nodes or self.cluster.nodes[guest.node].lost:
                raise ParamError({"node": f"no such node '{guest.node}'"})
            if guest.pool and guest.pool not in self.cluster.pools:
                raise ParamError({"pool": f"pool '{guest.pool}' does not exist"})
            self.cluster.guests[guest.vmid] = guest
            return guest

    def set_capacity(self, storage_id: str, capacity_bytes: int | None) -> None:
        """The storage's capacity, per place: each node's own for a local storage."""
        with self._change():
            self._storage(storage_id, None).capacity_bytes = capacity_bytes

    def fill_storage(self, storage_id: str, nbytes: int, node: str | None = None) -> dict[str, Any]:
        """Occupy ``nbytes`` more of the storage's place on ``node`` (any node for a shared storage)
        with a sparse ballast file (0 = remove the ballast)."""
        with self._change():
            storage = self._storage(storage_id, node)
            node = node or self._first_node(storage)
            ballast = storage_root(storage, node) / FILL_FILE
            ballast.parent.mkdir(parents=True, exist_ok=True)
            if nbytes <= 0:
                ballast.unlink(missing_ok=True)
            else:
                current = ballast.stat().st_size if ballast.exists() else 0
                with open(ballast, "ab") as f:
                    f.truncate(current + int(nbytes))
            return {"storage": storage_id, "node": node, "used": self.dirs.used_bytes(storage, node),
                    "capacity": storage.capacity_bytes}

    def corrupt(self, volid: str, how: str, offset: int | None = None, node: str | None = None) -> dict[str, Any]:
        """Damage an archive in place: ``flip`` one byte, ``truncate`` the file at ``offset``, or
        ``zero`` the 4 KiB block at ``offset`` (default: the middle of the file)."""
        if how not in CORRUPTIONS:
            raise ParamError({"how": f"value '{how}' is not one of {', '.join(CORRUPTIONS)}"})
        with self._change():
            sid = volid.partition(":")[0]
            path = self.volume_path(sid, volid, node)
            size = path.stat().st_size
            at = size // 2 if offset is None else int(offset)
            if not 0 <= at < size:
                raise ParamError({"offset": f"{at} is outside the file (0..{size - 1})"})
            with open(path, "r+b") as f:
                if how == "flip":
                    f.seek(at)
                    byte = f.read(1)[0]
                    f.seek(at)
                    f.write(bytes([byte ^ 0xFF]))
                elif how == "truncate":
                    f.truncate(at)
                else:
                    at -= at % 4096
                    f.seek(at)
                    f.write(bytes(min(4096, size - at)))
            new_size = path.stat().st_size
            for index in self._indexes_of(path):
                index.added(path.name, new_size)
            return {"volid": volid, "how": how, "offset": at, "size_before": size, "size": new_size}

    def disk_digest(self, vmid: int) -> str:
        """SHA-256 of the guest's disk content (generated, or its restored image)."""
        with self._reading():
            guest = self._guest(vmid)
            if guest.disk_image and Path(guest.disk_image).exists():
                return file_digest(guest.disk_image)
            return guest_disk(guest, self.settings).digest()

    def lock_guest(self, vmid: int, lock: str | None) -> None:
        """Set (or clear with None) a guest's config lock, e.g. ``backup`` or ``snapshot``."""
        with self._change():
            self._guest(vmid).lock = lock or None

    def touch_disk(self, vmid: int) -> int:
        """New data on the guest's disk: bump its generation; returns the new generation."""
        with self._change():
            guest = self._guest(vmid)
            guest.generation += 1
            return guest.generation

    def delete_guest(self, vmid: int) -> None:
        with self._change() as txn:
            guest = self.cluster.guests.pop(int(vmid), None)
            if guest is None:
                raise PveError(f"unable to find VM '{vmid}'")
            if guest.disk_image:
                txn.removals.append(guest.disk_image)

    # -- lookups -----------------------------------------------------------------------------------
    def _node(self, name: str) -> Node:
        node = self.cluster.nodes.get(name)
        if node is None:
            raise PveError(f"no such node '{name}'")
        return node

    def _online_node(self, name: str) -> Node:
        node = self._node(name)
        if not node.online:
            raise PveError(f"Connection refused - node '{name}' is offline (sandbox: node down)", 595)
        return node

    def _storage(self, storage_id: str, node: str | None) -> Storage:
        storage = self.cluster.storages.get(storage_id)
        if storage is None:
            raise ParamError({"storage": "No such storage."})
        if node is not None and not (storage.nodes is None or node in storage.nodes):
            raise PveError(f"storage '{storage_id}' is not available on node '{node}'")
        return storage

    def _index(self, storage: Storage, node: str) -> ArchiveIndex:
        return self.dirs.index(storage, node)

    def _nodes_of(self, storage: Storage) -> list[str]:
        return [n for n in sorted(self.cluster.nodes) if storage.nodes is None or n in storage.nodes]

    def _first_node(self, storage: Storage) -> str:
        nodes = self._nodes_of(storage)
        if not nodes:
            raise PveError(f"storage '{storage.id}' is on no node")
        if not storage.shared and len(nodes) > 1:
            raise ParamError({"node": f"storage '{storage.id}' is local to each of {', '.join(nodes)}: say which"})
        return nodes[0]

    def _indexes_of(self, path: Path) -> list[ArchiveIndex]:
        return [self.dirs.index(s, n) for s, n in self.dirs.places() if self.dirs.dump_dir(s, n) == path.parent]

    def _guest(self, vmid: int) -> Guest:
        guest = self.cluster.guests.get(int(vmid))
        if guest is None:
            raise PveError(f"unable to find VM '{vmid}'")
        return guest


def _volume_name(storage_id: str, volume: str) -> str:
    """The file name of ``sid:backup/<file>`` or ``backup/<file>`` (``PVE::Storage::parse_volname``)."""
    sid, sep, volname = volume.partition(":")
    if not sep:
        sid, volname = storage_id, volume
    if sid != storage_id or not volname.startswith("backup/") or "/" in volname[7:] or volname[7:] in ("", ".", ".."):
        raise PveError(f"unable to parse directory volume name '{volname}'")
    return volname[7:]


def _remove(index: ArchiveIndex, name: str) -> None:
    (index.dump_dir / name).unlink(missing_ok=True)
    index.removed(name)
