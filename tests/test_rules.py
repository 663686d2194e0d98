"""Alert rules: rendered files pass `promtool check rules`, and `promtool test rules` shows every alert
firing when it should and silent when it should not (one promtool run per rule file).

Scenarios are written by hand from the issue's definitions; times are relative to 0, as promtool starts
`time()` at 0. Annotations are compared in full by promtool, so the texts below are the user-visible contract.
Where the exporter publishes the cluster's clock (`vzkeep_cluster_time_seconds`), ages are measured against it:
the CLOCK_* scenarios run the cluster's clock ten days ahead of Prometheus', and a hundred times faster.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.thresholds import PROD
from tests.helpers.tools import run_tool
from vzkeep.monitoring import rules

RUNBOOK = "https://runbooks.example/vzkeep.md"


def guest(vmid: str, name: str, env: str = "prod", type_: str = "qemu") -> dict[str, str]:
    return {"series": f'vzkeep_guest_info{{env="{env}",vmid="{vmid}",name="{name}",type="{type_}",node="pve1",'
            'instance="127.0.0.1:9111",job="vzkeep"}', "values": "1x3000"}


def series(metric: str, values: str) -> dict[str, str]:
    return {"series": metric, "values": values}


def labels(vmid: str, name: str, severity: str, type_: str = "qemu", **extra: str) -> dict[str, str]:
    return {"severity": severity, "component": "backup", "env": "prod", "vmid": vmid, "name": name,
            "type": type_, "node": "pve1", **extra}


def ann(anchor: str, summary: str, description: str, age: str | None = None, **extra: str) -> dict[str, str]:
    out = {"summary": summary, "description": description, "runbook_url": f"{RUNBOOK}#{anchor}"}
    if age is not None:
        out["age"] = age
    return {**out, **extra}


def utc(seconds: int) -> str:
    """How the annotations write a time: Go's time.Time in UTC, formatted "2006-01-02 15:04 MST"."""
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def alert(lbls: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": lbls, "exp_annotations": annotations}


def check(name: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(alerts)}


def group(input_series: list[dict[str, str]], *checks: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": input_series, "alert_rule_test": list(checks)}


# --- expected texts ---------------------------------------------------------------------------------------

def failed(vmid: str, name: str, age: str, last: int | None = None) -> dict[str, Any]:
    return alert(labels(vmid, name, "critical"), ann(
        "backupfailed",
        f"Backup of {name} (vmid {vmid}) in prod failed",
        f"The last backup attempt of {name} (vmid {vmid}) in environment prod failed. Read the vzdump task log "
        "in PVE (Datacenter, Tasks), fix the cause (guest locked, storage full, node down), then back it up "
        f"now: vzdump {vmid} --storage backup-prod", age, last_backup="never" if last is None else utc(last)))


def missing(vmid: str, name: str, reason: str, age: str, what: str = "backup", storage: str = "backup-prod",
            limit: str = "48h", anchor: str = "backupmissing", severity: str = "critical",
            last: int | None = None) -> dict[str, Any]:
    action = f"Check the backup job and the guest's last attempts, then run: vzdump {vmid} --storage {storage}"
    if reason == "stale":
        summary = f"No {what} of {name} (vmid {vmid}) in prod for more than {limit}"
        description = (f"{name} (vmid {vmid}) in environment prod has no successful {what} on storage {storage} "
                       f"newer than {limit}. {action}")
    else:
        summary = f"{name} (vmid {vmid}) in prod has no {what} yet"
        description = (f"{name} (vmid {vmid}) is covered in environment prod but has had no successful {what} "
                       f"on storage {storage} for more than {limit}. {action}")
    when = {} if reason == "never" else {"last_backup": utc(last) if last is not None else "never"}
    return alert(labels(vmid, name, severity, reason=reason), ann(anchor, summary, description, age, **when))


MISSED_RUN_TEXT = (
    "backupjobmissedrun", "Backup job vzkeep-prod (prod) missed a scheduled run",
    "Backup job vzkeep-prod of environment prod (schedule '02:00', Europe/Vienna) has not started for more than "
    "24h15m. The node was probably down or the scheduler stopped; PVE does not catch up missed runs. Check the "
    "node, then start the job: Datacenter, Backup, vzkeep-prod, Run now.")
MISSED_RUN = ann(*MISSED_RUN_TEXT)
OVERRAN = alert(
    {"severity": "warning", "component": "backup", "env": "prod", "job": "vzkeep-prod"},
    ann("backupjoboverranwindow", "Backup job vzkeep-prod (prod) ran past its window",
        "The last run of backup job vzkeep-prod of environment prod went on after the window 01:00-05:00 "
        "(Europe/Vienna) ended. Backups then compete with daytime load. Look at which guests took longest in "
        "the task log; widen the window, start earlier, or split the environment."))


def storage_above(storage: str, percent: str) -> dict[str, Any]:
    return alert(
        {"severity": "critical", "component": "backup", "env": "prod", "storage": storage},
        ann("backupstorageabove80percent", f"Backup storage {storage} of prod is {percent} full",
            f"Backup storage {storage} of environment prod is above 80% (now {percent}). Lower the retention in "
            "Pulumi.prod.yaml and run pulumi up, remove backups you no longer need, or grow the storage."))


def drill(anchor: str, vmid: str, name: str, severity: str, summary: str, description: str,
          **extra: str) -> dict[str, Any]:
    return alert(labels(vmid, name, severity, **extra), ann(anchor, summary, description))


# --- scenarios: one promtool test group each --------------------------------------------------------------

LAB_NOISE = [  # the same trouble in another environment must never alert in prod's file
    guest("201", "lab-web", env="lab"),
    series('vzkeep_backup_last_status{env="lab",vmid="201"}', "0x3000"),
    series('vzkeep_guest_covered{env="lab",vmid="201"}', "0x3000"),
    series('vzkeep_drill_last_status{env="lab",vmid="201"}', "0x3000"),
]

BACKUP_FAILED = group(
    [guest("101", "web"), guest("102", "db", type_="lxc"), *LAB_NOISE,
     series('vzkeep_backup_last_status{env="prod",vmid="101"}', "1x9 0x30"),
     series('vzkeep_backup_last_status{env="prod",vmid="102"}', "1x30"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="101",storage="backup-prod"}', "60x30"),
     # a guest that never succeeded and now failed: the age says "never"
     guest("103", "new"), series('vzkeep_backup_last_status{env="prod",vmid="103"}', "_ _ _ _ _ _ _ _ _ _ 0x30")],
    check("BackupFailed", "5m"),
    # status is 0 from 10m; `for` is 0, so the evaluation that first sees it fires
    check("BackupFailed", "10m", failed("101", "web", "9m 0s", last=60), failed("103", "new", "never")),
)

BACKUP_MISSING = group(
    [guest("101", "web"), guest("102", "db"), guest("103", "app"), guest("104", "mail"), *LAB_NOISE,
     *(series(f'vzkeep_guest_covered{{env="prod",vmid="{v}"}}', "1x3000") for v in ("101", "102", "103", "104")),
     # 101: last success at 1h; 102: never (no series); 103: fresh every minute; 104: exporter says 0 = never
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="101",storage="backup-prod"}', "3600x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="103",storage="backup-prod"}', "0+60x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="104",storage="backup-prod"}', "0x3000"),
     # a fresh copy on another storage does not count for the env's backup storage
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="102",storage="offsite-prod"}', "0+60x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="lab",vmid="201",storage="backup-lab"}', "60x3000")],
    check("BackupMissing", "47h55m"),
    check("BackupMissing", "48h",
          missing("102", "db", "never", "never"), missing("104", "mail", "never", "never")),
    # 101 crosses 48h after its 1h success at 49h; `for: 5m` then holds it pending until 49h10m
    check("BackupMissing", "49h05m",
          missing("102", "db", "never", "never"), missing("104", "mail", "never", "never")),
    check("BackupMissing", "49h10m",
          missing("101", "web", "stale", "2d 0h 10m 0s", last=3600),
          missing("102", "db", "never", "never"), missing("104", "mail", "never", "never")),
)

