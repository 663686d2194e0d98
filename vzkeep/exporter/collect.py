"""One poll of the PVE API: what the exporter knows about guests, jobs, archives, attempts and storages.

The number of API calls of a poll depends on nodes and storages, never on guests (issue 5 item 1)::

    GET /cluster/resources                                     1  guests (+pool), storages, node state
    GET /cluster/backup                                        1  jobs with next-run
    GET /cluster/backup-info/not-backed-up                     1  guests in no job
    GET /nodes/{n}/tasks?typefilter=vzdump&source=all&since=   1 per online node
    GET /nodes/{n}/storage/{s}/content?content=backup          1 per backup storage and node (shared once)
    GET /nodes/{n}/tasks/{upid}/log                            once per vzdump task, ever (cached by UPID)

A job run is one task per node whatever the number of guests (reference/monitoring.md §7), so the task logs
read per poll follow the runs, not the guests. Each part of a poll fails on its own: the part keeps its last
good data, the snapshot says which parts failed, and ``Poller.poll`` never raises.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vzkeep.pve.client import ApiGet, PveClient
from vzkeep.pve.selection import GuestRef, covered_by_enabled_jobs, is_enabled
from vzkeep.pve.tasklog import GuestOutcome, local_offset, parse_task_log, status_ok

log = logging.getLogger("vzkeep.exporter")

# One task listing per node and poll: enough for many days of job runs plus manual backups. PVE has no maximum
# for `limit` (pve-manager PVE/API2/Tasks.pm), so one call per node never needs paging.
TASK_LIST_LIMIT = 1000
# On the first poll, task logs are read back this far from the newest task (a weekly job plus slack); older
# attempts are superseded by newer ones anyway, and the storage content gives the last success at any age.
HISTORY_SECONDS = 8 * 86400
# Finished tasks are forgotten this long after they fall behind the listing window (bounded memory).
CACHE_SLACK_SECONDS = 86400
# A running task's first lines hold the job's command line; nothing else is read until it finishes.
HEAD_LINES = 5


def proxmoxer_get(api: PveClient) -> ApiGet:
    """The read seam over a ``proxmoxer.ProxmoxAPI`` (``vzkeep.connection.connect``)."""

    def get(path: str, **params: Any) -> Any:
        return api.get(path, **params)

    return get


# --- the snapshot ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestInfo:
    vmid: int
    name: str
    type: str  # qemu | lxc
    node: str
    env: str  # the guest's pool; "" for a guest in no pool


@dataclass(frozen=True)
class ArchiveStats:
    """The archives of one guest on one storage; ``last_ctime`` 0 = a covered guest with none yet."""

    env: str
    vmid: int
    storage: str
    last_ctime: int
    last_size: int
    count: int
    total_bytes: int


@dataclass(frozen=True)
class Attempt:
    """A guest's newest backup attempt, from a vzdump task (its log for multi-guest job runs)."""

    vmid: int
    timestamp: int
    ok: bool
    upid: str
    error: str | None = None
    env: str = ""  # filled in from the guest's current pool when a snapshot is built


@dataclass(frozen=True)
class JobInfo:
    id: str
    env: str  # the job's pool; "" for a job that selects by vmid or all
    schedule: str
    storage: str
    enabled: bool
    next_run: int | None
    expected_interval: int | None
    last_run: int | None  # start of the newest run seen (running or finished)
    last_status: bool | None  # every node's newest finished run ended OK


@dataclass(frozen=True)
class StorageUsage:
    storage: str
    node: str
    size: int
    used: int


@dataclass(frozen=True)
class Verification:
    """The verification of the newest archive of a guest on a storage that has one (``vzkeep verify``)."""

    env: str
    vmid: int
    storage: str
    verified_at: int
    ok: bool


@dataclass(frozen=True)
class DrillInfo:
    """The newest restore drill of a guest (``vzkeep drill`` results store)."""

    env: str
    vmid: int
    ok: bool
    duration_seconds: float
    last_success: float | None


