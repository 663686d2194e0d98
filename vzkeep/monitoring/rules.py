"""Prometheus alert rules generated from one environment's thresholds.

Two rule files come out of here:
- ``vzkeep-<env>.rules.yml``: every alert about one environment's guests, job and storages, with thresholds
  from that stack's settings (``vzkeep.plan.AlertThresholds``);
- ``vzkeep-global.rules.yml``: alerts that belong to no environment (the exporter itself, guests in no pool).
  It does not depend on the stack, so every stack renders the same file and deploying it twice is harmless.

Metric names are the exporter's contract (docs/exporter.md). The patterns are Prometheus' own advice for batch
jobs (https://prometheus.io/docs/practices/instrumentation/#batch-jobs): a last-status gauge for "failed", the
age of the last success for "missing", plus an ``unless`` join for "never" because an absent series would
make the alert resolve instead of fire; a linear forecast over 24 h for the fill, because backup storage use
is a sawtooth (a nightly write, then pruning) that shorter windows mis-extrapolate.

Ages are measured against the cluster's clock (``CLUSTER_NOW``), not Prometheus' ``time()``: archive and
task times are the nodes', and a monitoring host's clock, or a sandbox's, may differ from them.
Every expression aggregates to the labels the alert needs, so the scrape's ``instance`` does not leak into
alerts and two exporter replicas do not double them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from vzkeep.monitoring import (
    CLUSTER_CLOCK_RATE,
    CLUSTER_NOW,
    EXPORTER_JOB,
    SHIPPED_TIMING,
    DeliveryTiming,
    Thresholds,
)

DEFAULT_RUNBOOK_BASE = "docs/runbooks/alerts.md"
GLOBAL_RULE_FILE = "vzkeep-global.rules.yml"
GLOBAL_ENV_LABEL = "all"  # alerts about the whole installation (exporter down)
NO_POOL_ENV_LABEL = "none"  # guests in no pool belong to no environment
# A time-threshold alert's `for` only absorbs one odd scrape; it adds latency, so keep it short.
STALE_FOR_SECONDS = 5 * 60
# Guests just created outside a pool get a quarter of an hour to be put into one.
NOT_COVERED_FOR_SECONDS = 15 * 60
STORAGE_FULL_FOR_SECONDS = 3600
STORAGE_ABOVE_FOR_SECONDS = 5 * 60
EXPORTER_DOWN_FOR_SECONDS = 2 * 60
EXPORTER_STALE_POLL_SECONDS = 10 * 60
# PVE's scheduler starts jobs on the minute (pve-manager PVE/Service/pvescheduler.pm); a run counts as
# missed once the longest gap of the schedule plus this slack has passed without a start.
MISSED_RUN_SLACK_SECONDS = 15 * 60
RANGE_FOR_PREDICTION = "24h"

GUEST = '{{ or $labels.name "unnamed guest" }} (vmid {{ $labels.vmid }})'
GUEST_LABELS = "name, type, node"


@dataclass(frozen=True)
class AlertRule:
    """One Prometheus alerting rule; several rules may share an alert name (e.g. "stale" and "never")."""

    alert: str
    expr: str
    severity: str
    summary: str
    description: str
    for_seconds: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    age_template: str | None = None  # "2d 3h": how long ago the last good backup was made
    extra_annotations: Mapping[str, str] = field(default_factory=dict)  # e.g. the date of the last backup

    def to_dict(self, runbook_base: str) -> dict[str, Any]:
        annotations = {"summary": self.summary, "description": self.description}
        if self.age_template is not None:
            annotations["age"] = self.age_template
        annotations.update(self.extra_annotations)
        annotations["runbook_url"] = f"{runbook_base}#{self.alert.lower()}"
        rule: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_seconds:
            rule["for"] = prom_duration(self.for_seconds)
        rule["labels"] = {"severity": self.severity, "component": "backup", **self.labels}
        rule["annotations"] = annotations
        return rule


def prom_duration(seconds: int) -> str:
    """Prometheus duration text, e.g. 172800 -> '48h', 5400 -> '90m'."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def human_duration(seconds: int) -> str:
    """Readable threshold for alert texts: '48h', '7d', '24h15m', '15m'."""
    if seconds >= 3 * 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return "".join(parts) or "0s"