# The cluster's clock runs ten days ahead of Prometheus': archive times are on the cluster's scale. Measured
# against Prometheus' time() every age would be negative and nothing would fire; against the cluster's clock
# the alert fires exactly as in BACKUP_MISSING, with a positive age and the archive's own (cluster) date.
AHEAD = 10 * 86400
CLOCK_AHEAD_MISSING = group(
    [guest("101", "web"), guest("103", "app"),
     *(series(f'vzkeep_guest_covered{{env="prod",vmid="{v}"}}', "1x3000") for v in ("101", "103")),
     series('vzkeep_cluster_time_seconds{instance="127.0.0.1:9111",job="vzkeep"}', f"{AHEAD}+60x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="101",storage="backup-prod"}',
            f"{AHEAD + 3600}x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="103",storage="backup-prod"}',
            f"{AHEAD}+60x3000")],
    check("BackupMissing", "49h05m"),
    check("BackupMissing", "49h10m", missing("101", "web", "stale", "2d 0h 10m 0s", last=AHEAD + 3600)),
)

NOT_COVERED = group(
    [guest("105", "scratch"), guest("106", "web"), *LAB_NOISE,
     series('vzkeep_guest_covered{env="prod",vmid="105"}', "0x30"),
     series('vzkeep_guest_covered{env="prod",vmid="106"}', "1x30")],
    check("GuestNotCovered", "10m"),
    check("GuestNotCovered", "15m", alert(labels("105", "scratch", "warning"), ann(
        "guestnotcovered", "scratch (vmid 105) in prod is in no enabled backup job",
        "scratch (vmid 105) belongs to environment prod but no enabled backup job selects it, so it is not "
        "backed up. Check that job vzkeep-prod is enabled and selects pool prod, and that the guest is not "
        "excluded."))),
)

