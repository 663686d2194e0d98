"""The ``Sandbox`` facade: the emulated cluster's engine, as the HTTP layer and the CLI call it.

It owns the ``Cluster`` (model), the ``Clock``, the ``TaskStore`` and the ``Scheduler``, and runs
vzdump, restores, deletions and prunes synchronously on the simulated clock. Every public method
takes ``cluster.lock`` and persists the cluster after a change, so an HTTP request thread, the
background ticker and a test can call it concurrently.

State directory layout::

    cluster.json   the model (Cluster.save), including clock_epoch and job states
    engine.json    engine settings (bytes per GiB, throughput) fixed at creation
    tasks/<node>/  task index and logs (tasks.py)
    disks/         disk images of restored guests (restore.py)

Errors are ``ParamError`` (HTTP 400) / ``PveError`` (HTTP 500 or given status) from ``tasks``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vzkeep.pve import archive, retention
from vzkeep.sandbox import restore as restore_mod
from vzkeep.sandbox.clock import Clock
from vzkeep.sandbox.diskdata import file_digest
from vzkeep.sandbox.faults import Faults
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage
from vzkeep.sandbox.scheduler import SCHEDULER_USER, Scheduler
from vzkeep.sandbox.tasks import ParamError, PveError, TaskStore
from vzkeep.sandbox.vzdump import (
    Settings,
    VzdumpJob,
    archive_auxiliaries_remove,
    guest_disk,
    storage_listing,
    storage_used_bytes,
)

STATE_FILE = "cluster.json"
SETTINGS_FILE = "engine.json"
FILL_FILE = ".vzkeep-sandbox-fill"  # ballast for fill_storage, outside dump/ so listings ignore it
CORRUPTIONS = ("flip", "truncate", "zero")

__all__ = ["CORRUPTIONS", "ParamError", "PveError", "Sandbox", "Settings"]


class Sandbox:
    def __init__(self, state_dir: Path, cluster: Cluster, clock: Clock, settings: Settings):
        self.state_dir = Path(state_dir)
        self.cluster = cluster
        self.clock = clock
        self.settings = settings
        self.tasks = TaskStore(self.state_dir / "tasks", clock.now)
        self.scheduler = Scheduler(cluster, self.tasks, self._run_scheduled_job)
        self.faults = Faults()
        self._last_tick = clock.time()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, state_dir: str | os.PathLike[str], cluster: Cluster, *, speed: float | None = None,
               stepped: bool = False, settings: Settings | None = None) -> Sandbox:
        """A new sandbox in ``state_dir``; the clock starts at ``cluster.clock_epoch`` (or now)."""
        root = Path(state_dir)
        root.mkdir(parents=True, exist_ok=True)
        settings = settings or Settings()
        (root / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=1))
        sandbox = cls(root, cluster, Clock(cluster.clock_epoch, speed=speed, stepped=stepped), settings)
        with cluster.lock:
            sandbox.scheduler.sync_states(sandbox.clock.time())
            sandbox.save()
        return sandbox

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str], *, speed: float | None = None,
             stepped: bool = False) -> Sandbox:
        """Reopen a saved sandbox. The clock resumes where it stopped; each online node's scheduler
        starts afresh, so missed runs are dropped unless a job has ``repeat-missed`` (§3.5)."""
        root = Path(state_dir)
        path = root / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no sandbox state here (create one with Sandbox.create)")
        cluster = Cluster.load(path)
        settings_path = root / SETTINGS_FILE
        settings = Settings(**json.loads(settings_path.read_text())) if settings_path.exists() else Settings()
        sandbox = cls(root, cluster, Clock(cluster.clock_epoch, speed=speed, stepped=stepped), settings)
        with cluster.lock:
            now = sandbox.clock.time()
            for name, node in cluster.nodes.items():
                if node.online:
                    sandbox.scheduler.scheduler_start(name, now)
            sandbox.save()
        return sandbox

    def save(self) -> None:
        with self.cluster.lock:
            self.cluster.clock_epoch = self.clock.now()
            self.cluster.save(self.state_dir / STATE_FILE)

    # -- the clock -----------------------------------------------------------------------------
    def now(self) -> int:
        return self.clock.time()

    def advance(self, seconds: float) -> list[str]:
        """Jump the clock forward, running every scheduled job start on the way at its own time
        (event to event, not minute by minute). Returns the UPIDs of the jobs that started."""
        if seconds < 0:
            raise PveError(f"the clock only moves forward (got {seconds} s)", 400)
        with self.cluster.lock:
            start = self.clock.time()
            target = int(self.clock.now() + seconds)
            started = self.scheduler.run_until(start, target, self.clock.set)
            self.clock.set(target)
            self._last_tick = target
            self.save()
            return started

    def tick(self) -> list[str]:
        """Run what came due since the last tick (real-time and accelerated clocks)."""
        with self.cluster.lock:
            now = self.clock.time()
            started = self.scheduler.run_until(self._last_tick, now, lambda _t: None)
            self._last_tick = max(self._last_tick, now)
            if started:
                self.save()
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
        with self.cluster.lock:
            self.scheduler.sync_states(self.clock.time())
            self.save()

    # -- vzdump ----------------------------------------------------------------------------------
    def vzdump(self, node: str, params: dict[str, Any], user: str, job_id: str | None = None) -> str:
        """``POST /nodes/{node}/vzdump``: the UPID, or ``"OK"`` when nothing runs here (§4.4)."""
        with self.cluster.lock:
            result = self._vzdump(self._online_node(node), dict(params), user, self.clock.time())
            self.save()
            return result

    def _run_scheduled_job(self, job_id: str, params: dict[str, Any], node: str, at: int) -> str:
        return self._vzdump(self.cluster.nodes[node], params, SCHEDULER_USER, at)

    def _vzdump(self, node: Node, params: dict[str, Any], user: str, now: int) -> str:
        try:
            return VzdumpJob(self.cluster, self.tasks, self.settings, node, params, user, now).run()
        except ValueError as exc:
            raise PveError(str(exc)) from None

    # -- restore -----------------------------------------------------------------------------------
    def restore(self, node: str, guest_type: str, params: dict[str, Any], user: str) -> str:
        """``POST /nodes/{node}/qemu`` with ``archive`` / ``/lxc`` with ``ostemplate`` + ``restore=1``."""
        if guest_type not in ("qemu", "lxc"):
            raise PveError(f"guest type '{guest_type}' cannot be restored (allowed: qemu, lxc)", 400)
        with self.cluster.lock:
            node_obj = self._online_node(node)
            req = restore_mod.prepare(self.cluster, node_obj, guest_type, params)
            upid = restore_mod.run_restore(self.cluster, self.tasks, self.settings, self.state_dir / "disks",
                                           req, user, self.clock.time(), self.faults.take("restore-midway"))
            self.save()
            return upid

    # -- storage content ---------------------------------------------------------------------------
    def listing(self, storage_id: str, node: str, vmid: int | str | None = None,
                content: str | None = None) -> list[dict[str, Any]]:
        """The backup content of a storage, read from disk (§1.5), sorted by ``lc(volid)``."""
        with self.cluster.lock:
            storage = self._storage(storage_id, node)
            if content is not None and content != "backup":
                return []
            tz = self.cluster.nodes[node].timezone if node in self.cluster.nodes else None
            return storage_listing(storage, tz, vmid=int(vmid) if vmid not in (None, "") else None)

    def volume_path(self, storage_id: str, volume: str) -> Path:
        """``sid:backup/file`` or ``backup/file`` on ``storage_id`` to its file (must exist)."""
        storage = self.cluster.storages.get(storage_id)
        if storage is None:
            raise ParamError({"storage": "No such storage."})
        sid, sep, volname = volume.partition(":")
        if not sep:
            sid, volname = storage_id, volume
        if sid != storage_id or not volname.startswith("backup/") or "/" in volname[7:]:
            raise PveError(f"unable to parse directory volume name '{volname}'")
        path = storage.dump_dir / volname[7:]
        if not path.is_file():
            raise PveError(f"volume '{sid}:{volname}' does not exist")
        return path

    def delete_volume(self, node: str, storage: str, volume: str, user: str) -> str:
        """``DELETE .../content/{volume}``: an ``imgdel`` task; a protected backup fails inside it."""
        with self.cluster.lock:
            self._online_node(node)
            path = self.volume_path(storage, volume)
            volname = f"backup/{path.name}"
            try:
                vmid = archive.parse(path.name).vmid
            except ValueError:
                vmid = None
            task = self.tasks.start(node, "imgdel", f"{vmid}@{storage}" if vmid else storage, user,
                                    self.clock.time())
            if Path(str(path) + ".protected").exists():
                task.finish(self.clock.time(), f"cannot remove protected volume '{volname}' on '{storage}'")
            else:
                path.unlink()
                archive_auxiliaries_remove(path)
                task.log(f"Removed volume '{storage}:{volname}'")
                task.finish(self.clock.time())
            self.save()
            return task.upid

    def prune(self, node: str, storage: str, params: dict[str, Any], user: str,
              dry_run: bool = False) -> Any:
        """``GET`` (dry run: the marks) / ``DELETE .../prunebackups`` (a ``prunebackups`` task)."""
        with self.cluster.lock:
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
            marks = retention.mark(storage_listing(store, tz), keep, tz, vmid=vmid, type=params.get("type"))
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
                    path = store.dump_dir / entry["volid"].split("/", 1)[1]
                    path.unlink()
                    archive_auxiliaries_remove(path)
                except OSError as exc:
                    task.log(f"error when removing backup '{entry['volid']}' - {exc}")
                    failed = True
            task.finish(self.clock.time(), "error pruning backups - check log" if failed else None)
            self.save()
            return task.upid

    def storage_status(self, storage_id: str, node: str) -> dict[str, Any]:
        """``GET .../storage/{storage}/status`` (§4.6): a capacity-limited storage reports
        ``total = capacity``; others report the host file system they live on."""
        with self.cluster.lock:
            storage = self._storage(storage_id, node)
            status: dict[str, Any] = {
                "type": storage.type, "content": ",".join(sorted(storage.content)),
                "enabled": int(storage.enabled), "active": int(storage.enabled), "shared": int(storage.shared),
                "total": 0, "used": 0, "avail": 0,
            }
            if not storage.enabled:
                return status
            if storage.capacity_bytes is not None:
                used = storage_used_bytes(storage)
                total = storage.capacity_bytes
                status.update(total=total, used=used, avail=max(0, total - used))
            else:
                Path(storage.path).mkdir(parents=True, exist_ok=True)
                usage = shutil.disk_usage(storage.path)
                status.update(total=usage.total, used=usage.used, avail=usage.free)
            return status

    # -- sandbox controls (/_sandbox/) --------------------------------------------------------------
    def node_down(self, name: str) -> None:
        with self.cluster.lock:
            self._node(name).online = False
            self.save()

    def node_up(self, name: str) -> None:
        """Boot the node: its scheduler starts afresh (missed runs dropped unless repeat-missed)."""
        with self.cluster.lock:
            node = self._node(name)
            if not node.online:
                node.online = True
                self.scheduler.scheduler_start(name, self.clock.time())
            self.save()

    def add_node(self, name: str, timezone: str = "Europe/Paris") -> Node:
        """A fresh node joins the cluster (``pvecm add``), up, with no guests.

        ``storage.cfg`` is cluster-wide, so every storage without a ``nodes`` list is visible from it at
        once; a shared storage restricted to some nodes gets the new one added, as an admin does with
        ``pvesm set <id> --nodes …,<new>`` when the node is meant to replace one (the same NAS export).
        Local storages restricted to other nodes stay theirs."""
        with self.cluster.lock:
            if name in self.cluster.nodes:
                raise ParamError({"name": f"node '{name}' already exists"})
            node = Node(name=name, timezone=timezone, online=True)
            self.cluster.nodes[name] = node
            for storage in self.cluster.storages.values():
                if storage.shared and storage.nodes is not None and name not in storage.nodes:
                    storage.nodes.append(name)
            self.scheduler.scheduler_start(name, self.clock.time())
            self.save()
            return node

    def set_capacity(self, storage_id: str, capacity_bytes: int | None) -> None:
        with self.cluster.lock:
            self._storage(storage_id, None).capacity_bytes = capacity_bytes
            self.save()

    def fill_storage(self, storage_id: str, nbytes: int) -> dict[str, Any]:
        """Occupy ``nbytes`` more of the storage with a sparse ballast file (0 = remove the ballast)."""
        with self.cluster.lock:
            storage = self._storage(storage_id, None)
            ballast = Path(storage.path) / FILL_FILE
            ballast.parent.mkdir(parents=True, exist_ok=True)
            if nbytes <= 0:
                ballast.unlink(missing_ok=True)
            else:
                current = ballast.stat().st_size if ballast.exists() else 0
                with open(ballast, "ab") as f:
                    f.truncate(current + int(nbytes))
            return {"storage": storage_id, "used": storage_used_bytes(storage),
                    "capacity": storage.capacity_bytes}

    def corrupt(self, volid: str, how: str, offset: int | None = None) -> dict[str, Any]:
        """Damage an archive in place: ``flip`` one byte, ``truncate`` the file at ``offset``, or
        ``zero`` the 4 KiB block at ``offset`` (default: the middle of the file)."""
        if how not in CORRUPTIONS:
            raise ParamError({"how": f"value '{how}' is not one of {', '.join(CORRUPTIONS)}"})
        with self.cluster.lock:
            sid = volid.partition(":")[0]
            path = self.volume_path(sid, volid)
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
            return {"volid": volid, "how": how, "offset": at, "size_before": size, "size": path.stat().st_size}

    def disk_digest(self, vmid: int) -> str:
        """SHA-256 of the guest's disk content (generated, or its restored image)."""
        with self.cluster.lock:
            guest = self._guest(vmid)
            if guest.disk_image and Path(guest.disk_image).exists():
                return file_digest(guest.disk_image)
            return guest_disk(guest, self.settings).digest()

    def lock_guest(self, vmid: int, lock: str | None) -> None:
        """Set (or clear with None) a guest's config lock, e.g. ``backup`` or ``snapshot``."""
        with self.cluster.lock:
            self._guest(vmid).lock = lock or None
            self.save()

    def touch_disk(self, vmid: int) -> int:
        """New data on the guest's disk: bump its generation; returns the new generation."""
        with self.cluster.lock:
            guest = self._guest(vmid)
            guest.generation += 1
            self.save()
            return guest.generation

    def delete_guest(self, vmid: int) -> None:
        with self.cluster.lock:
            guest = self.cluster.guests.pop(int(vmid), None)
            if guest is None:
                raise PveError(f"unable to find VM '{vmid}'")
            if guest.disk_image:
                Path(guest.disk_image).unlink(missing_ok=True)
            self.save()

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

    def _guest(self, vmid: int) -> Guest:
        guest = self.cluster.guests.get(int(vmid))
        if guest is None:
            raise PveError(f"unable to find VM '{vmid}'")
        return guest
