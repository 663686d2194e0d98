"""vzdump tasks: each guest's newest backup attempt, from the task lists and (once per task) the task logs.

Per node and poll one ``GET /nodes/{node}/tasks?typefilter=vzdump&source=all&since=…``; a task's log is read
once when it has finished (and its first lines once while it runs, to know its job). A scheduled job run is
one task per node whatever the number of guests (pve-manager ``PVE/API2/VZDump.pm``: the task id is the vmid
only when the run backs up one local guest), so the logs read per poll follow the runs, not the guests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vzkeep.exporter.api import ApiGet, raw_body
from vzkeep.exporter.snapshot import Attempt
from vzkeep.pve.tasklog import GuestOutcome, local_offset, parse_task_log, status_ok

# One task listing per node and poll: enough for many days of job runs plus manual backups. PVE has no maximum
# for `limit` (pve-manager PVE/API2/Tasks.pm node_tasks), so one call per node never needs paging.
TASK_LIST_LIMIT = 1000
# On the first poll, task logs are read back this far from the newest task (a weekly job plus slack); older
# attempts are superseded by newer ones anyway, and the storage content gives the last success at any age.
HISTORY_SECONDS = 8 * 86400
# Finished tasks are forgotten this long after they fall behind the listing window (bounded memory).
CACHE_SLACK_SECONDS = 86400
# A running task's first lines hold the job's command line; nothing else is read until it finishes.
HEAD_LINES = 5


@dataclass(frozen=True, slots=True)
class SeenTask:
    """What is kept of a task once read: enough to skip it next time and to count its run for its job."""

    node: str
    starttime: int
    job: str | None
    status: str | None  # None while running


# Called for every task seen for the first time or finished since: (job, node, starttime, status).
RunListener = Callable[[str | None, str, int, str | None], None]
JobMatcher = Callable[[Mapping[str, Any]], str | None]


class TaskTracker:
    """The task cache (by UPID), each guest's newest attempt and, per node, where the next listing starts."""

    def __init__(self) -> None:
        self.tasks: dict[str, SeenTask] = {}
        self.attempts: dict[int, Attempt] = {}
        self.since: dict[str, int] = {}

    def poll_node(self, get: ApiGet, node: str, match: JobMatcher, on_run: RunListener) -> None:
        params: dict[str, Any] = {"typefilter": "vzdump", "source": "all", "limit": TASK_LIST_LIMIT}
        if node in self.since:
            params["since"] = self.since[node]
        items = get(f"nodes/{node}/tasks", **params)
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
            self._see(get, node, item, running, match, on_run)
        if newest is not None:
            # Re-list from the oldest running task (it may finish), else from the newest start seen.
            self.since[node] = min([*running_starts, newest])
        elif first_poll:
            self.since[node] = 0
        self._forget_old(node)

    def _see(self, get: ApiGet, node: str, item: Mapping[str, Any], running: bool, match: JobMatcher,
             on_run: RunListener) -> None:
        upid = str(item["upid"])
        known = self.tasks.get(upid)
        if known is not None and known.status is not None:
            return  # finished and read: a task log is read once
        starttime = int(item["starttime"])
        if running:
            if known is None:
                job = match(parse_task_log(_read_log(get, node, upid, HEAD_LINES)).params)
                self.tasks[upid] = SeenTask(node, starttime, job, None)
                on_run(job, node, starttime, None)
            return
        status = str(item.get("status") or "unexpected status")
        endtime = int(item.get("endtime") or starttime)
        parsed = parse_task_log(_read_log(get, node, upid, 0))
        job = match(parsed.params) if parsed.params else None
        self.tasks[upid] = SeenTask(node, starttime, job, status)
        on_run(job, node, starttime, status)
        offset = local_offset(parsed.outcomes, endtime)
        attempts = [Attempt(o.vmid, _end_time(o, offset, endtime), o.ok, upid, o.error) for o in parsed.outcomes]
        single = str(item.get("id") or "")
        if not attempts and single.isdigit():
            # A single-guest task that failed before the guest started (storage missing, lock timeout).
            ok = status_ok(status)
            attempts = [Attempt(int(single), endtime, ok, upid, None if ok else status)]
        for attempt in attempts:
            current = self.attempts.get(attempt.vmid)
            if current is None or (attempt.timestamp, attempt.upid) >= (current.timestamp, current.upid):
                self.attempts[attempt.vmid] = attempt

    def _forget_old(self, node: str) -> None:
        horizon = self.since.get(node, 0) - CACHE_SLACK_SECONDS
        for upid in [u for u, t in self.tasks.items() if t.node == node and t.starttime < horizon]:
            del self.tasks[upid]


def _read_log(get: ApiGet, node: str, upid: str, limit: int) -> list[str]:
    # limit=0 returns the whole log (pve-common PVE::Tools::dump_logfile). A log has a line per step of
    # every guest of a job run: read as text lines straight away, not as one {n, t} object per line.
    path = f"nodes/{node}/tasks/{upid}/log"
    body = raw_body(get, path, start=0, limit=limit)
    if body is None:
        return [str(line.get("t", "")) for line in get(path, start=0, limit=limit)]
    answer = json.loads(body, object_hook=lambda obj: str(obj.get("t", "")) if "n" in obj else obj)
    lines = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(lines, list):
        raise ValueError(f"/{path}: expected a list of lines, got {type(lines).__name__}")
    return lines


def _end_time(outcome: GuestOutcome, offset: int | None, endtime: int) -> int:
    """When a guest's attempt ended: its local stamp made absolute, else the task's end."""
    if outcome.local_end is None or offset is None:
        return endtime
    return outcome.local_end - offset