STORAGE_ABOVE = group(
    [  # backup-prod is shared: reported by both nodes, counted once
     *(series(f'vzkeep_storage_used_bytes{{storage="backup-prod",node="{n}"}}', "700x5 850x20")
       for n in ("pve1", "pve2")),
     *(series(f'vzkeep_storage_size_bytes{{storage="backup-prod",node="{n}"}}', "1000x25") for n in ("pve1", "pve2")),
     series('vzkeep_storage_used_bytes{storage="offsite-prod",node="pve1"}', "900x25"),
     series('vzkeep_storage_size_bytes{storage="offsite-prod",node="pve1"}', "1000x25"),
     # a non-backup storage over 80% is someone else's alert
     series('vzkeep_storage_used_bytes{storage="local",node="pve1"}', "950x25"),
     series('vzkeep_storage_size_bytes{storage="local",node="pve1"}', "1000x25")],
    check("BackupStorageAbove80Percent", "0m"),
    check("BackupStorageAbove80Percent", "5m", storage_above("offsite-prod", "90%")),
    # backup-prod is at 85% from 6m: pending at 10m, firing at 15m
    check("BackupStorageAbove80Percent", "10m", storage_above("offsite-prod", "90%")),
    check("BackupStorageAbove80Percent", "15m",
          storage_above("backup-prod", "85%"), storage_above("offsite-prod", "90%")),
)

FULL_SOON = alert(
    {"severity": "warning", "component": "backup", "env": "prod", "storage": "backup-prod"},
    ann("backupstoragefullsoon", "Backup storage backup-prod of prod will be full within 7d",
        "At the growth rate of the last 24h, backup storage backup-prod of environment prod fills up within 7d. "
        "Lower the retention in Pulumi.prod.yaml, or grow the storage before backups start failing."))
STORAGE_FULL_SOON = group(
    [  # backup-prod grows 1 byte/min: 100 + 10080 in 7 days > 10000; offsite grows too slowly; local fills fast
     series('vzkeep_storage_used_bytes{storage="backup-prod",node="pve1"}', "100+1x200"),
     series('vzkeep_storage_size_bytes{storage="backup-prod",node="pve1"}', "10000x200"),
     series('vzkeep_storage_used_bytes{storage="offsite-prod",node="pve1"}', "100+0.1x200"),
     series('vzkeep_storage_size_bytes{storage="offsite-prod",node="pve1"}', "10000x200"),
     series('vzkeep_storage_used_bytes{storage="local",node="pve1"}', "100+5x200"),
     series('vzkeep_storage_size_bytes{storage="local",node="pve1"}', "10000x200")],
    check("BackupStorageFullSoon", "1h"),  # true from 5m (two samples), `for: 1h` → firing at 1h05m
    check("BackupStorageFullSoon", "1h05m", FULL_SOON),
    check("BackupStorageFullSoon", "3h", FULL_SOON),
)
# A sandbox whose clock runs 100x: a minute of Prometheus' time is 100 minutes of the cluster's. The horizon
# (7 days) is the cluster's: backup-prod grows 1,000 bytes per minute of Prometheus' time = 10 per cluster
# minute, full within 7 cluster days; offsite-prod grows 10 per minute = 0.1 per cluster minute, which
# predict_linear over Prometheus' time alone would call full (100 + 10 x 10080 > 10000).
CLOCK_FAST_FULL_SOON = group(
    [series('vzkeep_cluster_time_seconds{instance="127.0.0.1:9111",job="vzkeep"}', f"{AHEAD}+6000x200"),
     series('vzkeep_storage_used_bytes{storage="backup-prod",node="pve1"}', "100+1000x200"),
     series('vzkeep_storage_size_bytes{storage="backup-prod",node="pve1"}', "100000x200"),
     series('vzkeep_storage_used_bytes{storage="offsite-prod",node="pve1"}', "100+10x200"),
     series('vzkeep_storage_size_bytes{storage="offsite-prod",node="pve1"}', "10000x200")],
    check("BackupStorageFullSoon", "1h05m", FULL_SOON),
)

