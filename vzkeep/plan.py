"""From one stack's settings to PVE-level specs: pool, storage, jobs, guests and alert thresholds.

The Pulumi components, the sandbox and the offline preview all consume these specs, so a stack
means the same thing everywhere. Names follow DESIGN.md "Names": pool `<env>`, storage
`backup-<env>`, job `vzkeep-<env>`, offsite storage `offsite-<env>`, offsite job `vzkeep-<env>-offsite`.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from vzkeep.config import (
    ConfigError,
    StackSettings,
    TelegramSettings,
    WindowSettings,
    _ScheduleSettings,
)
from vzkeep.pve import calendar
from vzkeep.pve.privileges import EXPORTER_ROLE_PRIVILEGES

DAY = 86_400
# A year of start times is enough to see every weekday, month and DST change of a schedule;
# the event cap keeps `*:*`-style schedules from iterating half a million times.
HORIZON_SECONDS = 366 * DAY
MAX_EVENTS = 5_000
MISSING_FLOOR_SECONDS = 48 * 3600


@dataclass(frozen=True)
class PoolSpec:
    id: str
    comment: str
    create: bool
    members: tuple[int, ...] = ()  # the inventory's guests of this pool: the program puts them in it


@dataclass(frozen=True)
class StorageSpec:
    id: str
    type: str  # "dir" | "nfs"
    path: str  # dir: the path; nfs: the mount point PVE uses (/mnt/pve/<id>)
    nodes: tuple[str, ...]
    shared: bool
    create: bool
    content: tuple[str, ...] = ("backup",)
    server: str | None = None
    export: str | None = None
    options: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """A PVE backup job (jobs.cfg `vzdump:` section, pve-manager `PVE/API2/Backup.pm`)."""

    id: str
    schedule: str
    pool: str
    storage: str
    mode: str
    compress: str
    prune_backups: dict[str, int]
    notes_template: str
    enabled: bool
    comment: str
    repeat_missed: bool = False  # DESIGN.md: a missed run is reported, not replayed at a bad hour
    bwlimit: int | None = None
    timezone: str = "Europe/Paris"

    @property
    def prune_backups_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.prune_backups.items())

    def api_params(self) -> dict[str, str]:
        """The parameters of `POST /cluster/backup` that create this job."""
        params = {
            "id": self.id, "schedule": self.schedule, "pool": self.pool, "storage": self.storage,
            "mode": self.mode, "compress": self.compress, "prune-backups": self.prune_backups_text,
            "notes-template": self.notes_template, "repeat-missed": "1" if self.repeat_missed else "0",
            "enabled": "1" if self.enabled else "0", "comment": self.comment,
        }
        if self.bwlimit is not None:
            params["bwlimit"] = str(self.bwlimit)
        return params

    def next_runs(self, count: int, after: int | None = None) -> list[int]:
        """The next `count` start times (epoch seconds) in the environment's time zone."""
        start = int(time.time()) if after is None else after
        return list(itertools.islice(calendar.parse(self.schedule).iter_after(start, self.timezone), count))


@dataclass(frozen=True)
class GuestSpec:
    vmid: int
    name: str
    type: str
    pool: str
    node: str
    disk_gb: int


@dataclass(frozen=True)
class AlertThresholds:
    """What monitoring needs to judge this environment (DESIGN.md "Monitoring")."""

    env: str
    job_id: str
    storage_id: str
    schedule: str
    timezone: str
    window_start: str
    window_end: str
    expected_interval_seconds: int  # the longest nominal gap between two runs
    missing_after_seconds: int  # max(48 h, 2 × expected interval)
    storage_used_ratio: float = 0.8
    storage_full_horizon_seconds: int = 7 * DAY
    offsite_job_id: str | None = None
    offsite_storage_id: str | None = None
    offsite_missing_after_seconds: int | None = None
    drill_stale_after_seconds: int = 14 * DAY
    drill_max_duration_seconds: int = 900