@dataclass(frozen=True)
class StateInfo:
    versioning_enabled: bool
    last_write: Mapping[str, float]  # stack -> unix seconds


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape publishes; plain data, built by ``Poller.poll`` and read by the collectors."""

    guests: tuple[GuestInfo, ...] = ()
    covered: Mapping[int, bool] = field(default_factory=dict)
    archives: tuple[ArchiveStats, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    jobs: tuple[JobInfo, ...] = ()
    storages: tuple[StorageUsage, ...] = ()
    verifications: tuple[Verification, ...] = ()
    drills: tuple[DrillInfo, ...] = ()
    state: StateInfo | None = None
    up: bool = False
    poll_timestamp: float = 0.0  # wall time of the last poll where every part succeeded; 0 = never
    poll_duration: float = 0.0
    poll_errors: int = 0  # polls that failed in at least one part, since start
    failed_parts: tuple[str, ...] = ()


# --- matching task runs to jobs ----------------------------------------------------------------------------


def _words(value: Any) -> frozenset[str]:
    return frozenset(w for w in re.split(r"[\s,;]+", str(value or "")) if w)


def selection_key(params: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a job selects and where it writes, normalised so a job and its task's command line compare equal
    (pool wins, else the vmid list, else all minus exclude; reference/pve.md §4.3)."""
    storage = str(params.get("storage") or "local")
    if params.get("pool"):
        return ("pool", str(params["pool"]), storage)
    if params.get("vmid"):
        return ("vmid", _words(params["vmid"]), storage)
    return ("all", _words(params.get("exclude")), storage)


def match_job(params: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]]) -> str | None:
    """The job a task ran for: its ``--job-id`` when logged, else the job with the same selection."""
    job_list = list(jobs)
    if params.get("job-id"):
        return str(params["job-id"])
    key = selection_key(params)
    found = sorted(str(j.get("id")) for j in job_list if selection_key(j) == key)
    return found[0] if found else None


@functools.lru_cache(maxsize=256)
def expected_interval(schedule: str) -> int | None:
    """The schedule's longest gap between two runs (the same figure the alert thresholds use)."""
    from vzkeep.plan import longest_gap

    try:
        return longest_gap(schedule)
    except Exception:  # an unparsable schedule has no interval; the job is still published
        return None


# --- the poller --------------------------------------------------------------------------------------------


@dataclass
class _TaskResult:
    node: str
    starttime: int
    job: str | None
    status: str | None  # None while running
    attempts: tuple[Attempt, ...] = ()


@dataclass
class _Parts:
    """The last good data of each part of a poll."""

    resources: list[dict[str, Any]] | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    not_backed_up: set[int] | None = None
    content: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    verify: dict[str, tuple[int, bool]] = field(default_factory=dict)
    drills: tuple[DrillInfo, ...] = ()
    state: StateInfo | None = None