JOB_LATE = group(
    [series('vzkeep_job_enabled{job="vzkeep-prod"}', "1x1500"),
     series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "300x1500"),
     # lab's job is as late, and a disabled prod-like job is never "missed"
     series('vzkeep_job_enabled{job="vzkeep-lab"}', "1x1500"),
     series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-lab"}', "60x1500")],
    # last start at 5m, longest gap 24h + 15m slack: late after 24h20m
    check("BackupJobMissedRun", "24h20m"),
    check("BackupJobMissedRun", "24h25m", alert(
        {"severity": "critical", "component": "backup", "env": "prod", "job": "vzkeep-prod", "reason": "late"},
        ann(*MISSED_RUN_TEXT, last_run=utc(300)))),
)
CLOCK_AHEAD_JOB_LATE = group(
    [series('vzkeep_cluster_time_seconds{instance="127.0.0.1:9111",job="vzkeep"}', f"{AHEAD}+60x1500"),
     series('vzkeep_job_enabled{job="vzkeep-prod"}', "1x1500"),
     series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', f"{AHEAD + 300}x1500")],
    check("BackupJobMissedRun", "24h20m"),
    check("BackupJobMissedRun", "24h25m", alert(
        {"severity": "critical", "component": "backup", "env": "prod", "job": "vzkeep-prod", "reason": "late"},
        ann(*MISSED_RUN_TEXT, last_run=utc(AHEAD + 300)))),
)
JOB_DISABLED = group(
    [series('vzkeep_job_enabled{job="vzkeep-prod"}', "0x1500"),
     series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "60x1500")],
    check("BackupJobMissedRun", "25h"),
)
JOB_NEVER_RAN = group(
    [series('vzkeep_job_enabled{job="vzkeep-prod"}', "1x1500"),
     series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "0x1500")],
    check("BackupJobMissedRun", "24h10m"),
    check("BackupJobMissedRun", "24h15m", alert(
        {"severity": "critical", "component": "backup", "env": "prod", "job": "vzkeep-prod", "reason": "never"},
        MISSED_RUN)),
)

# Schedule 02:00, window 01:00-05:00: a run may take 3 h from its start. The run starts at t=600.
JOB_FINISHED_LATE = group(
    [series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "600x20"),
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="101"}', "700x20"),
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="102"}', "11401x20")],
    check("BackupJobOverranWindow", "5m", OVERRAN),
)
JOB_FINISHED_IN_TIME = group(
    [series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "600x200"),
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="101"}', "700x200"),
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="102"}', "11400x200")],
    check("BackupJobOverranWindow", "3h15m"),
)
JOB_STILL_RUNNING = group(
    [series('vzkeep_job_last_run_timestamp_seconds{job="vzkeep-prod"}', "600x200"),
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="101"}', "700x200"),
     # 102 was last attempted in the previous run: this run has not reached it yet
     series('vzkeep_backup_last_attempt_timestamp_seconds{env="prod",vmid="102"}', "100x200")],
    check("BackupJobOverranWindow", "3h10m"),
    check("BackupJobOverranWindow", "3h15m", OVERRAN),
)

OFFSITE = group(
    [guest("101", "web"), guest("102", "db"), guest("103", "app"),
     *(series(f'vzkeep_guest_covered{{env="prod",vmid="{v}"}}', "1x3000") for v in ("101", "102", "103")),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="101",storage="offsite-prod"}', "60x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="102",storage="backup-prod"}', "0+60x3000"),
     series('vzkeep_backup_last_success_timestamp_seconds{env="prod",vmid="103",storage="offsite-prod"}', "0+60x3000")],
    check("OffsiteBackupStale", "47h55m"),
    check("OffsiteBackupStale", "48h05m", missing(
        "102", "db", "never", "never", what="offsite backup", storage="offsite-prod",
        anchor="offsitebackupstale", severity="warning")),
    check("OffsiteBackupStale", "48h10m",
          missing("101", "web", "stale", "2d 0h 9m 0s", what="offsite backup", storage="offsite-prod",
                  anchor="offsitebackupstale", severity="warning", last=60),
          missing("102", "db", "never", "never", what="offsite backup", storage="offsite-prod",
                  anchor="offsitebackupstale", severity="warning")),
)

