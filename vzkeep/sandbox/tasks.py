"""The task store: PVE worker tasks with UPIDs, logs, trailers, listings (pve-common
``src/PVE/RESTEnvironment.pm`` ``fork_worker``, pve-manager ``PVE/API2/Tasks.pm``).

Layout under ``<directory>/tasks/<node>/`` mirrors ``/var/log/pve/tasks/`` on a node: ``index``
holds one line per finished task (``<UPID> <endtime %08X> <status>``), and each task's log is
``<last hex digit of starttime>/<UPID>``. Work runs synchronously on the simulated clock, so a
task is finished on disk as soon as it is recorded; it still *looks* running (status ``running``,
``RUNNING`` in listings) until the clock reaches its simulated end time, as a real task would.

Memory stays bounded: only a small record per task is kept (newest ``max_records`` per node);
logs are read from disk when asked for.

The errors every engine module raises live here too, as the HTTP layer's ``ApiError``:
``ParamError`` is PVE's ``raise_param_exc`` (HTTP 400 with ``errors``), ``PveError`` is a plain
``die`` (HTTP 500, or the status given).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.pve.upid import Upid, decode_upid, encode_upid
from vzkeep.sandbox.api.errors import PARAM_FAILED, ApiError

MAX_FINISHED_CLUSTER = 25  # pve-common src/PVE/RESTEnvironment.pm active_workers $MAX_FINISHED
_WARNINGS_RE = re.compile(r"^WARNINGS: \d+$")


class ParamError(ApiError):
    """PVE ``raise_param_exc``: HTTP 400 ``Parameter verification failed.`` with per-param errors."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(400, PARAM_FAILED, dict(errors))


class PveError(ApiError):
    """A PVE ``die``: HTTP 500 (or ``status``), the message as PVE words it."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(status, message)


def read_status(last_line: str | None) -> str:
    """``PVE::Tools::upid_read_status``: the exit status from a log's last line."""
    if last_line is None:
        return "unable to read tail (got 0 bytes)"
    if last_line == "TASK OK":
        return "OK"
    if last_line.startswith("TASK ERROR: ") and len(last_line) > len("TASK ERROR: "):
        return last_line[len("TASK ERROR: ") :]
    m = re.match(r"^TASK (WARNINGS: \d+)$", last_line)
    if m:
        return m.group(1)
    return "unexpected status"


def status_type(status: str | None) -> str:
    """``upid_normalize_status_type``: ok | warning | error | unknown."""
    if not status or status == "unexpected status":
        return "unknown"
    if status == "OK":
        return "ok"
    if _WARNINGS_RE.match(status):
        return "warning"
    return "error"


def status_is_error(status: str) -> bool:
    return status != "OK" and not _WARNINGS_RE.match(status)


@dataclass
class TaskRecord:
    upid: str
    info: Upid
    endtime: int
    status: str

    def running_at(self, now: float) -> bool:
        return self.endtime > now

    def api_fields(self) -> dict[str, Any]:
        """The UPID's fields as Tasks.pm returns them, token tasks split into user + tokenid."""
        user, token = self.info.user_and_token()
        item: dict[str, Any] = {
            "upid": self.upid,
            "node": self.info.node,
            "pid": self.info.pid,
            "pstart": self.info.pstart,
            "starttime": self.info.starttime,
            "type": self.info.type,
            "id": self.info.id,
            "user": user,
        }
        if token is not None:
            item["tokenid"] = token
        return item