@dataclass(frozen=True)
class ExporterIdentitySpec:
    """The exporter's own PVE user, role, ACL and API token, declared by the stack that runs the exporter.

    The token is not privilege-separated, so the user's ACL is the token's (pve-access-control
    `PVE/API2/User.pm` generate_token, `privsep`); the user has no password: it only logs in by token.
    """

    user_id: str = "vzkeep-exporter@pve"
    role_id: str = "VzkeepExporter"
    token_name: str = "exporter"
    acl_path: str = "/"
    privileges: tuple[str, ...] = tuple(sorted(EXPORTER_ROLE_PRIVILEGES))  # a stable order: no diff per run

    @property
    def token_id(self) -> str:
        return f"{self.user_id}!{self.token_name}"


@dataclass(frozen=True)
class OffsitePlan:
    storage: StorageSpec
    job: JobSpec


@dataclass(frozen=True)
class StackPlan:
    settings: StackSettings
    pool: PoolSpec
    storage: StorageSpec
    job: JobSpec
    guests: tuple[GuestSpec, ...]
    thresholds: AlertThresholds
    offsite: OffsitePlan | None = None
    telegram: TelegramSettings | None = None
    exporter_identity: ExporterIdentitySpec | None = None
    start_times: tuple[int, ...] = field(default=(), repr=False)

    @property
    def env(self) -> str:
        return self.settings.env


def plan_stack(settings: StackSettings) -> StackPlan:
    """Derive every PVE-level spec of a stack; raises ConfigError when the schedule leaves the window."""
    env, nodes = settings.env, tuple(settings.environment.nodes)
    tz = settings.environment.timezone
    backup = settings.backup
    schedule = backup.pve_schedule(default_at="02:00")
    starts = _check_in_window(settings, "vzkeep:backup", schedule, backup.window, tz)
    job = JobSpec(
        id=f"vzkeep-{env}", schedule=schedule, pool=settings.environment.pool_id, storage=settings.storage_id,
        mode=backup.mode, compress=backup.compress, prune_backups=backup.retention.prune_backups(),
        notes_template=backup.notes_template or default_notes_template(env), enabled=backup.enabled,
        comment=f"vzkeep: backups of environment {env} (managed by Pulumi, stack {settings.stack})",
        bwlimit=backup.bwlimit, timezone=tz,
    )
    storage = StorageSpec(
        id=settings.storage_id, type="dir", path=settings.storage_path, nodes=nodes,
        shared=backup.storage.shared, create=backup.storage.create,
    )
    offsite = _plan_offsite(settings, job, starts)
    interval = longest_gap(schedule)
    thresholds = AlertThresholds(
        env=env, job_id=job.id, storage_id=storage.id, schedule=schedule, timezone=tz,
        window_start=backup.window.start, window_end=backup.window.end,
        expected_interval_seconds=interval, missing_after_seconds=max(MISSING_FLOOR_SECONDS, 2 * interval),
        offsite_job_id=offsite.job.id if offsite else None,
        offsite_storage_id=offsite.storage.id if offsite else None,
        offsite_missing_after_seconds=(max(MISSING_FLOOR_SECONDS, 2 * longest_gap(offsite.job.schedule))
                                       if offsite else None),
        drill_stale_after_seconds=(settings.monitoring.drill_stale_after_days * DAY
                                   if settings.monitoring else 14 * DAY),
    )
    return StackPlan(
        settings=settings,
        pool=PoolSpec(id=settings.environment.pool_id, comment=f"vzkeep environment {env}",
                      create=settings.environment.create_pool,
                      members=tuple(g.vmid for g in settings.inventory
                                    if (g.pool or settings.environment.pool_id) == settings.environment.pool_id)),
        storage=storage, job=job, guests=_guests(settings), thresholds=thresholds, offsite=offsite,
        telegram=settings.monitoring.telegram if settings.monitoring else None, start_times=starts,
        exporter_identity=ExporterIdentitySpec() if settings.monitoring and settings.monitoring.exporter_host else None,
    )


def default_notes_template(env: str) -> str:
    """Names guest and environment on every archive; PVE expands the {{...}} variables."""
    return "{{guestname}} (vmid {{vmid}}, env " + env + ", node {{node}})"


