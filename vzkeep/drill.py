"""Restore drills: prove a backup restores, without touching anything in production.

A drill restores a guest's newest backup into a scratch VMID (default 9000-9099) with ``unique=1`` (new
MAC addresses: qemu-server ``src/PVE/API2/Qemu.pm`` ``create_vm``, pve-container ``src/PVE/API2/LXC.pm``),
takes every network link down (``link_down=1`` on each ``netN``, qemu-server
``src/PVE/QemuServer/Network.pm``, set by a config update right after the restore and before the start),
tags it ``vzkeep-drill``, starts it, waits until PVE reports it running, measures the time, and destroys
it. The original guest is never addressed by any call. Every wait is bounded by the drill's ``Wait``
(one per guest): when it runs out, or on Ctrl-C, the drill stops, records the failure, leaves the scratch
guest pending (its task is still running) and the error names the task.

Interruptions: before asking PVE to restore, the scratch VMID is written to the results store as
*pending*; the next drill run first destroys every scratch-range guest that is pending or tagged
``vzkeep-drill``, so a drill killed midway leaves nothing behind for long. Guests in the scratch range
that are neither are not ours and are left alone (their VMIDs are skipped).

Results go to a small JSON store the exporter publishes (``vzkeep_drill_last_success_timestamp_seconds``,
``vzkeep_drill_duration_seconds``, ``vzkeep_drill_last_status``): ``DrillResultStore(path).load()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.backups import Backup, Inventory
from vzkeep.errors import ExitStatus
from vzkeep.follow import Task, TaskInterrupted, TaskStillRunning, Wait, follow_task
from vzkeep.pve.client import PveApiError, PveClient, PveUnreachable
from vzkeep.pve.upid import decode_upid
from vzkeep.restore import (
    CLEANUP_TIMEOUT,
    RestoreError,
    RestoreOptions,
    execute,
    plan_restore,
    precheck,
    start_and_wait,
)
from vzkeep.verify import DEFAULT_STATE_DIR, STATE_DIR_ENV, ResultStore

DRILL_TAG = "vzkeep-drill"
DEFAULT_SCRATCH = (9000, 9099)
RESULTS_FILE = "drills.json"
STORE_VERSION = 1
_NET_RE = re.compile(r"^net\d+$")


@dataclass
class DrillResult:
    started_at: float  # epoch seconds on the cluster's clock: the restore task's start (see run_drill)
    duration_seconds: float  # restore start until the scratch guest ran
    ok: bool
    message: str
    vmid: int  # the original guest
    scratch_vmid: int | None
    node: str | None
    env: str = ""
    volid: str | None = None
    name: str | None = None
    last_success_at: float | None = None  # carried over a failed drill, for DrillStale

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrillResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DrillOptions:
    scratch: tuple[int, int] = DEFAULT_SCRATCH
    node: str | None = None
    storage: str | None = None


# -- the results store ------------------------------------------------------------------------------------


def default_store_path() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR) / RESULTS_FILE


class DrillResultStore:
    """Last drill per (env, vmid) plus the scratch guests of drills in progress; one JSON file, atomic."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()

    def load(self) -> dict[tuple[str, int], DrillResult]:
        """(env, vmid) -> last result. A missing file is empty; a damaged one raises ValueError."""
        data = self._read()
        return {(r.env, r.vmid): r for r in (DrillResult.from_json(d) for d in data["drills"].values())}

    def pending(self) -> dict[int, dict[str, Any]]:
        """Scratch VMID -> what a drill that has not finished was doing with it."""
        return {int(k): v for k, v in self._read()["pending"].items()}

    def begin(self, scratch_vmid: int, **info: Any) -> None:
        with self._update() as data:
            data["pending"][str(scratch_vmid)] = {**info, "since": time.time()}

    def end(self, scratch_vmid: int) -> None:
        with self._update() as data:
            data["pending"].pop(str(scratch_vmid), None)

    def record(self, result: DrillResult) -> None:
        """Keep the newest result; a failure keeps the time of the last success (when the backup was
        last proven restorable), which the exporter publishes for DrillStale."""
        key = f"{result.env}/{result.vmid}"
        with self._update() as data:
            previous = data["drills"].get(key, {})
            last_success = result.started_at if result.ok else previous.get("last_success_at")
            data["drills"][key] = {**result.to_json(), "last_success_at": last_success}

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"version": STORE_VERSION, "drills": {}, "pending": {}}
        try:
            data = json.loads(text)
            if not isinstance(data.get("drills"), dict) or not isinstance(data.get("pending", {}), dict):
                raise ValueError("missing 'drills'")
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{self.path} is not a vzkeep drill results file ({exc}); move it away or pass "
                             "another --results") from exc
        data.setdefault("pending", {})
        return data

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a timer run and a manual run must not lose each other's results
            data = self._read()
            yield data
            write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- choosing -------------------------------------------------------------------------------------------