@dataclass
class Task:
    """A task being written. Call ``finish`` (or ``abort``) exactly once."""

    store: TaskStore
    info: Upid
    upid: str
    lines: list[str] = field(default_factory=list)
    warnings: int = 0
    done: bool = False

    def log(self, line: str) -> None:
        self.lines.extend(line.split("\n"))

    def warn(self, message: str) -> None:
        self.warnings += 1
        self.log(f"WARN: {message}")

    def finish(self, endtime: float, error: str | None = None) -> str:
        """Write PVE's trailer (``TASK OK`` / ``TASK WARNINGS: N`` / ``TASK ERROR: msg``)."""
        if error is not None:
            self.lines.append("TASK ERROR: " + " ".join(error.strip().splitlines()))
        elif self.warnings:
            self.lines.append(f"TASK WARNINGS: {self.warnings}")
        else:
            self.lines.append("TASK OK")
        return self._close(endtime)

    def abort(self, endtime: float) -> str:
        """End without a trailer, as a worker that calls ``exit(-1)`` does (vzdump's lock failure)."""
        return self._close(endtime)

    def _close(self, endtime: float) -> str:
        if self.done:
            raise RuntimeError(f"task {self.upid} finished twice")
        self.done = True
        status = read_status(self.lines[-1] if self.lines else None)
        self.store._record(self, int(endtime), status)
        return status