def _sel(metric: str, **labels: str) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return f"{metric}{{{inner}}}"


def _with_guest(expr: str, env: str) -> str:
    """Add name/type/node from vzkeep_guest_info; guests that no longer exist drop out (deleted guests keep
    their archives, and an alert about them forever would teach the admin to ignore alerts)."""
    info = f"max by (env, vmid, {GUEST_LABELS}) ({_sel('vzkeep_guest_info', env=env)})"
    return f"({expr}) * on (env, vmid) group_left ({GUEST_LABELS}) {info}"


def _newest_archive_query(storage: str) -> str:
    """Template expression: a printf building the query of the guest's newest archive time on ``storage``."""
    return (
        'printf "max(vzkeep_backup_last_success_timestamp_seconds{env=%q,vmid=%q,storage=%q} > 0)" '
        f'$labels.env $labels.vmid "{storage}"'
    )


def _age_template(storage: str) -> str:
    """Annotation text: how long ago, on the cluster's clock, the guest's newest archive on ``storage`` was
    written ("2d 0h 11m 0s"; never negative: a node's clock a little ahead of another's reads 0s)."""
    query = (
        f'printf "clamp_min({CLUSTER_NOW} - max(vzkeep_backup_last_success_timestamp_seconds'
        f'{{env=%q,vmid=%q,storage=%q}} > 0), 0)" $labels.env $labels.vmid "{storage}"'
    )
    found = "{{ . | first | value | humanizeDuration }}"
    return f"{{{{ with {query} | query }}}}{found}{{{{ else }}}}never{{{{ end }}}}"


def _when_template(query: str) -> str:
    """Annotation text: the date a timestamp query gives, "2026-11-22 01:00 UTC" (templates cannot convert to
    the nodes' zone, so it is UTC and says so); "never" when there is none."""
    found = '{{ (. | first | value | toTime).Format "2006-01-02 15:04 MST" }}'
    return f"{{{{ with {query} | query }}}}{found}{{{{ else }}}}never{{{{ end }}}}"


def _backup_annotations(storage: str) -> dict[str, str]:
    return {"last_backup": _when_template(_newest_archive_query(storage))}


def window_seconds(start: str, end: str) -> int:
    """Length of a local-time window 'HH:MM'..'HH:MM'; an end before the start wraps past midnight."""
    length = (_minutes(end) - _minutes(start)) % (24 * 60)
    return (length or 24 * 60) * 60


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


_SINGLE_START = re.compile(r"^(?:[a-z.,]+\s+)?(\d{1,2}):(\d{2})$")


def allowed_run_seconds(thresholds: Thresholds) -> int:
    """How long a run may take before it leaves the window.

    For a schedule with one start time a day ('02:00', 'mon..fri 21:00') it is the time from that start to
    the window's end; for anything else the whole window (an upper bound: a run that starts later in the
    window and overruns is only caught when it is longer than the window).
    """
    match = _SINGLE_START.match(thresholds.schedule.strip())
    start = thresholds.window_start
    if thresholds.schedule.strip() == "daily":
        start = "00:00"
    elif match:
        start = f"{int(match.group(1)):02d}:{match.group(2)}"
    return window_seconds(start, thresholds.window_end)


# --- environment rules -----------------------------------------------------------------------------------


def backup_failed_rules(t: Thresholds) -> list[AlertRule]:
    failed = f"max by (env, vmid) ({_sel('vzkeep_backup_last_status', env=t.env)}) == 0"
    return [
        AlertRule(
            alert="BackupFailed",
            expr=_with_guest(failed, t.env),
            for_seconds=SHIPPED_TIMING.failed_for_seconds,
            severity="critical",
            summary=f"Backup of {GUEST} in {{{{ $labels.env }}}} failed",
            description=(
                f"The last backup attempt of {GUEST} in environment {{{{ $labels.env }}}} failed. "
                "Read the vzdump task log in PVE (Datacenter, Tasks), fix the cause (guest locked, "
                f"storage full, node down), then back it up now: vzdump {{{{ $labels.vmid }}}} "
                f"--storage {t.storage_id}"
            ),
            age_template=_age_template(t.storage_id),
            extra_annotations=_backup_annotations(t.storage_id),
        )
    ]