class Poller:
    """Polls PVE; keeps the task cache, each guest's newest attempt and the last good data of every part.

    ``verify_results`` is a ``vzkeep verify`` results file; ``state_reader`` returns the state bucket metrics
    (``--state-backend``). ``clock`` is wall time, used only for ``vzkeep_poll_timestamp_seconds``.
    """

    def __init__(
        self, get: ApiGet, *, verify_results: Path | None = None, drill_results: Path | None = None,
        state_reader: Callable[[], StateInfo] | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.get = get
        self.verify_results = verify_results
        self.drill_results = drill_results
        self.state_reader = state_reader
        self.clock = clock
        self.parts = _Parts()
        self.tasks: dict[str, _TaskResult] = {}
        self.attempts: dict[int, Attempt] = {}
        self.since: dict[str, int] = {}
        # job -> node -> newest run start and newest finished run's status; kept apart from the task cache,
        # which forgets old tasks, so a weekly job keeps its last run next to a daily one.
        self.job_runs: dict[str, dict[str, dict[str, Any]]] = {}
        self.snapshot = Snapshot()

    # -- one poll ------------------------------------------------------------------------------------------

    def poll(self) -> Snapshot:
        """Run one poll and return the new snapshot (also kept as ``self.snapshot``); never raises."""
        started = time.monotonic()
        failed: list[str] = []
        self._run_part("resources", failed, self._poll_resources)
        if self.parts.resources is not None:
            self._run_part("jobs", failed, self._poll_jobs)
            self._run_part("not-backed-up", failed, self._poll_not_backed_up)
            for node in self._online_nodes():
                self._run_part(f"tasks/{node}", failed, lambda n=node: self._poll_tasks(n))
            for storage, node in self._content_targets():
                self._run_part(f"content/{storage}/{node}", failed,
                               lambda s=storage, n=node: self._poll_content(s, n))
        if self.verify_results is not None:
            self._run_part("verify", failed, self._read_verify_results)
        if self.drill_results is not None:
            self._run_part("drills", failed, self._read_drill_results)
        if self.state_reader is not None:
            self._run_part("state", failed, self._read_state)
        self.snapshot = self._build(failed, time.monotonic() - started)
        return self.snapshot

    def _run_part(self, part: str, failed: list[str], action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # a bad answer or an outage must not stop the exporter (issue 5 item 1)
            failed.append(part)
            log.warning("poll part %s failed, keeping its last data: %s", part, _describe(exc))

    def _build(self, failed: list[str], duration: float) -> Snapshot:
        previous = self.snapshot
        ok = not failed and self.parts.resources is not None
        if self.parts.resources is None:
            return replace(previous, up=False, poll_duration=duration, poll_errors=previous.poll_errors + 1,
                           failed_parts=tuple(failed))
        guests = self._guests()
        jobs = self.parts.jobs
        covering = self._covering_jobs(guests, jobs)
        env = {g.vmid: g.env for g in guests}
        return Snapshot(
            guests=tuple(guests),
            covered={g.vmid: bool(covering[g.vmid]) and g.vmid not in (self.parts.not_backed_up or set())
                     for g in guests},
            archives=tuple(self._archive_stats(env, covering, jobs)),
            attempts=tuple(replace(a, env=env.get(a.vmid, "")) for _, a in sorted(self.attempts.items())),
            jobs=tuple(self._job_infos(jobs)),
            storages=tuple(self._storage_usage()),
            verifications=tuple(self._verifications(env)),
            drills=self.parts.drills,
            state=self.parts.state,
            up=ok,
            poll_timestamp=self.clock() if ok else previous.poll_timestamp,
            poll_duration=duration,
            poll_errors=previous.poll_errors + (0 if ok else 1),
            failed_parts=tuple(failed),
        )

    # -- parts ---------------------------------------------------------------------------------------------

    def _poll_resources(self) -> None:
        # One call without a type filter gives guests, storages and nodes together (reference/pve.md §4.7).
        answer = self.get("cluster/resources")
        if not isinstance(answer, list):
            raise ValueError(f"/cluster/resources: expected a list, got {type(answer).__name__}")
        self.parts.resources = answer

    def _poll_jobs(self) -> None:
        answer = self.get("cluster/backup")
        if not isinstance(answer, list):
            raise ValueError(f"/cluster/backup: expected a list, got {type(answer).__name__}")
        self.parts.jobs = [j for j in answer if isinstance(j, dict) and j.get("id")]

    def _poll_not_backed_up(self) -> None:
        answer = self.get("cluster/backup-info/not-backed-up")
        self.parts.not_backed_up = {int(entry["vmid"]) for entry in answer}

    def _poll_tasks(self, node: str) -> None:
        params: dict[str, Any] = {"typefilter": "vzdump", "source": "all", "limit": TASK_LIST_LIMIT}
        if node in self.since:
            params["since"] = self.since[node]
        items = self.get(f"nodes/{node}/tasks", **params)
        first_poll = node not in self.since
        newest = max((int(t["starttime"]) for t in items), default=None)
        oldest_kept = (newest - HISTORY_SECONDS) if (first_poll and newest is not None) else None
        running_starts = []
        for item in items:
            starttime = int(item["starttime"])
            if oldest_kept is not None and starttime < oldest_kept:
                continue
            running = item.get("status") in (None, "RUNNING") or not item.get("endtime")
            if running:
                running_starts.append(starttime)
            self._see_task(node, item, running)
        if newest is not None:
            # Re-list from the oldest running task (it may finish), else from the newest start seen.
            self.since[node] = min([*running_starts, newest])
        elif first_poll:
            self.since[node] = 0
        self._forget_old_tasks(node)

    def _see_task(self, node: str, item: Mapping[str, Any], running: bool) -> None:
        upid = str(item["upid"])
        known = self.tasks.get(upid)
        if known is not None and known.status is not None:
            return  # finished and read: a task log is read once
        if running:
            if known is None:
                head = self._read_log(node, upid, HEAD_LINES)
                job = match_job(parse_task_log(head).params, self.parts.jobs)
                self.tasks[upid] = _TaskResult(node, int(item["starttime"]), job, None)
                self._record_run(self.tasks[upid])
            return
        result = self._finished_task(node, item, self._read_log(node, upid, 0))
        self.tasks[upid] = result
        self._record_run(result)
        for attempt in result.attempts:
            current = self.attempts.get(attempt.vmid)
            if current is None or (attempt.timestamp, attempt.upid) >= (current.timestamp, current.upid):
                self.attempts[attempt.vmid] = attempt

    def _read_log(self, node: str, upid: str, limit: int) -> list[str]:
        # limit=0 returns the whole log (PVE::Tools::dump_logfile, reference/pve.md §4.5).
        lines = self.get(f"nodes/{node}/tasks/{upid}/log", start=0, limit=limit)
        return [str(line.get("t", "")) for line in lines]

    def _finished_task(self, node: str, item: Mapping[str, Any], lines: list[str]) -> _TaskResult:
        upid = str(item["upid"])
        status = str(item.get("status") or "unexpected status")
        endtime = int(item.get("endtime") or item["starttime"])
        parsed = parse_task_log(lines)
        offset = local_offset(parsed.outcomes, endtime)
        attempts = [Attempt(o.vmid, _end_time(o, offset, endtime), o.ok, upid, o.error)
                    for o in parsed.outcomes]
        single = str(item.get("id") or "")
        if not attempts and single.isdigit():
            # A single-guest task that failed before the guest started (storage missing, lock timeout).
            ok = status_ok(status)
            attempts = [Attempt(int(single), endtime, ok, upid, None if ok else status)]
        job = match_job(parsed.params, self.parts.jobs) if parsed.params else None
        return _TaskResult(node, int(item["starttime"]), job, status, tuple(attempts))

    def _forget_old_tasks(self, node: str) -> None:
        horizon = self.since.get(node, 0) - CACHE_SLACK_SECONDS
        for upid in [u for u, t in self.tasks.items() if t.node == node and t.starttime < horizon]:
            del self.tasks[upid]

    def _poll_content(self, storage: str, node: str) -> None:
        answer = self.get(f"nodes/{node}/storage/{storage}/content", content="backup")
        if not isinstance(answer, list):
            raise ValueError(f"storage {storage} content: expected a list, got {type(answer).__name__}")
        # Keep only what the metrics need: one small tuple per archive.
        self.parts.content[(storage, node)] = [
            {"volid": str(e.get("volid", "")), "vmid": int(e["vmid"]), "ctime": int(e.get("ctime") or 0),
             "size": int(e.get("size") or 0)}
            for e in answer if e.get("vmid") is not None
        ]

    def _read_verify_results(self) -> None:
        path = self.verify_results
        assert path is not None
        if not path.exists():
            self.parts.verify = {}  # nothing verified yet: no series, and no error
            return
        from vzkeep.verify import results_by_volid

        results = results_by_volid(path)
        self.parts.verify = {volid: (int(r.verified_at), bool(r.ok)) for volid, r in results.items()}

    def _read_drill_results(self) -> None:
        assert self.drill_results is not None
        from vzkeep.drill import DrillResultStore

        self.parts.drills = tuple(
            DrillInfo(env=r.env, vmid=r.vmid, ok=r.ok, duration_seconds=r.duration_seconds,
                      last_success=r.last_success_at)
            for _, r in sorted(DrillResultStore(self.drill_results).load().items())
        )

    def _read_state(self) -> None:
        assert self.state_reader is not None
        self.parts.state = self.state_reader()

    # -- derived views -------------------------------------------------------------------------------------

    def _resources(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.parts.resources or [] if r.get("type") == kind]

    def _guests(self) -> list[GuestInfo]:
        guests = [r for r in self.parts.resources or [] if r.get("type") in ("qemu", "lxc")]
        return sorted(
            (GuestInfo(int(r["vmid"]), str(r.get("name") or ""), str(r["type"]), str(r.get("node") or ""),
                       str(r.get("pool") or "")) for r in guests if not int(r.get("template") or 0)),
            key=lambda g: g.vmid,
        )

    def _online_nodes(self) -> list[str]:
        nodes = self._resources("node")
        if nodes:
            return sorted(str(n["node"]) for n in nodes if n.get("status") == "online")
        # Without node entries (a restricted token), fall back to the nodes guests and storages name.
        return sorted({str(r["node"]) for r in self.parts.resources or [] if r.get("node")})

    def _backup_storages(self) -> list[dict[str, Any]]:
        return [s for s in self._resources("storage")
                if "backup" in str(s.get("content", "")).split(",") and s.get("status") == "available"]

    def _content_targets(self) -> list[tuple[str, str]]:
        """(storage, node) pairs to list: a shared storage once, from its first online node."""
        online = set(self._online_nodes())
        targets: dict[str, tuple[str, str]] = {}
        for entry in sorted(self._backup_storages(), key=lambda s: (str(s["storage"]), str(s["node"]))):
            storage, node = str(entry["storage"]), str(entry["node"])
            if node not in online:
                continue
            key = storage if int(entry.get("shared") or 0) else f"{storage}/{node}"
            targets.setdefault(key, (storage, node))
        return sorted(targets.values())

    def _covering_jobs(self, guests: list[GuestInfo], jobs: list[dict[str, Any]]) -> dict[int, list[str]]:
        refs = [GuestRef(g.vmid, g.node, g.env or None, g.type, g.name) for g in guests]
        try:
            return covered_by_enabled_jobs(jobs, refs)
        except ValueError as exc:  # a job PVE would reject: count its guests as not covered, say why
            log.warning("cannot evaluate backup job selection: %s", exc)
            return {g.vmid: [] for g in guests}

    def _archive_stats(self, env: Mapping[int, str], covering: Mapping[int, list[str]],
                       jobs: list[dict[str, Any]]) -> list[ArchiveStats]:
        stats: dict[tuple[int, str], ArchiveStats] = {}
        for storage, entries in self._archives_per_storage().items():
            for e in entries:
                key = (e["vmid"], storage)
                old = stats.get(key)
                if old is None:
                    stats[key] = ArchiveStats(env.get(e["vmid"], ""), e["vmid"], storage, e["ctime"],
                                              e["size"], 1, e["size"])
                    continue
                newer = e["ctime"] > old.last_ctime
                stats[key] = replace(old, last_ctime=max(e["ctime"], old.last_ctime),
                                     last_size=e["size"] if newer else old.last_size, count=old.count + 1,
                                     total_bytes=old.total_bytes + e["size"])
        # A covered guest with no archive on its job's storage gets a 0 ("never") series: the timestamp series
        # then exists for every covered guest and an alert never resolves because a series vanished (§5.1).
        job_storage = {str(j["id"]): str(j.get("storage") or "local") for j in jobs}
        for vmid, job_ids in covering.items():
            for job_id in job_ids:
                key = (vmid, job_storage.get(job_id, "local"))
                stats.setdefault(key, ArchiveStats(env.get(vmid, ""), vmid, key[1], 0, 0, 0, 0))
        return [stats[k] for k in sorted(stats)]

    def _archives_per_storage(self) -> dict[str, list[dict[str, Any]]]:
        """Each storage's archives once: a volid seen from two nodes of one storage is one archive.

        On PVE a non-shared storage has its own directory per node, so one volid on two nodes would be the
        same guest backed up in the same second on both, which cannot happen; the sandbox serves one
        directory to every node of such a storage, and this keeps it from counting archives twice.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (storage, _node), entries in sorted(self.parts.content.items()):
            seen = out.setdefault(storage, {})
            for e in entries:
                seen.setdefault(e["volid"], e)
        return {storage: list(entries.values()) for storage, entries in out.items()}

    def _job_infos(self, jobs: list[dict[str, Any]]) -> list[JobInfo]:
        runs = self.job_runs
        out = []
        for job in sorted(jobs, key=lambda j: str(j["id"])):
            job_id = str(job["id"])
            schedule = str(job.get("schedule") or "")
            per_node = runs.get(job_id, {})
            finished = [r["status"] for r in per_node.values() if r.get("status") is not None]
            out.append(JobInfo(
                id=job_id, env=str(job.get("pool") or ""), schedule=schedule,
                storage=str(job.get("storage") or "local"), enabled=is_enabled(job),
                next_run=int(job["next-run"]) if job.get("next-run") else None,
                expected_interval=expected_interval(schedule) if schedule else None,
                last_run=max((r["start"] for r in per_node.values()), default=None),
                last_status=all(finished) if finished else None,
            ))
        return out

    def _record_run(self, task: _TaskResult) -> None:
        if task.job is None:
            return
        entry = self.job_runs.setdefault(task.job, {}).setdefault(
            task.node, {"start": task.starttime, "status": None, "status_start": -1})
        entry["start"] = max(entry["start"], task.starttime)
        if task.status is not None and task.starttime >= entry["status_start"]:
            entry["status"], entry["status_start"] = status_ok(task.status), task.starttime

    def _storage_usage(self) -> list[StorageUsage]:
        entries = sorted(self._backup_storages(), key=lambda s: (str(s["storage"]), str(s["node"])))
        return [StorageUsage(str(s["storage"]), str(s["node"]), int(s["maxdisk"]), int(s.get("disk") or 0))
                for s in entries if s.get("maxdisk")]

    def _verifications(self, env: Mapping[int, str]) -> list[Verification]:
        if not self.parts.verify:
            return []
        newest: dict[tuple[int, str], tuple[int, int, bool]] = {}
        for storage, entries in self._archives_per_storage().items():
            for e in entries:
                result = self.parts.verify.get(e["volid"])
                key = (e["vmid"], storage)
                if result is not None and (key not in newest or e["ctime"] > newest[key][0]):
                    newest[key] = (e["ctime"], *result)
        return [Verification(env.get(vmid, ""), vmid, storage, at, ok)
                for (vmid, storage), (_ctime, at, ok) in sorted(newest.items())]


def _end_time(outcome: GuestOutcome, offset: int | None, endtime: int) -> int:
    """When a guest's attempt ended: its local stamp made absolute, else the task's end."""
    if outcome.local_end is None or offset is None:
        return endtime
    return outcome.local_end - offset


def _describe(exc: Exception) -> str:
    """One line about a failure, without request headers (the token is in them, never in the message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def state_reader_for(url: str) -> Callable[[], StateInfo]:
    """Read the state bucket's metrics (``--state-backend``); raises BackendURLError for a bad URL at once."""
    from vzkeep.state.backend import make_client, parse_backend_url
    from vzkeep.state.metrics import state_metrics

    backend = parse_backend_url(url)
    client = make_client(backend)

    def read() -> StateInfo:
        metrics = state_metrics(client, backend.bucket, backend.prefix)
        return StateInfo(metrics.versioning_enabled, dict(metrics.last_write))

    return read


def snapshot_to_json(snapshot: Snapshot) -> str:
    """The snapshot as JSON (debugging aid for ``--once --json``)."""
    from dataclasses import asdict

    data = asdict(snapshot)
    data["covered"] = {str(k): v for k, v in snapshot.covered.items()}
    return json.dumps(data, indent=1, sort_keys=True)
