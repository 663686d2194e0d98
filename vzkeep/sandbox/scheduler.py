"""pvescheduler: when backup jobs run (pve-manager ``PVE/Jobs.pm``, ``bin/pvescheduler``).

PVE evaluates every job once a minute on every node: a job runs when ``now >= next event after
last_run``, where ``last_run`` is the state's ``updated``, else the start time of its last task,
else its ``time``. We compute the same thing event to event instead of minute by minute: for each
(job, node) the first minute boundary at which PVE's check would pass, so a simulated month costs
one calendar computation per run, not 43,200 polls.

Per-node state lives in ``Cluster.job_state[job_id][node]``, shaped like
``/var/lib/pve-manager/jobs/vzdump-<id>.json``: ``state`` (created|started|stopped), ``time``,
``upid``, ``msg``, ``updated``, ``config`` ({enabled, schedule}).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from vzkeep.pve import calendar
from vzkeep.pve.values import is_true
from vzkeep.sandbox.model import Cluster
from vzkeep.sandbox.tasks import TaskStore

# Options that belong to the job, not to vzdump (pve-guest-common VZDump/JobBase.pm).
JOB_ONLY_OPTIONS = ("type", "id", "schedule", "enabled", "repeat-missed", "comment", "next-run")
SCHEDULER_USER = "root@pam"  # bin/pvescheduler runs jobs as root@pam

RunJob = Callable[[str, dict[str, Any], str, int], str]  # (job id, vzdump params, node, time) -> UPID|"OK"


@lru_cache(maxsize=256)
def _event(schedule: str) -> calendar.CalendarEvent:
    return calendar.parse(schedule)


def minute_ceil(t: int) -> int:
    """pvescheduler wakes on minute boundaries: the first one at or after ``t``."""
    return t if t % 60 == 0 else (t // 60 + 1) * 60


def runtime_props(job: dict[str, Any]) -> dict[str, Any]:
    """What ``detect_changed_runtime_props`` compares: enabled (default 1) and schedule."""
    return {"enabled": int(is_true(job.get("enabled", 1))), "schedule": str(job.get("schedule", ""))}


def vzdump_params(job_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """The job's vzdump options as ``PVE/Jobs/VZDump.pm run`` passes them, plus ``quiet=1``."""
    params = {k: v for k, v in job.items() if k not in JOB_ONLY_OPTIONS}
    params["quiet"] = 1
    return params