class TaskStore:
    def __init__(self, root: Path, now: Callable[[], float], max_records: int = 5000):
        self.root = Path(root)
        self.now = now
        self.max_records = max_records
        self._lock = threading.RLock()
        self._records: dict[str, list[TaskRecord]] = {}  # node -> oldest first
        self._next_pid: dict[str, int] = {}
        self._index_lines: dict[str, int] = {}
        # (index file, line) of tasks finished in the engine call being made; None = append at once
        self.pending: list[tuple[str, str]] | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        for node_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            self._load_node(node_dir.name)

    # -- writing -------------------------------------------------------------------------------
    def start(self, node: str, type: str, id: str, user: str, starttime: float | None = None) -> Task:
        start = int(self.now() if starttime is None else starttime)
        with self._lock:
            pid = self._next_pid.get(node, 1000 + (sum(map(ord, node)) * 7919) % 100000)
            self._next_pid[node] = pid + 1
        # A fake but plausible process start (jiffies since boot), unique together with the pid.
        pstart = (start % 10_000_000) * 100
        info = Upid(node, pid, pstart, start, type, id, user)
        return Task(self, info, encode_upid(node, pid, pstart, start, type, id, user))

    def _record(self, task: Task, endtime: int, status: str) -> None:
        """The log is written whole at once (a file nobody reads until the index names it); the index
        line is appended now, or queued in ``pending`` when the engine commits it with its state."""
        log_path = self._log_path(task.info, task.upid)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(log_path, "".join(line + "\n" for line in task.lines), fsync=False)
        line = f"{task.upid} {endtime:08X} {status}"
        index = str(self.index_path(task.info.node))
        with self._lock:
            if self.pending is not None:
                self.pending.append((index, line))
            else:
                with open(index, "a") as f:
                    f.write(line + "\n")  # one short write: whole or absent, even if killed
            records = self._records.setdefault(task.info.node, [])
            records.append(TaskRecord(task.upid, task.info, endtime, status))
            self._index_lines[task.info.node] = self._index_lines.get(task.info.node, 0) + 1
            if len(records) > self.max_records:
                del records[: len(records) - self.max_records]
            if self.pending is None:
                self.compact()

    def end_early(self, upid: str, endtime: int, lines: list[str]) -> tuple[str, str]:
        """A running task ends at ``endtime`` with the log ``lines`` (its trailer last): what a stopped
        worker leaves. Its index line is written again with the new end and status (read back, the newer
        line of a UPID wins); the new log is returned as (path, text) for the engine's transaction."""
        record = self._lookup(upid)
        status = read_status(lines[-1] if lines else None)
        line = f"{upid} {endtime:08X} {status}"
        index = str(self.index_path(record.info.node))
        with self._lock:
            records = self._records[record.info.node]
            records[records.index(record)] = TaskRecord(upid, record.info, endtime, status)
            if self.pending is not None:
                self.pending.append((index, line))
            else:
                with open(index, "a") as f:
                    f.write(line + "\n")
            self._index_lines[record.info.node] = self._index_lines.get(record.info.node, 0) + 1
        return str(self._log_path(record.info, upid)), "".join(text + "\n" for text in lines)

    def forget(self, node: str) -> None:
        """Drop a lost node's tasks (its logs went with its disk)."""
        with self._lock:
            self._records.pop(node, None)
            self._index_lines.pop(node, None)

    def index_path(self, node: str) -> Path:
        return self.root / node / "index"

    def compact(self) -> None:
        """Keep each on-disk index as bounded as memory (PVE rotates it to ``index.1`` and drops);
        rewritten only once it is 10% over the bound, and only when no line is pending."""
        with self._lock:
            if self.pending:
                return
            for node, count in list(self._index_lines.items()):
                if count > self.max_records * 11 // 10:
                    text = "".join(f"{r.upid} {r.endtime:08X} {r.status}\n" for r in self._records[node])
                    write_atomic(self.index_path(node), text, fsync=False)
                    self._index_lines[node] = len(self._records[node])

    def _log_path(self, info: Upid, upid: str) -> Path:
        return self.root / info.node / info.log_subdir / upid

    def _load_node(self, node: str) -> None:
        index = self.root / node / "index"
        records: dict[str, TaskRecord] = {}  # a UPID written again (a task stopped early): the newer line wins
        if index.exists():
            for line in index.read_text().splitlines():
                m = re.match(r"^(\S+) ([0-9A-Fa-f]{8}) (.*)$", line)
                if not m:
                    continue
                try:
                    info = decode_upid(m.group(1))
                except ValueError:
                    continue
                records[m.group(1)] = TaskRecord(m.group(1), info, int(m.group(2), 16), m.group(3))
        kept = list(records.values())
        self._records[node] = kept[-self.max_records :]
        self._index_lines[node] = len(kept)
        if kept:
            self._next_pid[node] = max(r.info.pid for r in kept) + 1

    # -- reading -------------------------------------------------------------------------------
    def records(self, node: str) -> list[TaskRecord]:
        with self._lock:
            return list(self._records.get(node, []))

    def busy_until(self, node: str, type: str) -> int:
        """When the last ``type`` task on ``node`` that ran (not one that died without a trailer,
        i.e. never got the lock) ends, or 0: how vzdump's node-global flock is modelled."""
        ends = [r.endtime for r in self.records(node) if r.info.type == type and r.status != "unexpected status"]
        return max(ends, default=0)

    def find(self, upid: str) -> TaskRecord | None:
        info = decode_upid(upid)
        for r in reversed(self.records(info.node)):
            if r.upid == upid:
                return r
        return None

    def list_node(
        self,
        node: str,
        start: int = 0,
        limit: int = 50,
        typefilter: str | None = None,
        vmid: int | str | None = None,
        errors: bool = False,
        source: str = "archive",
        since: int | None = None,
        until: int | None = None,
        statusfilter: str | Iterable[str] | None = None,
        userfilter: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """``GET /nodes/{node}/tasks``, filters as pve-manager ``Tasks.pm node_tasks``: newest first,
        active tasks (source active|all) before archived ones, ``total`` = every match."""
        if source not in ("archive", "active", "all"):
            raise ParamError({"source": f"value '{source}' does not have a value in the enumeration "
                                        "'archive, active, all'"})
        wanted = _status_types(statusfilter, errors)
        now = self.now()
        newest_first = sorted(self.records(node), key=lambda r: (r.info.starttime, r.info.pid), reverse=True)
        active = [r for r in newest_first if r.running_at(now)]
        archived = [r for r in newest_first if not r.running_at(now)]
        candidates: list[tuple[TaskRecord, bool]] = []
        if source in ("active", "all"):
            candidates += [(r, True) for r in active]
        if source != "active":
            candidates += [(r, False) for r in archived]
        items: list[dict[str, Any]] = []
        count = 0
        for record, running in candidates:
            status = None if running else record.status
            if not _task_matches(record, status, wanted, typefilter, vmid, since, until, userfilter):
                continue
            count += 1
            if count <= start or len(items) >= limit:  # PVE: limit=0 lists nothing, total still counts
                continue
            item = record.api_fields()
            if running:
                item["status"] = "RUNNING"
            else:
                item["endtime"] = record.endtime
                item["status"] = record.status
            items.append(item)
        return items, count

    def list_cluster(self, nodes: Iterable[str]) -> list[dict[str, Any]]:
        """``GET /cluster/tasks``: per node every running task plus the newest finished ones, up to
        25 in total (RESTEnvironment.pm ``active_workers``)."""
        now = self.now()
        out: list[dict[str, Any]] = []
        for node in nodes:
            newest_first = sorted(self.records(node), key=lambda r: (r.endtime, r.info.pid), reverse=True)
            running = [r for r in newest_first if r.running_at(now)]
            finished = [r for r in newest_first if not r.running_at(now)]
            for r in running:
                out.append(r.api_fields())
            for r in finished[: max(0, MAX_FINISHED_CLUSTER - len(running))]:
                item = r.api_fields()
                item.pop("pid")
                item.pop("pstart")
                item["endtime"] = r.endtime
                item["status"] = r.status
                out.append(item)
        return out

    def status(self, node: str, upid: str) -> dict[str, Any]:
        """``GET /nodes/{node}/tasks/{upid}/status``."""
        record = self._lookup(upid)
        item = record.api_fields()
        if record.running_at(self.now()):
            item["status"] = "running"
        else:
            item["status"] = "stopped"
            item["exitstatus"] = record.status
        return item

    def log(self, node: str, upid: str, start: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """``GET .../tasks/{upid}/log`` as ``PVE::Tools::dump_logfile``: 1-based ``n``, ``limit=0``
        = everything, an empty log gives one ``no content`` line."""
        record = self._lookup(upid)
        lines = self._log_path(record.info, upid).read_text().splitlines()
        start = max(start, 0)
        chosen = lines[start:] if limit == 0 else lines[start : start + limit]
        out = [{"n": start + i + 1, "t": text} for i, text in enumerate(chosen)]
        if not lines:
            return [{"n": 1, "t": "no content"}], 1
        return out, len(lines)

    def log_lines(self, upid: str) -> list[str]:
        record = self._lookup(upid)
        return self._log_path(record.info, upid).read_text().splitlines()

    def _lookup(self, upid: str) -> TaskRecord:
        try:
            info = decode_upid(upid)
        except ValueError:
            raise ParamError({"upid": "unable to parse worker upid"}) from None
        record = self.find(upid)
        if record is None or not self._log_path(info, upid).exists():
            raise ParamError({"upid": "no such task"})
        return record


def _status_types(statusfilter: str | Iterable[str] | None, errors: bool) -> set[str]:
    """Tasks.pm: ``statusfilter`` is ignored when ``errors`` is set; ``errors`` drops only ``ok``."""
    every = {"ok", "warning", "error", "unknown"}
    if statusfilter is not None and not errors:
        parts = statusfilter.replace(";", ",").split(",") if isinstance(statusfilter, str) else statusfilter
        return {p.strip().lower() for p in parts if p.strip()}
    if errors:
        return every - {"ok"}
    return every


def _task_matches(
    record: TaskRecord,
    status: str | None,
    wanted: set[str],
    typefilter: str | None,
    vmid: int | str | None,
    since: int | None,
    until: int | None,
    userfilter: str | None,
) -> bool:
    info = record.info
    user = info.user_and_token()[0]
    if userfilter and userfilter.lower() not in user.lower():
        return False
    if typefilter and info.type != typefilter:
        return False
    if vmid and (not info.id or info.id != str(vmid)):
        return False
    if since is not None and info.starttime < since:
        return False
    if until is not None and info.starttime > until:
        return False
    return status_type(status) in wanted
