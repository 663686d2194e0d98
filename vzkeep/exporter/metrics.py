"""A ``Snapshot`` as Prometheus metrics: one collector per concern, in the style of prometheus-pve-exporter.

Metric names and labels are a contract (the alert rules and the dashboard query them, docs/exporter.md lists
them): prefix ``vzkeep_``, base units in names, ``env`` = the guest's pool (or the job's pool), "" for none.
``registry_for`` builds a registry over one snapshot; the HTTP server formats it once per snapshot and format.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vzkeep.exporter.snapshot import Snapshot

GUEST_LABELS = ["env", "vmid"]
ARCHIVE_LABELS = ["env", "vmid", "storage"]


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class ExporterCollector(Collector):
    """The exporter's own health.

    # TYPE vzkeep_up gauge
    vzkeep_up 1.0
    # TYPE vzkeep_poll_errors_total counter
    vzkeep_poll_errors_total 0.0
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield GaugeMetricFamily(
            "vzkeep_up",
            "1 if the last poll of the PVE API succeeded in every part, else 0",
            value=1 if s.up else 0,
        )
        yield GaugeMetricFamily(
            "vzkeep_poll_timestamp_seconds",
            "Unix time of the last poll that succeeded in every part (the age of the data served); 0 = never",
            value=s.poll_timestamp,
        )
        yield GaugeMetricFamily(
            "vzkeep_poll_duration_seconds", "Wall time the last poll took", value=s.poll_duration
        )
        # Pre-initialised at 0, so increase() sees the first failure.
        yield CounterMetricFamily(
            "vzkeep_poll_errors", "Polls that failed in at least one part since start", value=s.poll_errors
        )


class GuestCollector(Collector):
    """Guests and whether an enabled job selects them.

    # TYPE vzkeep_guest_info gauge
    vzkeep_guest_info{env="prod",vmid="100",name="traefik",type="lxc",node="pve1"} 1.0
    # TYPE vzkeep_guest_covered gauge
    vzkeep_guest_covered{env="prod",vmid="100"} 1.0
    """

    INPUTS = ("guests", "covered")  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        info = _gauge(
            "vzkeep_guest_info",
            "A VM or container of the cluster (templates excluded); always 1",
            ["env", "vmid", "name", "type", "node"],
        )
        covered = _gauge(
            "vzkeep_guest_covered",
            "1 if an enabled backup job selects the guest (and PVE lists it as backed up), else 0",
            GUEST_LABELS,
        )
        for guest in self.snapshot.guests:
            info.add_metric([guest.env, str(guest.vmid), guest.name, guest.type, guest.node], 1)
            covered.add_metric(
                [guest.env, str(guest.vmid)], 1 if self.snapshot.covered.get(guest.vmid) else 0
            )
        yield info
        yield covered