def _stale_and_never(
    t: Thresholds, alert: str, storage: str, threshold: int, severity: str, what: str
) -> list[AlertRule]:
    """A guest whose newest archive on ``storage`` is older than ``threshold``, or that has none at all.

    An archive timestamp of 0 means "never" (the exporter may publish it); ``> 0`` keeps it out of the
    age arithmetic. A guest with no archive fires after being covered for the whole threshold, so a guest
    added to the pool today is not reported before its first scheduled run had a chance.
    """
    newest = _sel("vzkeep_backup_last_success_timestamp_seconds", env=t.env, storage=storage)
    stale = f"{CLUSTER_NOW} - max by (env, vmid) ({newest} > 0) > {threshold}"
    never = (
        f"max by (env, vmid) ({_sel('vzkeep_guest_covered', env=t.env)}) == 1 "
        f"unless on (env, vmid) ({newest} > 0)"
    )
    limit = human_duration(threshold)
    action = (
        "Check the backup job and the guest's last attempts, then run: "
        f"vzdump {{{{ $labels.vmid }}}} --storage {storage}"
    )
    return [
        AlertRule(
            alert=alert,
            expr=_with_guest(stale, t.env),
            for_seconds=STALE_FOR_SECONDS,
            severity=severity,
            labels={"reason": "stale"},
            summary=f"No {what} of {GUEST} in {{{{ $labels.env }}}} for more than {limit}",
            description=(
                f"{GUEST} in environment {{{{ $labels.env }}}} has no successful {what} on storage "
                f"{storage} newer than {limit}. {action}"
            ),
            age_template=_age_template(storage),
            extra_annotations=_backup_annotations(storage),
        ),
        AlertRule(
            alert=alert,
            expr=_with_guest(never, t.env),
            for_seconds=threshold,
            severity=severity,
            labels={"reason": "never"},
            summary=f"{GUEST} in {{{{ $labels.env }}}} has no {what} yet",
            description=(
                f"{GUEST} is covered in environment {{{{ $labels.env }}}} but has had no successful {what} "
                f"on storage {storage} for more than {limit}. {action}"
            ),
            age_template=_age_template(storage),
        ),
    ]


def backup_missing_rules(t: Thresholds) -> list[AlertRule]:
    return _stale_and_never(t, "BackupMissing", t.storage_id, t.missing_after_seconds, "critical", "backup")


def guest_not_covered_rules(t: Thresholds) -> list[AlertRule]:
    uncovered = f"max by (env, vmid) ({_sel('vzkeep_guest_covered', env=t.env)}) == 0"
    return [
        AlertRule(
            alert="GuestNotCovered",
            expr=_with_guest(uncovered, t.env),
            for_seconds=NOT_COVERED_FOR_SECONDS,
            severity="warning",
            summary=f"{GUEST} in {{{{ $labels.env }}}} is in no enabled backup job",
            description=(
                f"{GUEST} belongs to environment {{{{ $labels.env }}}} but no enabled backup job selects it, "
                f"so it is not backed up. Check that job {t.job_id} is enabled and selects pool "
                f"{t.env}, and that the guest is not excluded."
            ),
        )
    ]


def _backup_storages(t: Thresholds) -> str:
    storages = [t.storage_id] + ([t.offsite_storage_id] if t.offsite_storage_id else [])
    # PVE storage ids are [a-z][a-z0-9-_.]*; only '.' is special in a regex. PromQL strings need the
    # backslash itself escaped, and reject Python's re.escape output ("\\-" is no PromQL escape).
    return "|".join(s.replace(".", "\\\\.") for s in storages)