@functools.lru_cache(maxsize=64)
def start_times(schedule: str, tz: str, after: int, horizon: int = HORIZON_SECONDS) -> tuple[int, ...]:
    """Every start time of `schedule` in (after, after + horizon], capped at MAX_EVENTS. Cached: a preview
    asks the same few (schedule, zone) pairs many times (the plan, the window check, the policy pack), and
    a year of events is ~370 calendar steps each time."""
    runs = calendar.parse(schedule).iter_after(after, tz)
    return tuple(itertools.takewhile(lambda t: t <= after + horizon, itertools.islice(runs, MAX_EVENTS)))


def longest_gap(schedule: str) -> int:
    """The longest nominal gap between two runs, evaluated in UTC so DST does not stretch a day to 25 h."""
    times = start_times(schedule, "UTC", _reference_epoch())
    if len(times) < 2:
        return HORIZON_SECONDS
    return max(b - a for a, b in itertools.pairwise(times))


def _check_in_window(settings: StackSettings, key: str, schedule: str, window: WindowSettings,
                     tz: str) -> tuple[int, ...]:
    starts = start_times(schedule, tz, _reference_epoch())
    if not starts:
        raise ConfigError(settings.source, f"{key}.schedule", schedule, "the schedule never runs")
    zone = ZoneInfo(tz)
    for epoch in starts:
        local = datetime.fromtimestamp(epoch, zone)
        if not window.contains(local.hour * 60 + local.minute):
            raise ConfigError(
                settings.source, f"{key}.schedule", schedule,
                f"starts at {local:%a %H:%M} ({tz}), outside the backup window "
                f"{window.start}–{window.end}: every start time must fall inside the window",
            )
    return starts


def _plan_offsite(
    settings: StackSettings, main_job: JobSpec, main_starts: tuple[int, ...]
) -> OffsitePlan | None:
    remote = settings.remote
    if remote is None:
        return None
    env = settings.env
    schedule = _offsite_schedule(remote)
    tz = settings.environment.timezone
    starts = _check_in_window(settings, "vzkeep:remote", schedule, settings.backup.window, tz)
    collisions = sorted(set(starts) & set(main_starts))
    if collisions:
        when = datetime.fromtimestamp(collisions[0], ZoneInfo(tz))
        raise ConfigError(settings.source, "vzkeep:remote.schedule", schedule,
                          f"starts at {when:%a %H:%M} together with the main job {main_job.id!r} "
                          f"({main_job.schedule}): pick another time so the two do not compete")
    storage_id = remote.storage_id or f"offsite-{env}"
    storage = StorageSpec(
        id=storage_id, type="nfs", path=f"/mnt/pve/{storage_id}", nodes=tuple(settings.environment.nodes),
        shared=True, create=True, server=remote.server, export=remote.export, options=remote.options,
    )
    job = JobSpec(
        id=f"vzkeep-{env}-offsite", schedule=schedule, pool=main_job.pool, storage=storage_id,
        mode=main_job.mode, compress=main_job.compress, prune_backups=remote.retention.prune_backups(),
        notes_template=main_job.notes_template, enabled=main_job.enabled,
        comment=f"vzkeep: offsite copies of environment {env} on {remote.server}", timezone=tz,
    )
    return OffsitePlan(storage=storage, job=job)


def _offsite_schedule(remote: _ScheduleSettings) -> str:
    if remote.schedule is None and remote.frequency is None:
        # DESIGN.md "Offsite": weekly by default, on Sunday, an hour after the default daily run.
        return f"{remote.day or 'sun'} {remote.at or '03:00'}"
    return remote.pve_schedule(default_at="03:00")


def _guests(settings: StackSettings) -> tuple[GuestSpec, ...]:
    """Every guest the environment must cover: the inventory, plus the S3 server's container it declares."""
    default_node = settings.environment.nodes[0]
    guests = [
        GuestSpec(vmid=g.vmid, name=g.name, type=g.type, pool=g.pool or settings.environment.pool_id,
                  node=g.node or default_node, disk_gb=g.disk_gb)
        for g in settings.inventory
    ]
    store = settings.object_store
    if store is not None:
        guests.append(GuestSpec(vmid=store.vmid, name=store.name, type="lxc", pool=settings.environment.pool_id,
                                node=store.node or default_node, disk_gb=store.disk_gb))
    return tuple(guests)


def _reference_epoch() -> int:
    """A fixed starting point so a plan does not depend on the day it is computed (2026-01-01 UTC)."""
    return 1_767_225_600