DRILL_TEXT = "vzkeep drill --stack prod --vmid"
DRILLS = group(
    [guest("101", "web"), guest("102", "db"), guest("103", "app"), *LAB_NOISE,
     series('vzkeep_drill_last_status{env="prod",vmid="101"}', "1x9 0x3000"),
     series('vzkeep_drill_last_status{env="prod",vmid="102"}', "1x3000"),
     series('vzkeep_drill_duration_seconds{env="prod",vmid="101"}', "600x3000"),
     series('vzkeep_drill_duration_seconds{env="prod",vmid="102"}', "1200x3000"),
     series('vzkeep_drill_last_success_timestamp_seconds{env="prod",vmid="101"}', "60x3000"),
     series('vzkeep_drill_last_success_timestamp_seconds{env="prod",vmid="102"}', "0+60x3000")],
    check("DrillFailed", "5m"),
    check("DrillFailed", "10m", drill(
        "drillfailed", "101", "web", "critical", "Restore drill of web (vmid 101) in prod failed",
        "The last restore drill of web (vmid 101) in environment prod failed: its backup may not be restorable. "
        f"Read the drill's output, fix the cause, then run: {DRILL_TEXT} 101")),
    check("DrillSlowerThan15Minutes", "5m", drill(
        "drillslowerthan15minutes", "102", "db", "warning",
        "Restore drill of db (vmid 102) in prod took longer than 15m",
        "The last restore drill of db (vmid 102) in environment prod took 20m 0s, more than the 15m a restore may "
        "take. Look at storage read speed and archive compression, or restore to a faster storage.")),
    check("DrillStale", "48h05m"),
    check("DrillStale", "48h10m", drill(
        "drillstale", "101", "web", "warning",
        "No successful restore drill of web (vmid 101) in prod for more than 48h",
        "web (vmid 101) in environment prod has not been restored successfully in a drill for more than 48h. Check "
        f"that the drill timer runs, then run: {DRILL_TEXT} 101", reason="stale")),
)
DRILLS_NEVER_RAN = group(
    [guest("101", "web"), *LAB_NOISE,
     series('vzkeep_drill_last_success_timestamp_seconds{env="lab",vmid="201"}', "0+60x3000"),
     series('vzkeep_drill_duration_seconds{env="prod",vmid="101"}', "900x3000")],
    check("DrillSlowerThan15Minutes", "10m"),  # exactly 15 minutes is still in time
    check("DrillStale", "47h55m"),
    check("DrillStale", "48h", alert(
        {"severity": "warning", "component": "backup", "env": "prod", "reason": "never"},
        ann("drillstale", "No restore drill has succeeded in prod for more than 48h",
            "No restore drill has succeeded in environment prod for more than 48h. Check that the drill timer runs, "
            "then run: vzkeep drill --stack prod"))),
)

STATE_VERSIONING = group(
    [series('vzkeep_state_versioning_enabled{bucket="vzkeep-state",instance="127.0.0.1:9111",job="vzkeep"}',
            "1x9 0x20")],
    check("StateBucketVersioningOff", "10m"),
    check("StateBucketVersioningOff", "15m", alert(
        {"severity": "critical", "component": "backup", "env": "prod", "bucket": "vzkeep-state"},
        ann("statebucketversioningoff", "Versioning is off on the Pulumi state bucket",
            "The S3 bucket that holds the Pulumi state has versioning suspended or off, so an overwritten or deleted "
            "checkpoint cannot be recovered. Turn it back on (pulumi up on the prod stack) and check who changed "
            "it."))),
)

NOT_LISTED_TEXT = ann(
    "backupsnotlisted", "Backup job vzkeep-prod (prod) reports success, but no backup of its guests is listed",
    "The last runs of backup job vzkeep-prod of environment prod ended OK, yet its storage lists none of its "
    "guests' backups. Most often the exporter's API token may not see backup volumes (PVE hides them from a token "
    "without Datastore.AllocateSpace on the storage and VM.Backup on the guests, PVEAuditor included): look for "
    "vzkeep_missing_privilege and grant the role of docs/exporter.md. Otherwise the job writes to a storage the "
    "exporter does not list. Until this is fixed, every backup age alert of these guests is wrong.")