def storage_rules(t: Thresholds) -> list[AlertRule]:
    # A shared storage is reported once per node: `max by (storage)` counts it once.
    storages = _backup_storages(t)
    used = f'vzkeep_storage_used_bytes{{storage=~"{storages}"}}'
    size = f'vzkeep_storage_size_bytes{{storage=~"{storages}"}}'
    ratio = t.storage_used_ratio
    horizon = human_duration(t.storage_full_horizon_seconds)
    env_label = {"env": t.env}
    return [
        AlertRule(
            alert="BackupStorageAbove80Percent",
            expr=f"max by (storage) ({used} / {size}) > {ratio}",
            for_seconds=STORAGE_ABOVE_FOR_SECONDS,
            severity="critical",
            labels=env_label,
            summary=(
                f"Backup storage {{{{ $labels.storage }}}} of {t.env} is "
                f"{{{{ $value | humanizePercentage }}}} full"
            ),
            description=(
                f"Backup storage {{{{ $labels.storage }}}} of environment {t.env} is above "
                f"{ratio:.0%} (now {{{{ $value | humanizePercentage }}}}). Lower the retention in "
                f"Pulumi.{t.env}.yaml and run pulumi up, remove backups you no longer need, or grow "
                "the storage."
            ),
        ),
        AlertRule(
            alert="BackupStorageFullSoon",
            expr=_fill_forecast(used, size, t.storage_full_horizon_seconds),
            for_seconds=STORAGE_FULL_FOR_SECONDS,
            severity="warning",
            labels=env_label,
            summary=f"Backup storage {{{{ $labels.storage }}}} of {t.env} will be full within {horizon}",
            description=(
                f"At the growth rate of the last {RANGE_FOR_PREDICTION}, backup storage "
                f"{{{{ $labels.storage }}}} of environment {t.env} fills up within {horizon}. Lower the "
                f"retention in Pulumi.{t.env}.yaml, or grow the storage before backups start failing."
            ),
        ),
    ]


def _fill_forecast(used: str, size: str, horizon_seconds: int) -> str:
    """Used bytes ``horizon_seconds`` of cluster time from now, over the size, at the last day's growth.

    ``predict_linear(used[24h], horizon)`` in the cluster's time: the fitted value now plus the slope per
    second of Prometheus' time divided by how fast the cluster's clock runs (1 on a real cluster, where this is
    exactly ``predict_linear``), so a sandbox that runs a day per minute forecasts days, not minutes.
    """
    window = RANGE_FOR_PREDICTION
    rate = CLUSTER_CLOCK_RATE.format(window=window)
    return (
        f"max by (storage) ((predict_linear({used}[{window}], 0) + deriv({used}[{window}]) / {rate} "
        f"* {horizon_seconds}) / {size}) >= 1"
    )


def backups_not_listed_rules(t: Thresholds) -> list[AlertRule]:
    """A job's runs end OK but its storage lists none of its guests' backups.

    The signature of a token that may not see backup volumes: PVE lists a backup only to a caller with
    ``Datastore.AllocateSpace`` on the storage and ``VM.Backup`` on the guest (pve-storage ``src/PVE/Storage.pm``
    ``check_volume_access``) and answers everyone else with an empty list, not an error. Also fires when the
    job writes somewhere the exporter does not list (a storage without ``backup`` content, or disabled).
    """
    jobs = "|".join(j for j in (t.job_id, t.offsite_job_id) if j)
    ran_ok = f'max by (job) (vzkeep_job_last_status{{job=~"{jobs}"}}) == 1'
    listed_none = f'max by (job) (vzkeep_job_guests_listed{{job=~"{jobs}"}}) == 0'
    has_guests = f'max by (job) (vzkeep_job_guests{{job=~"{jobs}"}}) > 0'
    return [
        AlertRule(
            "BackupsNotListed", f"({ran_ok}) and on (job) ({listed_none}) and on (job) ({has_guests})", "critical",
            for_seconds=STALE_FOR_SECONDS, labels={"env": t.env},
            summary=f"Backup job {{{{ $labels.job }}}} ({t.env}) reports success, but no backup of its guests "
                    "is listed",
            description=(
                f"The last runs of backup job {{{{ $labels.job }}}} of environment {t.env} ended OK, yet its "
                "storage lists none of its guests' backups. Most often the exporter's API token may not see "
                "backup volumes (PVE hides them from a token without Datastore.AllocateSpace on the storage "
                "and VM.Backup on the guests, PVEAuditor included): look for vzkeep_missing_privilege and "
                "grant the role of docs/exporter.md. Otherwise the job writes to a storage the exporter does "
                "not list. Until this is fixed, every backup age alert of these guests is wrong."
            ),
        )
    ]


def _last_run(t: Thresholds, job: str) -> str:
    return f"max by (job) ({_sel('vzkeep_job_last_run_timestamp_seconds', job=job)} > 0)"


