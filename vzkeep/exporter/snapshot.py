"""What one poll knows, as plain data: built by ``Poller.poll``, read by the collectors and the status page.

Everything is immutable and small: one object per guest, per (guest, storage) with archives, per job and per
storage, never one per archive, so the memory of a snapshot grows with guests, not with their backups.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from vzkeep.pve.privileges import MissingPrivilege


@dataclass(frozen=True, slots=True)
class GuestInfo:
    vmid: int
    name: str
    type: str  # qemu | lxc
    node: str
    env: str  # the guest's pool; "" for a guest in no pool


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    """The archives of one guest on one storage; ``last_ctime`` 0 = a covered guest with none yet."""

    env: str
    vmid: int
    storage: str
    last_ctime: int
    last_size: int
    count: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A guest's newest backup attempt, from a vzdump task (its log for multi-guest job runs)."""

    vmid: int
    timestamp: int
    ok: bool
    upid: str
    error: str | None = None  # PVE's own words, e.g. "VM is locked (backup)"


@dataclass(frozen=True, slots=True)
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
    guests: int = 0  # guests the job selects (enabled or not)
    guests_listed: int = 0  # of those, guests with at least one archive listed on the job's storage


@dataclass(frozen=True, slots=True)
class StorageUsage:
    storage: str
    node: str
    size: int
    used: int


@dataclass(frozen=True, slots=True)
class Verification:
    """The verification of the newest verified archive of a guest on a storage (``vzkeep verify``)."""

    env: str
    vmid: int
    storage: str
    verified_at: int
    ok: bool


@dataclass(frozen=True, slots=True)
class DrillInfo:
    """The newest restore drill of a guest (``vzkeep drill`` results store)."""

    env: str
    vmid: int
    ok: bool
    duration_seconds: float
    last_success: float | None


@dataclass(frozen=True, slots=True)
class StateInfo:
    versioning_enabled: bool
    last_write: Mapping[str, float]  # stack -> unix seconds


@dataclass(frozen=True, slots=True)
class ClusterClock:
    """A node's own clock (``GET /nodes/{node}/time``) as read during the poll."""

    node: str
    time: int  # unix seconds, the cluster's "now"
    timezone: str  # the node's zone, e.g. Europe/Paris


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
    clock: ClusterClock | None = None
    missing_privileges: tuple[MissingPrivilege, ...] = ()
    up: bool = False
    poll_timestamp: float = 0.0  # wall time of the last poll where every part succeeded; 0 = never
    poll_duration: float = 0.0
    poll_errors: int = 0  # polls that failed in at least one part, since start
    failed_parts: tuple[str, ...] = ()

    def env_of(self, vmid: int) -> str:
        """The guest's environment (its pool), "" for a guest that is gone or in no pool."""
        return self._envs.get(vmid, "")

    @property
    def _envs(self) -> Mapping[int, str]:
        cached = self.__dict__.get("_env_cache")
        if cached is None:
            cached = {g.vmid: g.env for g in self.guests}
            object.__setattr__(self, "_env_cache", cached)
        return cached


def snapshot_to_json(snapshot: Snapshot) -> str:
    """The snapshot as JSON (debugging aid for ``--once --json``)."""
    data = asdict(snapshot)
    data["covered"] = {str(k): v for k, v in snapshot.covered.items()}
    data["attempts"] = [{**asdict(a), "env": snapshot.env_of(a.vmid)} for a in snapshot.attempts]
    return json.dumps(data, indent=1, sort_keys=True)