def drill_targets(inventory: Inventory, env: str | None = None, guest: str | None = None,
                  sample: int | None = None, rng: random.Random | None = None) -> list[Backup]:
    """The newest backup of each guest to drill (existing guests with a backup, never scratch guests)."""
    newest: dict[int, Backup] = {}
    for backup in inventory.backups:
        if backup.guest_exists and backup.nodes and (backup.vmid not in newest or
                                                     backup.ctime > newest[backup.vmid].ctime):
            newest[backup.vmid] = backup
    chosen = [b for b in newest.values() if (env is None or b.env == env) and (
        guest is None or str(b.vmid) == guest or b.name == guest)]
    chosen.sort(key=lambda b: b.vmid)
    if sample is not None and sample < len(chosen):
        chosen = sorted((rng or random.Random()).sample(chosen, sample), key=lambda b: b.vmid)
    return chosen


def _tags(entry: dict[str, Any]) -> set[str]:
    return {t for t in re.split(r"[;,\s]+", str(entry.get("tags", ""))) if t}


def free_scratch_vmid(inventory: Inventory, scratch: tuple[int, int], taken: set[int]) -> int | None:
    for vmid in range(scratch[0], scratch[1] + 1):
        if vmid not in inventory.guests and vmid not in taken:
            return vmid
    return None


# -- cleaning up after interrupted drills ------------------------------------------------------------------


def clean_leftovers(client: PveClient, store: DrillResultStore, scratch: tuple[int, int], wait: Wait,
                    say: Callable[[str], None] = lambda _line: None) -> list[int]:
    """Destroy scratch-range guests left by earlier drills (pending in the store or tagged); their VMIDs."""
    pending = store.pending()
    removed = []
    for entry in client.get("cluster/resources", type="vm"):
        vmid = int(entry["vmid"])
        if not scratch[0] <= vmid <= scratch[1] or (vmid not in pending and DRILL_TAG not in _tags(entry)):
            continue
        say(f"removing scratch guest {vmid} left by an interrupted drill")
        destroy_scratch(client, entry["node"], entry["type"], vmid, wait)
        removed.append(vmid)
    for vmid in pending:
        store.end(vmid)
    return removed


def destroy_scratch(client: PveClient, node: str, guest_type: str, vmid: int, wait: Wait) -> None:
    """Stop (if running) and destroy a scratch guest with its disks."""
    path = f"nodes/{node}/{guest_type}/{vmid}"
    if client.get(f"{path}/status/current").get("status") == "running":
        follow_task(client, Task(node, str(client.post(f"{path}/status/stop")), f"stop of scratch guest {vmid}"),
                    wait)
    upid = client.delete(path, purge=1, **{"destroy-unreferenced-disks": 1})
    status, _ = follow_task(client, Task(node, str(upid), f"removal of scratch guest {vmid}"), wait)
    if status != "OK":
        raise RestoreError(f"could not destroy scratch guest {vmid} on node '{node}': {status}")


# -- one drill --------------------------------------------------------------------------------------------


def isolate_network(client: PveClient, node: str, guest_type: str, vmid: int) -> list[str]:
    """``link_down=1`` on every network device, and the drill tag; returns the devices changed."""
    path = f"nodes/{node}/{guest_type}/{vmid}/config"
    config = client.get(path)
    update: dict[str, Any] = {"tags": ";".join(sorted({*_tags(config), DRILL_TAG}))}
    for key, value in config.items():
        if _NET_RE.match(key) and "link_down=1" not in str(value).split(","):
            update[key] = f"{value},link_down=1"
    try:
        client.put(path, **update)
    except PveApiError as exc:
        raise RestoreError(f"PVE did not take the scratch guest's network links down: {exc}") from None
    after = client.get(path)
    still_up = [k for k in after if _NET_RE.match(k) and "link_down=1" not in str(after[k]).split(",")]
    if still_up:
        raise RestoreError(f"network links still up after the config update: {', '.join(still_up)}")
    return sorted(k for k in update if _NET_RE.match(k))