def job_missed_run_rules(t: Thresholds) -> list[AlertRule]:
    """No start within the schedule's longest gap plus slack: a run was missed (node down, scheduler off).

    PVE does not catch up missed runs (``repeat-missed`` stays off, pve-manager ``PVE/Jobs.pm``), so this stays
    true until the next scheduled run happens.
    """
    limit = t.expected_interval_seconds + MISSED_RUN_SLACK_SECONDS
    enabled = f"max by (job) ({_sel('vzkeep_job_enabled', job=t.job_id)}) == 1"
    late = f"({CLUSTER_NOW} - {_last_run(t, t.job_id)} > {limit}) and on (job) ({enabled})"
    never = f"{enabled} unless on (job) {_last_run(t, t.job_id)}"
    text = {
        "summary": f"Backup job {t.job_id} ({t.env}) missed a scheduled run",
        "description": (
            f"Backup job {t.job_id} of environment {t.env} (schedule '{t.schedule}', {t.timezone}) has not "
            f"started for more than {human_duration(limit)}. The node was probably down or the scheduler "
            "stopped; PVE does not catch up missed runs. Check the node, then start the job: Datacenter, "
            f"Backup, {t.job_id}, Run now."
        ),
    }
    last_run = (f'printf "max(vzkeep_job_last_run_timestamp_seconds{{job=%q}} > 0)" "{t.job_id}"')
    return [
        AlertRule("BackupJobMissedRun", late, "critical", labels={"env": t.env, "reason": "late"},
                  extra_annotations={"last_run": _when_template(last_run)}, **text),
        AlertRule(
            "BackupJobMissedRun", never, "critical", for_seconds=limit,
            labels={"env": t.env, "reason": "never"}, **text,
        ),
    ]


def job_overran_rules(t: Thresholds) -> list[AlertRule]:
    """The last run went past the window's end: finished late, or still busy after it.

    A run is still busy while some guest's last attempt is older than the run's start. Run time is measured
    from the start, so the window's end is found without local-time arithmetic in PromQL (no DST trap).
    """
    allowed = allowed_run_seconds(t)
    start = f'max by (env, job) (label_replace({_last_run(t, t.job_id)}, "env", "{t.env}", "", ""))'
    attempts = _sel("vzkeep_backup_last_attempt_timestamp_seconds", env=t.env)
    finished_late = f"max by (env) ({attempts}) - on (env) group_left (job) {start} > {allowed}"
    still_running = (
        f"({CLUSTER_NOW} - {start} > {allowed}) and on (env) "
        f"(min by (env) ({attempts}) - on (env) group_left (job) {start} < 0)"
    )
    text = {
        "summary": f"Backup job {t.job_id} ({t.env}) ran past its window",
        "description": (
            f"The last run of backup job {t.job_id} of environment {t.env} went on after the window "
            f"{t.window_start}-{t.window_end} ({t.timezone}) ended. Backups then compete with daytime load. "
            "Look at which guests took longest in the task log; widen the window, start earlier, or "
            "split the environment."
        ),
    }
    return [
        AlertRule("BackupJobOverranWindow", f"({finished_late}) or ({still_running})", "warning",
                  labels={"env": t.env}, **text),
    ]