class ArchiveCollector(Collector):
    """Archives per guest and storage, from the storage content (the authority on successful backups).

    # TYPE vzkeep_backup_last_success_timestamp_seconds gauge
    vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="100",storage="backup-prod"} 1.7957412e+09
    """

    INPUTS = ("archives",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        last = _gauge(
            "vzkeep_backup_last_success_timestamp_seconds",
            "Creation time of the guest's newest archive on the storage; 0 = none yet",
            ARCHIVE_LABELS,
        )
        size = _gauge(
            "vzkeep_backup_last_size_bytes",
            "Size of the guest's newest archive on the storage",
            ARCHIVE_LABELS,
        )
        # Not `_count`: that suffix belongs to summaries and histograms (promtool check metrics).
        count = _gauge("vzkeep_backup_archives", "Archives of the guest on the storage", ARCHIVE_LABELS)
        env_bytes = _gauge(
            "vzkeep_env_backup_bytes",
            "Bytes of all archives of an environment on a storage",
            ["env", "storage"],
        )
        per_env: dict[tuple[str, str], int] = defaultdict(int)
        for a in self.snapshot.archives:
            labels = [a.env, str(a.vmid), a.storage]
            last.add_metric(labels, a.last_ctime)
            size.add_metric(labels, a.last_size)
            count.add_metric(labels, a.count)
            per_env[(a.env, a.storage)] += a.total_bytes
        for (env, storage), total in sorted(per_env.items()):
            env_bytes.add_metric([env, storage], total)
        yield from (last, size, count, env_bytes)


class AttemptCollector(Collector):
    """Each guest's newest backup attempt, from vzdump tasks (multi-guest job runs through their log).

    # TYPE vzkeep_backup_last_status gauge
    vzkeep_backup_last_status{env="prod",vmid="100"} 1.0
    """

    INPUTS = ("attempts", "guests")  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        when = _gauge(
            "vzkeep_backup_last_attempt_timestamp_seconds",
            "When the guest's newest backup attempt ended (success or failure)",
            GUEST_LABELS,
        )
        status = _gauge(
            "vzkeep_backup_last_status",
            "Result of the guest's newest backup attempt: 1 ok, 0 failed",
            GUEST_LABELS,
        )
        for attempt in self.snapshot.attempts:
            labels = [self.snapshot.env_of(attempt.vmid), str(attempt.vmid)]
            when.add_metric(labels, attempt.timestamp)
            status.add_metric(labels, 1 if attempt.ok else 0)
        yield when
        yield status


class JobCollector(Collector):
    """Backup jobs (``/cluster/backup``) and their runs.

    # TYPE vzkeep_job_info gauge
    vzkeep_job_info{job="vzkeep-prod",env="prod",schedule="02:00",storage="backup-prod"} 1.0
    """

    INPUTS = ("jobs",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        info = _gauge(
            "vzkeep_job_info", "A vzdump backup job; always 1", ["job", "env", "schedule", "storage"]
        )
        enabled = _gauge("vzkeep_job_enabled", "1 if the job is enabled", ["job"])
        next_run = _gauge("vzkeep_job_next_run_timestamp_seconds", "When PVE will next run the job", ["job"])
        last_run = _gauge(
            "vzkeep_job_last_run_timestamp_seconds", "When the job's newest run started", ["job"]
        )
        last_status = _gauge(
            "vzkeep_job_last_status",
            "1 if the newest finished run ended OK on every node, 0 if one ended with errors",
            ["job"],
        )
        interval = _gauge(
            "vzkeep_job_expected_interval_seconds",
            "Longest gap between two runs of the job's schedule",
            ["job"],
        )
        guests = _gauge("vzkeep_job_guests", "Guests the job selects", ["job"])
        listed = _gauge(
            "vzkeep_job_guests_listed",
            "Guests of the job with at least one archive listed on the job's storage (0 while the job's runs "
            "end OK means the token cannot see the backups, or they are written elsewhere)",
            ["job"],
        )
        for job in self.snapshot.jobs:
            info.add_metric([job.id, job.env, job.schedule, job.storage], 1)
            enabled.add_metric([job.id], 1 if job.enabled else 0)
            _add_optional(next_run, job.id, job.next_run)
            _add_optional(last_run, job.id, job.last_run)
            _add_optional(last_status, job.id, None if job.last_status is None else int(job.last_status))
            _add_optional(interval, job.id, job.expected_interval)
            guests.add_metric([job.id], job.guests)
            listed.add_metric([job.id], job.guests_listed)
        yield from (info, enabled, next_run, last_run, last_status, interval, guests, listed)


def _add_optional(metric: GaugeMetricFamily, job: str, value: float | None) -> None:
    # A job that never ran has no last-run series (the rules' "never" case uses `unless` on its absence).
    if value is not None:
        metric.add_metric([job], value)


class ClusterCollector(Collector):
    """The cluster's own clock (``GET /nodes/{node}/time``): the rules measure ages against it.

    # TYPE vzkeep_cluster_time_seconds gauge
    vzkeep_cluster_time_seconds 1.7957412e+09
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        clock = self.snapshot.clock
        if clock is None:
            return  # a PVE without the call: the rules fall back to Prometheus' own time()
        yield GaugeMetricFamily(
            "vzkeep_cluster_time_seconds",
            "The cluster's clock (Unix time) as read from a node during the last poll; backup ages are measured "
            "against it",
            value=clock.time,
        )
        zone = _gauge("vzkeep_cluster_timezone_info", "The time zone of the node the clock was read from; always 1",
                      ["node", "timezone"])
        zone.add_metric([clock.node, clock.timezone], 1)
        yield zone


class PrivilegeCollector(Collector):
    """Privileges the exporter's token lacks (``GET /access/permissions``): what PVE then hides from it.

    # TYPE vzkeep_missing_privilege gauge
    vzkeep_missing_privilege{privilege="VM.Backup",path="/vms"} 1.0
    """

    INPUTS = ("missing_privileges",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        missing = _gauge(
            "vzkeep_missing_privilege",
            "1 for each PVE privilege the exporter's token lacks on a path it reads (docs/exporter.md has the "
            "role to grant)",
            ["privilege", "path"],
        )
        for m in self.snapshot.missing_privileges:
            missing.add_metric([m.privilege, m.path], 1)
        yield missing


class StorageCollector(Collector):
    """Backup storages per node, from ``/cluster/resources`` (a shared storage appears once per node).

    # TYPE vzkeep_storage_used_bytes gauge
    vzkeep_storage_used_bytes{storage="backup-prod",node="pve1"} 4.2e+09
    """

    INPUTS = ("storages",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        size = _gauge(
            "vzkeep_storage_size_bytes", "Capacity of a storage with backup content", ["storage", "node"]
        )
        used = _gauge(
            "vzkeep_storage_used_bytes", "Used bytes of a storage with backup content", ["storage", "node"]
        )
        for s in self.snapshot.storages:
            size.add_metric([s.storage, s.node], s.size)
            used.add_metric([s.storage, s.node], s.used)
        yield size
        yield used


class VerifyCollector(Collector):
    """Results of ``vzkeep verify`` for each guest's newest verified archive (``--verify-results``)."""

    INPUTS = ("verifications",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        if not self.snapshot.verifications:
            return  # no --verify-results, or nothing verified yet: no empty families
        when = _gauge(
            "vzkeep_backup_verified_timestamp_seconds",
            "When the guest's newest verified archive on the storage was last verified",
            ARCHIVE_LABELS,
        )
        ok = _gauge(
            "vzkeep_backup_verify_ok",
            "1 if that verification found the archive sound, else 0",
            ARCHIVE_LABELS,
        )
        for v in self.snapshot.verifications:
            labels = [v.env, str(v.vmid), v.storage]
            when.add_metric(labels, v.verified_at)
            ok.add_metric(labels, 1 if v.ok else 0)
        yield when
        yield ok


class DrillCollector(Collector):
    """Restore drills (``--drill-results``): did the newest one pass, how long it took, last success."""

    INPUTS = ("drills",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        if not self.snapshot.drills:
            return
        status = _gauge("vzkeep_drill_last_status", "1 if the newest restore drill of the guest succeeded",
                        ["env", "vmid"])
        duration = _gauge("vzkeep_drill_duration_seconds",
                          "How long the newest drill took, from restore start until the guest ran", ["env", "vmid"])
        success = _gauge("vzkeep_drill_last_success_timestamp_seconds",
                         "When the newest successful restore drill of the guest started", ["env", "vmid"])
        for d in self.snapshot.drills:
            labels = [d.env, str(d.vmid)]
            status.add_metric(labels, 1 if d.ok else 0)
            duration.add_metric(labels, d.duration_seconds)
            if d.last_success is not None:
                success.add_metric(labels, d.last_success)
        yield status
        yield duration
        yield success


class StateCollector(Collector):
    """The Pulumi state bucket (``--state-backend``)."""

    INPUTS = ("state",)  # the snapshot fields it reads

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        state = self.snapshot.state
        if state is None:
            return
        yield GaugeMetricFamily(
            "vzkeep_state_versioning_enabled",
            "1 if versioning is Enabled on the state bucket",
            value=int(state.versioning_enabled),
        )
        last = _gauge(
            "vzkeep_state_last_write_timestamp_seconds",
            "When a stack's checkpoint was last written",
            ["stack"],
        )
        for stack, seconds in sorted(state.last_write.items()):
            last.add_metric([stack], seconds)
        yield last


# What changes with every poll: the exporter's own health and the cluster's clock.
LIVE_COLLECTORS: tuple[type[Collector], ...] = (ExporterCollector, ClusterCollector)
# What changes only when the cluster does (a backup, a prune, a new guest): each says what it reads in
# ``INPUTS``, so its output is formatted again only when those changed (``inputs_of``).
DATA_COLLECTORS: tuple[type[Collector], ...] = (
    GuestCollector,
    ArchiveCollector,
    AttemptCollector,
    JobCollector,
    PrivilegeCollector,
    StorageCollector,
    VerifyCollector,
    DrillCollector,
    StateCollector,
)


def inputs_of(kind: type[Collector], snapshot: Snapshot) -> tuple[object, ...]:
    """What a data collector reads: two snapshots with equal inputs give it the same output."""
    return tuple(getattr(snapshot, name) for name in kind.INPUTS)  # type: ignore[attr-defined]


def collectors(snapshot: Snapshot) -> Iterable[Collector]:
    """The collectors a scrape runs: all of them; the optional ones publish nothing without their input."""
    return [kind(snapshot) for kind in (*LIVE_COLLECTORS, *DATA_COLLECTORS)]


def registry_for(snapshot: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors(snapshot):
        registry.register(collector)
    return registry


def render(snapshot: Snapshot) -> bytes:
    """The Prometheus text exposition of a snapshot."""
    return generate_latest(registry_for(snapshot))