class Scheduler:
    def __init__(self, cluster: Cluster, tasks: TaskStore, run_job: RunJob):
        self.cluster = cluster
        self.tasks = tasks
        self.run_job = run_job

    # -- state, as PVE/Jobs.pm keeps it -------------------------------------------------------
    def state(self, job_id: str, node: str) -> dict[str, Any] | None:
        return self.cluster.job_state.get(job_id, {}).get(node)

    def sync_states(self, now: int) -> None:
        """``synchronize_job_states_with_config`` + ``detect_changed_runtime_props`` on every node:
        a new job gets ``{state: created, time: now}``; a changed schedule or enabled flag sets
        ``updated = now`` (so an edit never triggers an immediate run); deleted jobs lose their state."""
        for job_id in list(self.cluster.job_state):
            if job_id not in self.cluster.jobs:
                del self.cluster.job_state[job_id]
        for job_id, job in self.cluster.jobs.items():
            per_node = self.cluster.job_state.setdefault(job_id, {})
            props = runtime_props(job)
            for node in self.cluster.nodes:
                state = per_node.get(node)
                if state is None:
                    per_node[node] = {"state": "created", "time": now, "config": props}
                elif state.get("config") != props:
                    state["updated"] = now
                    state["config"] = props

    def scheduler_start(self, node: str, now: int) -> None:
        """The scheduler's first pass on ``node`` (boot, service restart): jobs without
        ``repeat-missed`` forget missed runs (``updated = now``); with it, a missed run happens once."""
        self.sync_states(now)
        for job_id, job in self.cluster.jobs.items():
            state = self.state(job_id, node)
            if state is not None and not is_true(job.get("repeat-missed", 0)):
                state["updated"] = now

    def last_run(self, state: dict[str, Any]) -> int:
        """``get_last_runtime``: updated, else the UPID's start time, else time, else 0."""
        if state.get("updated") is not None:
            return int(state["updated"])
        if state.get("upid"):
            try:
                return self.tasks.find(state["upid"]).info.starttime  # type: ignore[union-attr]
            except (ValueError, AttributeError):
                pass
        return int(state.get("time") or 0)

    # -- when ------------------------------------------------------------------------------------
    def due(self, job_id: str, node: str, now: int) -> int | None:
        """The minute at which pvescheduler on ``node`` would start ``job_id``, or None (disabled,
        bound to another node, node down, or a schedule with no further event)."""
        job = self.cluster.jobs[job_id]
        if not is_true(job.get("enabled", 1)):
            return None
        if job.get("node") and job["node"] != node:
            return None
        node_obj = self.cluster.nodes[node]
        state = self.state(job_id, node)
        if not node_obj.online or state is None:
            return None
        try:
            event = _event(str(job.get("schedule", ""))).next_after(self.last_run(state), node_obj.timezone)
        except ValueError:
            return None  # an invalid schedule never runs (the API refuses to store one)
        if event is None:
            return None
        due = minute_ceil(event)
        if state.get("state") == "started" and state.get("upid"):
            record = self.tasks.find(state["upid"])
            if record is not None and record.endtime > due:
                # still running: skipped until it ends, then the overdue event fires at once
                due = minute_ceil(record.endtime)
        return max(due, minute_ceil(now))

    def next_due(self, now: int) -> int | None:
        times = [self.due(j, n, now) for j in self.cluster.jobs for n in self.cluster.nodes]
        return min((t for t in times if t is not None), default=None)

    # -- running ---------------------------------------------------------------------------------
    def run_until(self, now: int, target: int, set_clock: Callable[[int], None],
                  after_event: Callable[[int], bool] | None = None) -> list[str]:
        """Run every job start due in ``[now, target]``, in time order; return the UPIDs started.

        ``after_event(at)`` is called once the jobs due at ``at`` have started; returning False stops
        the run there (an interrupted ``advance``)."""
        self.sync_states(now)
        started: list[str] = []
        while True:
            at = self.next_due(now)
            if at is None or at > target:
                return started
            set_clock(at)
            now = at
            for node in sorted(self.cluster.nodes):
                for job_id in sorted(self.cluster.jobs):
                    if self.due(job_id, node, at) == at:
                        upid = self.start_job(job_id, node, at)
                        if upid.startswith("UPID:"):
                            started.append(upid)
            if after_event is not None and not after_event(at):
                return started

    def start_job(self, job_id: str, node: str, at: int) -> str:
        """``starting_job`` + the plugin's run + ``started_job``."""
        state = self.cluster.job_state[job_id][node]
        self.finish_stopped(state)
        try:
            result = self.run_job(job_id, vzdump_params(job_id, self.cluster.jobs[job_id]), node, at)
        except Exception as exc:  # PVE records the error as the job's message
            result = None
            new_state = {"state": "stopped", "msg": str(exc), "time": at}
        else:
            if result.startswith("UPID:"):
                new_state = {"state": "started", "upid": result}
            else:
                new_state = {"state": "stopped", "msg": result, "time": at}
        new_state["config"] = state.get("config", runtime_props(self.cluster.jobs[job_id]))
        self.cluster.job_state[job_id][node] = new_state
        return result or ""

    def finish_stopped(self, state: dict[str, Any]) -> None:
        """``update_job_stopped``: a started job whose task ended becomes stopped with its status."""
        if state.get("state") != "started" or not state.get("upid"):
            return
        record = self.tasks.find(state["upid"])
        if record is not None:
            state["state"] = "stopped"
            state["msg"] = record.status