def drill_rules(t: Thresholds) -> list[AlertRule]:
    failed = f"max by (env, vmid) ({_sel('vzkeep_drill_last_status', env=t.env)}) == 0"
    newest = _sel("vzkeep_drill_last_success_timestamp_seconds", env=t.env)
    stale = f"{CLUSTER_NOW} - max by (env, vmid) ({newest} > 0) > {t.drill_stale_after_seconds}"
    duration = _sel("vzkeep_drill_duration_seconds", env=t.env)
    slow = f"max by (env, vmid) ({duration}) > {t.drill_max_duration_seconds}"
    limit = human_duration(t.drill_stale_after_seconds)
    max_duration = human_duration(t.drill_max_duration_seconds)
    drill = f"vzkeep drill --stack {t.env} --vmid {{{{ $labels.vmid }}}}"
    return [
        AlertRule(
            "DrillFailed", _with_guest(failed, t.env), "critical",
            summary=f"Restore drill of {GUEST} in {{{{ $labels.env }}}} failed",
            description=(
                f"The last restore drill of {GUEST} in environment {{{{ $labels.env }}}} failed: its backup "
                f"may not be restorable. Read the drill's output, fix the cause, then run: {drill}"
            ),
        ),
        AlertRule(
            "DrillStale", _with_guest(stale, t.env), "warning", for_seconds=STALE_FOR_SECONDS,
            labels={"reason": "stale"},
            summary=f"No successful restore drill of {GUEST} in {{{{ $labels.env }}}} for more than {limit}",
            description=(
                f"{GUEST} in environment {{{{ $labels.env }}}} has not been restored successfully in a drill "
                f"for more than {limit}. Check that the drill timer runs, then run: {drill}"
            ),
        ),
        AlertRule(
            "DrillStale", f"absent({newest})", "warning", for_seconds=t.drill_stale_after_seconds,
            labels={"reason": "never"},
            summary=f"No restore drill has succeeded in {{{{ $labels.env }}}} for more than {limit}",
            description=(
                f"No restore drill has succeeded in environment {{{{ $labels.env }}}} for more than {limit}. "
                f"Check that the drill timer runs, then run: vzkeep drill --stack {t.env}"
            ),
        ),
        AlertRule(
            "DrillSlowerThan15Minutes", _with_guest(slow, t.env), "warning",
            summary=f"Restore drill of {GUEST} in {{{{ $labels.env }}}} took longer than {max_duration}",
            description=(
                f"The last restore drill of {GUEST} in environment {{{{ $labels.env }}}} took "
                f"{{{{ $value | humanizeDuration }}}}, more than the {max_duration} a restore may take. "
                "Look at storage read speed and archive compression, or restore to a faster storage."
            ),
        ),
    ]


def offsite_rules(t: Thresholds) -> list[AlertRule]:
    if not (t.offsite_storage_id and t.offsite_missing_after_seconds):
        return []
    return _stale_and_never(
        t, "OffsiteBackupStale", t.offsite_storage_id, t.offsite_missing_after_seconds, "warning",
        "offsite backup",
    )


def state_rules(t: Thresholds) -> list[AlertRule]:
    enabled = "max without (instance, job) (vzkeep_state_versioning_enabled) == 0"
    return [
        AlertRule(
            "StateBucketVersioningOff", enabled, "critical", for_seconds=STORAGE_ABOVE_FOR_SECONDS,
            labels={"env": t.env},
            summary="Versioning is off on the Pulumi state bucket",
            description=(
                "The S3 bucket that holds the Pulumi state has versioning suspended or off, so an "
                "overwritten or deleted checkpoint cannot be recovered. Turn it back on (pulumi up on the "
                f"{t.env} stack) and check who changed it."
            ),
        )
    ]


def env_rules(t: Thresholds, *, drills: bool, state_bucket: bool) -> list[AlertRule]:
    """Every alert of one environment, in the order a reader of the rule file expects them."""
    rules = [
        *backup_failed_rules(t),
        *backup_missing_rules(t),
        *guest_not_covered_rules(t),
        *storage_rules(t),
        *backups_not_listed_rules(t),
        *job_missed_run_rules(t),
        *job_overran_rules(t),
        *offsite_rules(t),
    ]
    if drills:
        rules += drill_rules(t)
    if state_bucket:
        rules += state_rules(t)
    return rules


# --- rules that belong to no environment ----------------------------------------------------------------


