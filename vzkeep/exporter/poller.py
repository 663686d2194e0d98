"""One poll of the PVE API: what the exporter knows about guests, jobs, archives, attempts, storages, time.

The number of API calls of a poll depends on nodes and storages, never on guests::

    GET /cluster/resources                                     1  guests (+pool), storages, node state
    GET /cluster/backup                                        1  jobs with next-run
    GET /cluster/backup-info/not-backed-up                     1  guests in no job
    GET /nodes/{n}/time                                        1  the cluster's clock (first online node)
    GET /access/permissions                                    1  the exporter's own privileges
    GET /nodes/{n}/tasks?typefilter=vzdump&source=all&since=   1 per online node
    GET /nodes/{n}/storage/{s}/content?content=backup          1 per backup storage and node (shared once)
    GET /nodes/{n}/tasks/{upid}/log                            once per vzdump task, ever (cached by UPID)

Each part of a poll fails on its own: the part keeps its last good data, the snapshot says which parts
failed, and ``Poller.poll`` never raises. A part PVE does not serve at all (HTTP 501: an older PVE, or a
sandbox without the route) is skipped without failing the poll, and said once in the log.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vzkeep.exporter import archives, jobs, results
from vzkeep.exporter.api import NOT_IMPLEMENTED, ApiGet, describe, http_status, proxmoxer_get, raw_body
from vzkeep.exporter.clock import read_clock
from vzkeep.exporter.privileges import PrivilegeCheck
from vzkeep.exporter.resources import Resources
from vzkeep.exporter.snapshot import (
    ArchiveStats,
    ClusterClock,
    DrillInfo,
    GuestInfo,
    Snapshot,
    StateInfo,
    Verification,
)
from vzkeep.exporter.tasks import TaskTracker
from vzkeep.pve.selection import GuestRef, covered_by_enabled_jobs, included_vmids

log = logging.getLogger("vzkeep.exporter")

__all__ = ["ApiGet", "Poller", "proxmoxer_get"]


@dataclass
class _Parts:
    """The last good data of each part of a poll."""

    resources: Resources | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    not_backed_up: set[int] | None = None
    clock: ClusterClock | None = None
    listings: dict[tuple[str, str], archives.Listing] = field(default_factory=dict)
    verify: dict[str, tuple[int, bool, int]] = field(default_factory=dict)
    drills: tuple[DrillInfo, ...] = ()
    state: StateInfo | None = None


class Poller:
    """Polls PVE; keeps the task cache, each guest's newest attempt and the last good data of every part.

    ``verify_results`` is a ``vzkeep verify`` results file, ``drill_results`` a ``vzkeep drill`` one;
    ``state_reader`` returns the state bucket metrics (``--state-backend``). ``authid`` (``user@realm!token``)
    goes into the ``pveum`` commands of missing-privilege messages. ``clock`` is wall time, used only for
    ``vzkeep_poll_timestamp_seconds`` (the exporter's own liveness, on the monitoring host's clock).
    """

    def __init__(
        self, get: ApiGet, *, verify_results: Path | None = None, drill_results: Path | None = None,
        state_reader: Callable[[], StateInfo] | None = None, clock: Callable[[], float] = time.time,
        authid: str | None = None,
    ) -> None:
        self.get = get
        self.verify_results = verify_results
        self.drill_results = drill_results
        self.state_reader = state_reader
        self.clock = clock
        self.parts = _Parts()
        self.tasks = TaskTracker()
        self.job_runs = jobs.JobRuns()
        self.privileges = PrivilegeCheck(authid)
        self.unsupported: set[str] = set()
        self.verify_stamp: tuple[int, ...] | None = None  # the verify results store read last
        self._listing_keys: dict[tuple[str, str], tuple[bytes, tuple[int, ...] | None]] = {}
        self._derived_cache: tuple[Any, _Derived] | None = None
        self.snapshot = Snapshot()

    # -- one poll ------------------------------------------------------------------------------------------

    def poll(self) -> Snapshot:
        """Run one poll and return the new snapshot (also kept as ``self.snapshot``); never raises."""
        started = time.monotonic()
        failed: list[str] = []
        run = self._run_part
        run("resources", failed, self._poll_resources)
        if self.parts.resources is not None:
            run("jobs", failed, self._poll_jobs)
            run("not-backed-up", failed, self._poll_not_backed_up)
            run("time", failed, self._poll_clock, optional=True)
            run("permissions", failed, self._poll_permissions, optional=True)
        if self.verify_results is not None:
            run("verify", failed, self._read_verify_results)
        if self.parts.resources is not None:
            for node in self.parts.resources.online_nodes:
                run(f"tasks/{node}", failed, lambda n=node: self._poll_tasks(n))
            for storage, node in self.parts.resources.content_targets():
                run(f"content/{storage}/{node}", failed, lambda s=storage, n=node: self._poll_content(s, n))
        if self.drill_results is not None:
            run("drills", failed, self._read_drill_results)
        if self.state_reader is not None:
            run("state", failed, self._read_state)
        self.snapshot = self._build(failed, time.monotonic() - started)
        return self.snapshot

    def _run_part(self, part: str, failed: list[str], action: Callable[[], None], optional: bool = False) -> None:
        try:
            action()
        except Exception as exc:  # a bad answer or an outage must not stop the exporter
            if optional and http_status(exc) == NOT_IMPLEMENTED:
                if part not in self.unsupported:
                    self.unsupported.add(part)
                    log.warning("PVE does not serve the %s call (%s); going on without it", part, describe(exc))
                return
            failed.append(part)
            log.warning("poll part %s failed, keeping its last data: %s", part, describe(exc))

    # -- parts ---------------------------------------------------------------------------------------------

    def _poll_resources(self) -> None:
        body = raw_body(self.get, "cluster/resources")
        self.parts.resources = Resources.parse(self.get("cluster/resources")) if body is None else \
            Resources.parse_body(body)

    def _poll_jobs(self) -> None:
        self.parts.jobs = jobs.parse_jobs(self.get("cluster/backup"))

    def _poll_not_backed_up(self) -> None:
        answer = self.get("cluster/backup-info/not-backed-up")
        self.parts.not_backed_up = {int(entry["vmid"]) for entry in answer}

    def _poll_clock(self) -> None:
        assert self.parts.resources is not None
        self.parts.clock = read_clock(self.get, self.parts.resources.online_nodes)

    def _poll_permissions(self) -> None:
        res = self.parts.resources
        assert res is not None
        self.privileges.check(
            self.get, nodes=res.online_nodes, storages=sorted({s.storage for s in res.backup_storages}),
            vmids=[g.vmid for g in res.guests], pools=res.pools,
        )

    def _poll_tasks(self, node: str) -> None:
        jobs_now = self.parts.jobs
        self.tasks.poll_node(self.get, node, lambda params: jobs.match_job(params, jobs_now),
                             self.job_runs.record)

    def _poll_content(self, storage: str, node: str) -> None:
        path, what = f"nodes/{node}/storage/{storage}/content", f"storage {storage} content"
        body = raw_body(self.get, path, content="backup")
        if body is None:
            listing = archives.summarize(self.get(path, content="backup"), self.parts.verify, what)
        else:
            # Storage content changes when backups are made or pruned: most polls get the same bytes.
            key = (hashlib.blake2b(body, digest_size=16).digest(), self.verify_stamp)
            cached = self._listing_keys.get((storage, node))
            if cached == key and (storage, node) in self.parts.listings:
                return
            listing = archives.summarize_body(body, self.parts.verify, what)
            self._listing_keys[(storage, node)] = key
        self.parts.listings[(storage, node)] = listing

    def _read_verify_results(self) -> None:
        assert self.verify_results is not None
        stamp = results.file_stamp(self.verify_results)
        if stamp != self.verify_stamp or stamp is None:
            self.parts.verify = results.read_verify_results(self.verify_results)
            self.verify_stamp = stamp

    def _read_drill_results(self) -> None:
        assert self.drill_results is not None
        self.parts.drills = results.read_drill_results(self.drill_results)

    def _read_state(self) -> None:
        assert self.state_reader is not None
        self.parts.state = self.state_reader()

    # -- the snapshot --------------------------------------------------------------------------------------

    def _build(self, failed: list[str], duration: float) -> Snapshot:
        previous = self.snapshot
        res = self.parts.resources
        ok = not failed and res is not None
        if res is None:
            return replace(previous, up=False, poll_duration=duration, poll_errors=previous.poll_errors + 1,
                           failed_parts=tuple(failed))
        derived = self._derived(res)
        return Snapshot(
            guests=res.guests,
            covered=derived.covered,
            archives=derived.archives,
            attempts=tuple(a for _, a in sorted(self.tasks.attempts.items())),
            jobs=tuple(self.job_runs.infos(self.parts.jobs, derived.selected, derived.listed)),
            storages=tuple(res.storage_usage()),
            verifications=derived.verifications,
            drills=self.parts.drills,
            state=self.parts.state,
            clock=self.parts.clock,
            missing_privileges=self.privileges.missing,
            up=ok,
            poll_timestamp=self.clock() if ok else previous.poll_timestamp,
            poll_duration=duration,
            poll_errors=previous.poll_errors + (0 if ok else 1),
            failed_parts=tuple(failed),
        )

    def _derived(self, res: Resources) -> _Derived:
        """Coverage, archive and verification series: recomputed only when guests, jobs or listings changed
        (most polls: nothing did), so a steady poll costs little whatever the number of archives."""
        key = (res.guests, [sorted(j.items()) for j in self.parts.jobs], self.parts.not_backed_up,
               sorted((k, id(v)) for k, v in self.parts.listings.items()))
        if self._derived_cache is None or self._derived_cache[0] != key:
            self._derived_cache = (key, _derive(res.guests, self.parts.jobs, self.parts.not_backed_up or set(),
                                                self.parts.listings))
        return self._derived_cache[1]


@dataclass(frozen=True)
class _Derived:
    covered: Mapping[int, bool]
    archives: tuple[ArchiveStats, ...]
    verifications: tuple[Verification, ...]
    selected: Mapping[str, int]
    listed: Mapping[str, int]


def _derive(guests: tuple[GuestInfo, ...], job_list: list[dict[str, Any]], not_backed_up: set[int],
            listings: Mapping[tuple[str, str], archives.Listing]) -> _Derived:
    guest_list = list(guests)
    covering = _covering_jobs(guest_list, job_list)
    by_storage: dict[str, list[archives.Listing]] = {}
    for (storage, _node), listing in sorted(listings.items()):
        by_storage.setdefault(storage, []).append(listing)
    per_storage = {storage: archives.merge_nodes(found) for storage, found in by_storage.items()}
    selected, listed = _job_guests(guest_list, job_list, per_storage)
    return _Derived(
        covered={g.vmid: bool(covering[g.vmid]) and g.vmid not in not_backed_up for g in guest_list},
        archives=tuple(_archive_stats(guest_list, per_storage, covering, job_list)),
        verifications=tuple(_verifications(guest_list, per_storage)),
        selected=selected, listed=listed,
    )


def _covering_jobs(guests: list[GuestInfo], job_list: list[dict[str, Any]]) -> dict[int, list[str]]:
    refs = [GuestRef(g.vmid, g.node, g.env or None, g.type, g.name) for g in guests]
    try:
        return covered_by_enabled_jobs(job_list, refs)
    except ValueError as exc:  # a job PVE would reject: count its guests as not covered, say why
        log.warning("cannot evaluate backup job selection: %s", exc)
        return {g.vmid: [] for g in guests}


def _job_guests(
    guests: list[GuestInfo], job_list: list[dict[str, Any]],
    per_storage: Mapping[str, Mapping[int, archives.GuestArchives]],
) -> tuple[dict[str, int], dict[str, int]]:
    """job -> guests it selects, and job -> of those, guests with an archive listed on the job's storage."""
    refs = [GuestRef(g.vmid, g.node, g.env or None, g.type, g.name) for g in guests]
    selected: dict[str, int] = {}
    listed: dict[str, int] = {}
    for job in job_list:
        job_id = str(job["id"])
        try:
            vmids = included_vmids(job, refs)
        except ValueError:
            continue  # already reported by _covering_jobs
        on_storage = per_storage.get(str(job.get("storage") or "local"), {})
        selected[job_id] = len(vmids)
        listed[job_id] = sum(1 for v in vmids if v in on_storage)
    return selected, listed