BACKUPS_NOT_LISTED = group(
    [  # prod's job ran OK and its 3 guests have no listed backup (a PVEAuditor token); the offsite job is fine;
     # lab's job looks the same but belongs to another file; a failed run is BackupFailed's business
     series('vzkeep_job_last_status{job="vzkeep-prod"}', "1x30"),
     series('vzkeep_job_guests{job="vzkeep-prod"}', "3x30"),
     series('vzkeep_job_guests_listed{job="vzkeep-prod"}', "3x4 0x25"),
     series('vzkeep_job_last_status{job="vzkeep-prod-offsite"}', "1x30"),
     series('vzkeep_job_guests{job="vzkeep-prod-offsite"}', "3x30"),
     series('vzkeep_job_guests_listed{job="vzkeep-prod-offsite"}', "3x30"),
     series('vzkeep_job_last_status{job="vzkeep-lab"}', "1x30"),
     series('vzkeep_job_guests{job="vzkeep-lab"}', "2x30"),
     series('vzkeep_job_guests_listed{job="vzkeep-lab"}', "0x30")],
    check("BackupsNotListed", "5m"),
    check("BackupsNotListed", "10m", alert(
        {"severity": "critical", "component": "backup", "env": "prod", "job": "vzkeep-prod"}, NOT_LISTED_TEXT)),
)
BACKUPS_NOT_LISTED_AFTER_A_FAILURE = group(
    [series('vzkeep_job_last_status{job="vzkeep-prod"}', "0x30"),
     series('vzkeep_job_guests{job="vzkeep-prod"}', "3x30"),
     series('vzkeep_job_guests_listed{job="vzkeep-prod"}', "0x30")],
    check("BackupsNotListed", "20m"),
)

ENV_GROUPS = [
    BACKUP_FAILED, BACKUP_MISSING, CLOCK_AHEAD_MISSING, NOT_COVERED, STORAGE_ABOVE, STORAGE_FULL_SOON,
    CLOCK_FAST_FULL_SOON, BACKUPS_NOT_LISTED, BACKUPS_NOT_LISTED_AFTER_A_FAILURE, JOB_LATE, CLOCK_AHEAD_JOB_LATE,
    JOB_DISABLED, JOB_NEVER_RAN, JOB_FINISHED_LATE, JOB_FINISHED_IN_TIME, JOB_STILL_RUNNING, OFFSITE, DRILLS,
    DRILLS_NEVER_RAN, STATE_VERSIONING,
]

# --- the global file ----------------------------------------------------------------------------------

EXPORTER_DOWN = ann(
    "vzkeepexporterdown", "The vzkeep exporter is down: backup alerts are blind",
    "Prometheus cannot scrape the vzkeep exporter (job vzkeep), it is absent, or it cannot poll the PVE API. "
    "While this lasts, missing or failed backups are NOT reported. Check the exporter service "
    "(journalctl -u vzkeep-exporter) and its PVE API token.")