def global_rules(exporter_job: str = EXPORTER_JOB) -> list[AlertRule]:
    """Exporter down, absent or stuck, privileges it lacks, and guests in no pool that no job covers.

    If the exporter stops, its series go stale and every age alert resolves instead of firing, so its absence
    is an alert of its own. Its liveness is measured on Prometheus' own clock: ``vzkeep_poll_timestamp_seconds``
    is the exporter host's wall time of its last complete poll, not a cluster time.
    """
    up = f'up{{job="{exporter_job}"}}'
    down = (
        f"max by (instance) ({up}) == 0 "
        "or max by (instance) (vzkeep_up) == 0 "
        f"or time() - max by (instance) (vzkeep_poll_timestamp_seconds) > {EXPORTER_STALE_POLL_SECONDS} "
        f"or absent({up})"
    )
    unpooled = f"max by (env, vmid) ({_sel('vzkeep_guest_covered', env='')}) == 0"
    return [
        AlertRule(
            "VzkeepExporterDown", down, "critical", for_seconds=EXPORTER_DOWN_FOR_SECONDS,
            labels={"env": GLOBAL_ENV_LABEL},
            summary="The vzkeep exporter is down: backup alerts are blind",
            description=(
                f"Prometheus cannot scrape the vzkeep exporter (job {exporter_job}), it is absent, or it "
                "cannot poll the PVE API. While this lasts, missing or failed backups are NOT reported. "
                "Check the exporter service (journalctl -u vzkeep-exporter) and its PVE API token."
            ),
        ),
        AlertRule(
            "VzkeepExporterMissingPrivilege", "max by (privilege, path) (vzkeep_missing_privilege) == 1",
            "warning", for_seconds=STALE_FOR_SECONDS, labels={"env": GLOBAL_ENV_LABEL},
            summary="The vzkeep exporter lacks PVE privilege {{ $labels.privilege }} on {{ $labels.path }}",
            description=(
                "The exporter's API token lacks {{ $labels.privilege }} on {{ $labels.path }}, so PVE hides "
                "data from it (without Datastore.AllocateSpace and VM.Backup, every backup volume). Grant "
                "the exporter's role there: pveum acl modify {{ $labels.path }} --tokens USER@REALM!TOKEN "
                "--roles VzkeepExporter (docs/exporter.md creates the role). The exporter's log names the token."
            ),
        ),
        AlertRule(
            "GuestNotCovered", _with_guest(unpooled, ""), "warning", for_seconds=NOT_COVERED_FOR_SECONDS,
            labels={"env": NO_POOL_ENV_LABEL},
            summary=f"{GUEST} is in no pool and no backup job",
            description=(
                f"{GUEST} is in no environment's pool and no enabled backup job selects it, so it is not "
                "backed up. Add it to the pool of its environment (prod, lab, monitoring)."
            ),
        ),
    ]


# --- files ----------------------------------------------------------------------------------------------


def rule_file_name(env: str) -> str:
    return f"vzkeep-{env}.rules.yml"


def rule_group(
    name: str, rules: list[AlertRule], *, runbook_base: str = DEFAULT_RUNBOOK_BASE,
    timing: DeliveryTiming = SHIPPED_TIMING,
) -> dict[str, Any]:
    return {
        "name": name,
        # The group interval is the evaluation interval E of the latency budget (vzkeep.monitoring).
        "interval": f"{timing.evaluation_interval_seconds}s",
        "rules": [rule.to_dict(runbook_base) for rule in rules],
    }


def env_rules_document(
    t: Thresholds, *, drills: bool | None = None, state_bucket: bool = False,
    runbook_base: str = DEFAULT_RUNBOOK_BASE, timing: DeliveryTiming = SHIPPED_TIMING,
) -> dict[str, Any]:
    """The env's rule file. Drill alerts are rendered when drills apply (a positive stale threshold) unless
    ``drills`` says otherwise; the state-bucket alert only for the stack that owns the state bucket."""
    if drills is None:
        drills = t.drill_stale_after_seconds > 0
    rules = env_rules(t, drills=drills, state_bucket=state_bucket)
    return {"groups": [rule_group(f"vzkeep-{t.env}", rules, runbook_base=runbook_base, timing=timing)]}


def global_rules_document(
    *, exporter_job: str = EXPORTER_JOB, runbook_base: str = DEFAULT_RUNBOOK_BASE,
    timing: DeliveryTiming = SHIPPED_TIMING,
) -> dict[str, Any]:
    rules = global_rules(exporter_job)
    return {"groups": [rule_group("vzkeep-global", rules, runbook_base=runbook_base, timing=timing)]}


def to_yaml(document: Mapping[str, Any]) -> str:
    header = "# Generated by `vzkeep monitoring render`; edit the stack settings, not this file.\n"
    return header + yaml.safe_dump(dict(document), sort_keys=False, width=1000, allow_unicode=True)


def alert_names(document: Mapping[str, Any]) -> list[str]:
    """Distinct alert names of a rules document, in file order."""
    names = (rule["alert"] for group in document["groups"] for rule in group["rules"])
    return list(dict.fromkeys(names))