def _archive_stats(guests: list[GuestInfo], per_storage: Mapping[str, Mapping[int, archives.GuestArchives]],
                   covering: Mapping[int, list[str]], job_list: list[dict[str, Any]]) -> list[ArchiveStats]:
    env = {g.vmid: g.env for g in guests}
    stats: dict[tuple[int, str], ArchiveStats] = {}
    for storage, per_guest in per_storage.items():
        for vmid, a in per_guest.items():
            stats[(vmid, storage)] = ArchiveStats(env.get(vmid, ""), vmid, storage, a.last_ctime, a.last_size,
                                                  a.count, a.total_bytes)
    # A covered guest with no archive on its job's storage gets a 0 ("never") series: the timestamp series then
    # exists for every covered guest, and an alert never resolves because a series vanished.
    job_storage = {str(j["id"]): str(j.get("storage") or "local") for j in job_list}
    for vmid, job_ids in covering.items():
        for job_id in job_ids:
            key = (vmid, job_storage.get(job_id, "local"))
            if key not in stats:
                stats[key] = ArchiveStats(env.get(vmid, ""), vmid, key[1], 0, 0, 0, 0)
    return [stats[k] for k in sorted(stats)]


def _verifications(guests: list[GuestInfo],
                   per_storage: Mapping[str, Mapping[int, archives.GuestArchives]]) -> list[Verification]:
    env = {g.vmid: g.env for g in guests}
    return [Verification(env.get(vmid, ""), vmid, storage, a.verified_at, a.verified_ok)
            for storage, per_guest in sorted(per_storage.items())
            for vmid, a in sorted(per_guest.items()) if a.verified_ctime >= 0]
