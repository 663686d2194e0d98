"""Backup jobs (``GET /cluster/backup``), which job a vzdump task ran for, and each job's runs.

A scheduled run logs its command line first (``INFO: starting new backup job: vzdump --pool prod ...``,
pve-manager ``PVE/VZDump.pm``); that, or its ``--job-id``, ties a task to its job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vzkeep.exporter.snapshot import JobInfo
from vzkeep.pve.selection import is_enabled
from vzkeep.pve.tasklog import status_ok


def parse_jobs(answer: Any) -> list[dict[str, Any]]:
    if not isinstance(answer, list):
        raise ValueError(f"/cluster/backup: expected a list, got {type(answer).__name__}")
    return [j for j in answer if isinstance(j, dict) and j.get("id")]


def _words(value: Any) -> frozenset[str]:
    return frozenset(w for w in re.split(r"[\s,;]+", str(value or "")) if w)


def selection_key(params: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a job selects and where it writes, normalised so a job and its task's command line compare equal
    (pool wins, else the vmid list, else all minus exclude: pve-manager ``PVE::VZDump::get_included_guests``)."""
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


@dataclass
class _NodeRun:
    start: int  # newest run start seen on the node
    status: bool | None = None  # its newest finished run ended OK
    status_start: int = -1


@dataclass
class JobRuns:
    """job -> node -> newest run; kept apart from the task cache, which forgets old tasks, so a weekly job
    keeps its last run next to a daily one."""

    runs: dict[str, dict[str, _NodeRun]] = field(default_factory=dict)

    def record(self, job: str | None, node: str, starttime: int, status: str | None) -> None:
        if job is None:
            return
        run = self.runs.setdefault(job, {}).setdefault(node, _NodeRun(starttime))
        run.start = max(run.start, starttime)
        if status is not None and starttime >= run.status_start:
            run.status, run.status_start = status_ok(status), starttime

    def infos(self, jobs: Iterable[Mapping[str, Any]], selected: Mapping[str, int],
              listed: Mapping[str, int]) -> list[JobInfo]:
        """One ``JobInfo`` per job; ``selected``/``listed``: job -> guests it selects / of them with archives."""
        out = []
        for job in sorted(jobs, key=lambda j: str(j["id"])):
            job_id = str(job["id"])
            schedule = str(job.get("schedule") or "")
            per_node = self.runs.get(job_id, {})
            finished = [r.status for r in per_node.values() if r.status is not None]
            out.append(JobInfo(
                id=job_id, env=str(job.get("pool") or ""), schedule=schedule,
                storage=str(job.get("storage") or "local"), enabled=is_enabled(job),
                next_run=int(job["next-run"]) if job.get("next-run") else None,
                expected_interval=expected_interval(schedule) if schedule else None,
                last_run=max((r.start for r in per_node.values()), default=None),
                last_status=all(finished) if finished else None,
                guests=selected.get(job_id, 0), guests_listed=listed.get(job_id, 0),
            ))
        return out