EXPORTER_LABELS = {"severity": "critical", "component": "backup", "env": "all"}
INSTANCE = 'instance="127.0.0.1:9111",job="vzkeep"'
GLOBAL_GROUPS = [
    group([series(f"up{{{INSTANCE}}}", "1x5 0x15"), series(f"vzkeep_up{{{INSTANCE}}}", "1x5"),
           series(f"vzkeep_poll_timestamp_seconds{{{INSTANCE}}}", "0+60x5")],  # scrape fails from 6m
          check("VzkeepExporterDown", "10m"),
          check("VzkeepExporterDown", "15m", alert({**EXPORTER_LABELS, "instance": "127.0.0.1:9111"}, EXPORTER_DOWN))),
    group([series('up{job="node"}', "1x10")],  # no vzkeep scrape job at all
          check("VzkeepExporterDown", "0m"),
          check("VzkeepExporterDown", "5m", alert({**EXPORTER_LABELS, "job": "vzkeep"}, EXPORTER_DOWN))),
    group([series(f"up{{{INSTANCE}}}", "1x10"), series(f"vzkeep_up{{{INSTANCE}}}", "1 1 0x10"),
           series(f"vzkeep_poll_timestamp_seconds{{{INSTANCE}}}", "0+60x10")],  # PVE API unreachable from 2m
          check("VzkeepExporterDown", "5m"),
          check("VzkeepExporterDown", "10m", alert({**EXPORTER_LABELS, "instance": "127.0.0.1:9111"}, EXPORTER_DOWN))),
    group([series(f"up{{{INSTANCE}}}", "1x25"), series(f"vzkeep_up{{{INSTANCE}}}", "1x25"),
           series(f"vzkeep_poll_timestamp_seconds{{{INSTANCE}}}", "60x25")],  # polls stopped at 1m: stale > 11m
          check("VzkeepExporterDown", "15m"),
          check("VzkeepExporterDown", "20m", alert({**EXPORTER_LABELS, "instance": "127.0.0.1:9111"}, EXPORTER_DOWN))),
    group([series(f"up{{{INSTANCE}}}", "1x20"), series(f"vzkeep_up{{{INSTANCE}}}", "1x20"),
           series(f"vzkeep_poll_timestamp_seconds{{{INSTANCE}}}", "0+60x20")],  # healthy
          check("VzkeepExporterDown", "20m")),
    group([series(f'vzkeep_missing_privilege{{privilege="VM.Backup",path="/vms",{INSTANCE}}}', "1x20"),
           series(f'vzkeep_missing_privilege{{privilege="Datastore.AllocateSpace",path="/storage",{INSTANCE}}}',
                  "_x10 1x10")],  # granted late (a series appears only while the privilege is missing)
          check("VzkeepExporterMissingPrivilege", "0m"),
          check("VzkeepExporterMissingPrivilege", "5m", alert(
              {"severity": "warning", "component": "backup", "env": "all", "privilege": "VM.Backup", "path": "/vms"},
              ann("vzkeepexportermissingprivilege", "The vzkeep exporter lacks PVE privilege VM.Backup on /vms",
                  "The exporter's API token lacks VM.Backup on /vms, so PVE hides data from it (without "
                  "Datastore.AllocateSpace and VM.Backup, every backup volume). Grant the exporter's role there: "
                  "pveum acl modify /vms --tokens USER@REALM!TOKEN --roles VzkeepExporter (docs/exporter.md "
                  "creates the role). The exporter's log names the token.")))),
    group([series('vzkeep_guest_info{vmid="300",name="scratch",type="qemu",node="pve1"}', "1x20"),
           series('vzkeep_guest_covered{vmid="300"}', "0x20"),
           series('vzkeep_guest_info{vmid="301",name="tmp",type="lxc",node="pve1"}', "1x20"),
           series('vzkeep_guest_covered{vmid="301"}', "1x20"),  # covered by an all-guests job
           guest("105", "pooled"), series('vzkeep_guest_covered{env="prod",vmid="105"}', "0x20")],
          check("GuestNotCovered", "10m"),
          check("GuestNotCovered", "15m", alert(
              {"severity": "warning", "component": "backup", "env": "none", "vmid": "300", "name": "scratch",
               "type": "qemu", "node": "pve1"},
              ann("guestnotcovered", "scratch (vmid 300) is in no pool and no backup job",
                  "scratch (vmid 300) is in no environment's pool and no enabled backup job selects it, so it is "
                  "not backed up. Add it to the pool of its environment (prod, lab, monitoring)."))),
          ),
]


# --- tests ------------------------------------------------------------------------------------------------


def write_rules(tmp_path: Path, document: dict[str, Any], name: str) -> Path:
    path = tmp_path / name
    path.write_text(rules.to_yaml(document))
    return path