def run_drill(client: PveClient, inventory: Inventory, backup: Backup, scratch_vmid: int, store: DrillResultStore,
              wait: Wait, options: DrillOptions = DrillOptions(), verify_store: ResultStore | None = None,
              say: Callable[[str], None] = lambda _line: None) -> DrillResult:
    """Restore ``backup`` as ``scratch_vmid``, isolate, start, wait, measure, destroy; record the result.

    A wait that ends first (``TaskStillRunning``, ``TaskInterrupted``) is recorded as a failed drill and
    raised again: the scratch guest stays pending (its task is still running) for the next run to remove.
    """
    began = time.monotonic()
    result = DrillResult(time.time(), 0.0, False, "", backup.vmid, scratch_vmid, None, backup.env or "",
                         backup.volid, backup.name)
    created = False
    upid: str | None = None
    try:
        plan = plan_restore(inventory, RestoreOptions(str(backup.vmid), backup.volid, options.node, options.storage,
                                                      scratch_vmid, unique=True, pool=""))
        result.node = plan.node
        check = precheck(client, backup, plan.node, verify_store)
        if not check.ok:
            raise RestoreError(f"{backup.volid} is corrupt: {'; '.join(check.problems)}")
        store.begin(scratch_vmid, vmid=backup.vmid, node=plan.node, type=plan.guest_type, volid=backup.volid)
        say(f"drill {backup.name or backup.vmid} ({backup.vmid}): restore {backup.volid} as {scratch_vmid} "
            f"on {plan.node}")
        created = True
        upid = execute(client, plan, wait).upid
        isolate_network(client, plan.node, plan.guest_type, scratch_vmid)
        start_and_wait(client, plan.node, plan.guest_type, scratch_vmid, wait)
        result.duration_seconds = round(time.monotonic() - began, 3)
        result.ok = True
        result.message = f"restored and running in {result.duration_seconds:.1f} s"
    except RestoreError as exc:
        result.duration_seconds = round(time.monotonic() - began, 3)
        result.message = exc.message
        upid = upid or exc.details.get("upid")
        if exc.status == ExitStatus.INTERRUPTED:  # PVE may be restoring still: the guest stays pending
            _on_cluster_clock(result, client, upid)
            store.record(result)
            raise
    except (TaskStillRunning, TaskInterrupted) as exc:
        result.duration_seconds = round(time.monotonic() - began, 3)
        result.message = f"{exc.message}; scratch guest {scratch_vmid} stays pending: the next drill removes it"
        _on_cluster_clock(result, client, upid or (exc.task.upid if exc.task is not None else None))
        store.record(result)
        raise
    _on_cluster_clock(result, client, upid)
    if created:
        result.message += _destroy_quietly(client, scratch_vmid, store, wait.bounded(CLEANUP_TIMEOUT))
    store.record(result)
    return result


def _on_cluster_clock(result: DrillResult, client: PveClient, upid: str | None) -> None:
    """Date the drill on the cluster's clock, the one the exporter measures DrillStale against
    (``vzkeep_cluster_time_seconds``): the restore task's start from its UPID (pve-common
    ``src/PVE/UPID.pm``), or, when no task was started, the node's ``GET /nodes/{node}/time`` taken now
    minus the time the drill took. The machine's own clock stays only when PVE cannot say."""
    if upid:
        with contextlib.suppress(ValueError):
            result.started_at = float(decode_upid(upid).starttime)
            return
    if result.node is None:
        return
    with contextlib.suppress(PveApiError, PveUnreachable, KeyError, TypeError, ValueError):
        now = float(client.get(f"nodes/{result.node}/time")["time"])
        result.started_at = now - result.duration_seconds


def _destroy_quietly(client: PveClient, vmid: int, store: DrillResultStore, wait: Wait) -> str:
    """Destroy the scratch guest if it exists; '' when all is clean, else what is left (stays pending)."""
    try:
        entry = next((e for e in client.get("cluster/resources", type="vm") if int(e["vmid"]) == vmid), None)
        if entry is not None:
            destroy_scratch(client, entry["node"], entry["type"], vmid, wait)
    except (RestoreError, PveApiError, TaskStillRunning) as exc:
        return f"; scratch guest {vmid} could NOT be destroyed ({exc}); the next drill run retries"
    store.end(vmid)
    return ""