def promtool_test(tmp_path: Path, rule_file: Path, groups: list[dict[str, Any]]) -> None:
    # Every eval_time above is a multiple of 5m; evaluating every 5m (not the shipped 30s) keeps the
    # two-day scenarios fast. Series are sampled every minute, inside the 5m lookback.
    spec = {"rule_files": [rule_file.name], "evaluation_interval": "5m", "tests": groups}
    test_file = tmp_path / f"{rule_file.stem}.test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False, width=1000))
    result = run_tool("promtool", "test", "rules", test_file.name, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def covered_names(groups: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    checks = [c for g in groups for c in g["alert_rule_test"]]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    silent = {c["alertname"] for c in checks if not c["exp_alerts"]}
    return firing, silent


def env_document() -> dict[str, Any]:
    return rules.env_rules_document(PROD, state_bucket=True, runbook_base=RUNBOOK)


def test_env_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = write_rules(tmp_path, env_document(), "vzkeep-prod.rules.yml")
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_global_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = write_rules(tmp_path, rules.global_rules_document(runbook_base=RUNBOOK), rules.GLOBAL_RULE_FILE)
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_env_alert_is_tested_firing_and_silent() -> None:
    firing, silent = covered_names(ENV_GROUPS)
    names = set(rules.alert_names(env_document()))
    assert names == {
        "BackupFailed", "BackupMissing", "GuestNotCovered", "BackupStorageAbove80Percent", "BackupStorageFullSoon",
        "BackupsNotListed", "BackupJobMissedRun", "BackupJobOverranWindow", "OffsiteBackupStale", "DrillFailed",
        "DrillStale", "DrillSlowerThan15Minutes", "StateBucketVersioningOff",
    }
    assert names <= firing, f"alerts never shown firing: {names - firing}"
    assert names <= silent, f"alerts never shown silent: {names - silent}"


def test_every_global_alert_is_tested_firing_and_silent() -> None:
    firing, silent = covered_names(GLOBAL_GROUPS)
    names = set(rules.alert_names(rules.global_rules_document()))
    assert names == {"VzkeepExporterDown", "VzkeepExporterMissingPrivilege", "GuestNotCovered"}
    assert names <= firing and names <= silent


def test_env_rules_behave_as_specified(tmp_path: Path) -> None:
    rule_file = write_rules(tmp_path, env_document(), "vzkeep-prod.rules.yml")
    promtool_test(tmp_path, rule_file, ENV_GROUPS)


def test_global_rules_behave_as_specified(tmp_path: Path) -> None:
    rule_file = write_rules(tmp_path, rules.global_rules_document(runbook_base=RUNBOOK), rules.GLOBAL_RULE_FILE)
    promtool_test(tmp_path, rule_file, GLOBAL_GROUPS)


OPTIONAL_CASES = [
    # (description, thresholds, state_bucket, alerts that must be present, alerts that must be absent)
    ("no offsite, no drills, no state", replace(PROD, offsite_storage_id=None, offsite_job_id=None,
     offsite_missing_after_seconds=None, drill_stale_after_seconds=0), False,
     {"BackupFailed", "BackupMissing"},
     {"OffsiteBackupStale", "DrillFailed", "DrillStale", "StateBucketVersioningOff"}),
    ("offsite only", replace(PROD, drill_stale_after_seconds=0), False,
     {"OffsiteBackupStale"}, {"DrillFailed", "StateBucketVersioningOff"}),
    ("drills and state", replace(PROD, offsite_storage_id=None, offsite_missing_after_seconds=None), True,
     {"DrillFailed", "DrillStale", "DrillSlowerThan15Minutes", "StateBucketVersioningOff"}, {"OffsiteBackupStale"}),
]


@pytest.mark.parametrize("case", OPTIONAL_CASES, ids=lambda c: c[0])
def test_optional_alerts_follow_the_inputs(case: tuple[str, Any, bool, set[str], set[str]]) -> None:
    _, thresholds, state_bucket, present, absent = case
    names = set(rules.alert_names(rules.env_rules_document(thresholds, state_bucket=state_bucket)))
    assert present <= names
    assert not (absent & names)


def test_every_alert_carries_severity_env_component_and_runbook() -> None:
    for document in (env_document(), rules.global_rules_document()):
        for rule in document["groups"][0]["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["labels"]["component"] == "backup", rule["alert"]
            # env is either static or comes from the expression's `by (env, ...)`
            assert "env" in rule["labels"] or "env" in rule["expr"], rule["alert"]
            assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())


def test_storage_threshold_follows_the_settings(tmp_path: Path) -> None:
    document = rules.env_rules_document(replace(PROD, storage_used_ratio=0.7))
    above = next(r for r in document["groups"][0]["rules"] if r["alert"] == "BackupStorageAbove80Percent")
    assert above["expr"].endswith("> 0.7")
    assert "above 70%" in above["annotations"]["description"]


@pytest.mark.parametrize(
    ("schedule", "window", "expected"),
    [
        ("02:00", ("01:00", "05:00"), 3 * 3600),  # from the start to the window's end
        ("mon..fri 21:00", ("21:00", "02:00"), 5 * 3600),  # the window wraps past midnight
        ("daily", ("00:00", "06:00"), 6 * 3600),
        ("*/2:00", ("00:00", "06:00"), 6 * 3600),  # several starts a day: the whole window
    ],
    ids=["one start", "wrapping window", "daily keyword", "several starts"],
)
def test_allowed_run_time_is_start_to_window_end(schedule: str, window: tuple[str, str], expected: int) -> None:
    thresholds = replace(PROD, schedule=schedule, window_start=window[0], window_end=window[1])
    assert rules.allowed_run_seconds(thresholds) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(48 * 3600, "48h"), (7 * 86400, "7d"), (87300, "24h15m"), (900, "15m"), (90, "1m30s"), (2 * 86400 + 1, "48h1s")],
)
def test_thresholds_read_like_a_person_wrote_them(seconds: int, text: str) -> None:
    assert rules.human_duration(seconds) == text
