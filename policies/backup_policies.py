"""The vzkeep-backup-policies pack: every guest covered, and the safety rules of a backup strategy.

Policies are plain functions over the resources a stack declares (`StackValidationArgs.resources`,
with their outputs); the PVE rules they apply — which guests a job selects, what prune-backups means, when a calendar
event fires — come from `vzkeep.pve`, the same code the sandbox and the exporter use.
`PolicyPack(...)` starts a gRPC server and blocks, so only `__main__.py` builds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.guest_types import guest_types, membership_types
from vzkeep.config import WindowSettings
from vzkeep.plan import start_times
from vzkeep.pve import retention, selection

PACK_NAME = "vzkeep-backup-policies"

JOB = "proxmoxve:backup/job:Job"
STORAGE_TYPES = ("proxmoxve:storage/directory:Directory", "proxmoxve:storage/nfs:Nfs")
ENVIRONMENT = "vzkeep:backup:BackupEnvironment"
S3_BUCKET = "minio:index/s3Bucket:S3Bucket"
S3_VERSIONING = "minio:index/s3BucketVersioning:S3BucketVersioning"
S3_POLICY = "minio:index/s3BucketPolicy:S3BucketPolicy"
PUBLIC_ACLS = {"public", "public-read", "public-read-write", "public-write"}
# Storages that hold guest disks on a stock PVE install: backups there die with the disks.
SHARED_WITH_DISKS = {"local", "local-lvm", "local-zfs"}
DISK_CONTENTS = {"images", "rootdir"}
REFERENCE_EPOCH = 1_767_225_600  # 2026-01-01: window checks cover one year from here, as vzkeep.plan does


# ---------------------------------------------------------------------------------------------
# Reading the stack


@dataclass(frozen=True)
class Guest:
    """A guest the stack must cover: declared (VM/CT resource) or listed in the inventory."""

    vmid: int | None
    name: str
    type: str
    node: str | None
    pool: str | None
    urn: str | None
    source: str  # "declared" | "inventory"

    def label(self) -> str:
        kind = "VM" if self.type == "qemu" else "CT"
        vmid = self.vmid if self.vmid is not None else "(vmid unknown)"
        return f"{kind} {vmid} '{self.name}'"

    def ref(self) -> selection.GuestRef:
        return selection.GuestRef(vmid=self.vmid or 0, node=self.node or "", pool=self.pool, type=self.type,
                                  name=self.name)


def _of(resources: Iterable[PolicyResource], *types: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types]


def _vmid(value: Any) -> int | None:
    # Protobuf Structs carry numbers as floats (google.protobuf.Value has one number type, a double);
    # job vmids and the framework resources' `resourceId` are strings.
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def environment_facts(resources: Iterable[PolicyResource]) -> Mapping[str, Any]:
    envs = _of(resources, ENVIRONMENT)
    return envs[0].props if envs else {}


def stack_guests(resources: list[PolicyResource]) -> list[Guest]:
    """Declared guests of every pulumi-proxmoxve guest type (pool from the guest or a pool membership
    resource), plus the inventory's guests."""
    memberships = {_vmid(m.props.get("vmId")): m.props.get("poolId") for m in _of(resources, *membership_types())}
    types = guest_types()
    guests = []
    for r in _of(resources, *types):
        kind = types[r.resource_type]
        vmid = _vmid(r.props.get(kind.vmid_prop))
        name = r.props.get("name") or (r.props.get("initialization") or {}).get("hostname") or r.name
        own_pool = r.props.get(kind.pool_prop) if kind.pool_prop else None
        guests.append(Guest(
            vmid=vmid, name=name, type=kind.kind, node=r.props.get("nodeName"),
            pool=own_pool or memberships.get(vmid), urn=r.urn, source="declared",
        ))
    declared = {g.vmid for g in guests}
    for item in environment_facts(resources).get("inventory", []):
        vmid = _vmid(item.get("vmid"))
        if vmid not in declared:
            guests.append(Guest(vmid=vmid, name=item.get("name", ""), type=item.get("type", "qemu"),
                                node=item.get("node"), pool=item.get("pool"), urn=None, source="inventory"))
    return guests


def pve_job(props: Mapping[str, Any]) -> dict[str, Any]:
    """A backup.Job's Pulumi props in the shape of PVE's jobs.cfg options (pve-manager `PVE/API2/Backup.pm`)."""
    job = {
        "id": props.get("resourceId"),
        "vmid": ",".join(str(v) for v in props.get("vmids") or []) or None,
        "all": props.get("all"),
        "exclude": ",".join(str(v) for v in props.get("excludes") or []) or None,
        "pool": props.get("pool"),
        "node": props.get("node"),
        "enabled": props.get("enabled"),
    }
    return {key: value for key, value in job.items() if value is not None}


def _job_id(job: PolicyResource) -> str:
    return str(job.props.get("resourceId") or job.name)


# ---------------------------------------------------------------------------------------------
# every-guest-covered


@dataclass(frozen=True)
class Coverage:
    guests: list[Guest]
    covered: dict[int, list[str]]  # vmid -> enabled jobs selecting it
    unknown: list[Guest]  # vmid not known at preview: coverage cannot be proven

    @property
    def uncovered(self) -> list[Guest]:
        return [g for g in self.guests if g.vmid is not None and not self.covered.get(g.vmid)]

    def summary(self) -> str:
        return f"{len(self.guests) - len(self.uncovered) - len(self.unknown)}/{len(self.guests)} guests covered"


def coverage(resources: list[PolicyResource]) -> Coverage:
    guests = stack_guests(resources)
    jobs = _of(resources, JOB)
    known = [g for g in guests if g.vmid is not None]
    covered: dict[int, list[str]] = {g.vmid: [] for g in known if g.vmid is not None}
    for job in jobs:
        spec = pve_job(job.props)
        if not selection.is_enabled(spec):
            continue
        for vmid in selection.included_vmids(spec, [g.ref() for g in known]):
            covered.setdefault(vmid, []).append(_job_id(job))
    return Coverage(guests=guests, covered=covered, unknown=[g for g in guests if g.vmid is None])


def why_not_covered(guest: Guest, jobs: list[PolicyResource]) -> str:
    """The closest miss, so the message says what to change."""
    ref = [guest.ref()]
    for job in jobs:
        spec = pve_job(job.props)
        if not selection.is_enabled(spec) and selection.included_vmids({**spec, "enabled": True}, ref):
            return f"only the disabled job '{_job_id(job)}' selects it: enable that job"
        anywhere = {key: value for key, value in spec.items() if key != "node"}
        if spec.get("node") and selection.included_vmids(anywhere, ref):
            return (f"job '{_job_id(job)}' runs only on node '{spec['node']}' but the guest is on node "
                    f"'{guest.node}': drop the job's node restriction")
        if spec.get("exclude") and str(guest.vmid) in str(spec["exclude"]).split(","):
            return f"job '{_job_id(job)}' excludes it: remove {guest.vmid} from the job's excludes"
    pools = sorted({str(pve_job(j.props)["pool"]) for j in jobs if pve_job(j.props).get("pool")})
    where = f"pool '{guest.pool}'" if guest.pool else "no pool"
    fix = f"put it in pool {' or '.join(repr(p) for p in pools)}" if pools else "add a backup job that selects it"
    return f"it is in {where}, which no enabled job selects: {fix}"


def _every_guest_covered(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    result = coverage(resources)
    jobs = _of(resources, JOB)
    for guest in result.unknown:
        report(f"{guest.label()} has no VM id at preview, so its backup coverage cannot be proven: set it "
               f"explicitly on the resource (vmId, or resourceId on Vm and cloned.Vm).", guest.urn)
    for guest in result.uncovered:
        where = "declared by this stack" if guest.source == "declared" else "listed in vzkeep:inventory"
        report(f"{guest.label()} ({where}) is selected by no enabled backup job of this stack: "
               f"{why_not_covered(guest, jobs)}.", guest.urn)


every_guest_covered = StackValidationPolicy(
    name="every-guest-covered",
    description="Every VM and container of the environment is selected by an enabled backup job.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_every_guest_covered,
)


# ---------------------------------------------------------------------------------------------
# Per-job rules


def _job_policy(name: str, description: str, level: EnforcementLevel,
                check: Callable[[ResourceValidationArgs, ReportViolation], None],
                schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type == JOB:
            check(args, report)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                    validate=validate, config_schema=schema)


def prune_options(props: Mapping[str, Any]) -> dict[str, int] | None:
    value = props.get("pruneBackups")
    return retention.parse_prune_backups(value) if value else None


def _retention_required(args: ResourceValidationArgs, report: ReportViolation) -> None:
    job = _job_id_of(args)
    try:
        options = prune_options(args.props)
    except ValueError as err:
        report(f"job '{job}' has an invalid pruneBackups: {err}")
        return
    if options is None:
        report(f"job '{job}' sets no pruneBackups, so PVE falls back to the storage's retention or keep-all "
               f"and the storage fills up: set a finite retention such as keep-daily=7.")
    elif options.get("keep-all"):
        report(f"job '{job}' keeps every backup (keep-all): the storage would fill up; set "
               f"keep-last/daily/weekly/monthly counts instead.")


def _job_id_of(args: ResourceValidationArgs) -> str:
    return str(args.props.get("resourceId") or args.name)


retention_required = _job_policy(
    "retention-required", "Every backup job keeps a finite, non-zero number of backups.",
    EnforcementLevel.MANDATORY, _retention_required)


DEFAULT_MINIMUMS = {"prod": {"keep-daily": 7}}
DEFAULT_MINIMUM_TOTAL = 3


def _retention_floor(args: StackValidationArgs, report: ReportViolation) -> None:
    config = args.get_config() or {}
    resources = list(args.resources)
    facts = environment_facts(resources)
    # The floor is about the local history; the environment's offsite copies (its RemoteStore storage,
    # whatever its id) only need a finite retention, which retention-required checks.
    offsite = facts.get("offsiteStorage")
    for job in _of(resources, JOB):
        if offsite and job.props.get("storage") == offsite:
            continue
        for message in _floor_violations(job, config, facts.get("retentionFloor")):
            report(message, job.urn)


def _floor_violations(job: PolicyResource, config: Mapping[str, Any],
                      stack_floor: Mapping[str, int] | None) -> list[str]:
    """`stack_floor` (vzkeep:policy.retentionFloor of the stack) wins over the pack's config and defaults."""
    env = _env_of_job(job.props)
    try:
        options = prune_options(job.props)
    except ValueError:
        options = None
    if not options or options.get("keep-all"):
        return []  # retention-required reports a missing, invalid or unbounded retention
    minimums = stack_floor if stack_floor else config.get("minimums", DEFAULT_MINIMUMS).get(env)
    source = "vzkeep:policy.retentionFloor" if stack_floor else "the policy pack's floor"
    if minimums:
        return [f"job '{_job_id(job)}' of environment '{env}' keeps {key}={options.get(key, 0)}, below "
                f"{source} {key}={minimum}: keep at least {minimum}, or lower the floor in the stack file "
                f"(vzkeep:policy.retentionFloor) if that is intended."
                for key, minimum in minimums.items() if options.get(key, 0) < int(minimum)]
    floor = int(config.get("defaultMinimumTotal", DEFAULT_MINIMUM_TOTAL))
    if sum(options.values()) < floor:
        return [f"job '{_job_id(job)}' of environment '{env}' keeps {sum(options.values())} backups in all "
                f"({retention.format_prune_backups(options)}), below the floor of {floor}: keep at least {floor}, "
                f"or set vzkeep:policy.retentionFloor in the stack file."]
    return []


def _env_of_job(props: Mapping[str, Any]) -> str:
    # Jobs select their environment's pool (DESIGN.md "Environments, pools and coverage").
    return str(props.get("pool") or "")


retention_floor = StackValidationPolicy(
    name="retention-floor",
    description="Each environment keeps at least its floor: vzkeep:policy.retentionFloor of the stack, else "
                "the pack's default (prod 7 daily, others 3 in all).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_retention_floor,
    config_schema=PolicyConfigSchema(properties={
        "minimums": {"type": "object", "default": DEFAULT_MINIMUMS,
                     "description": "env -> {keep-daily: N, ...}: per-option minimums"},
        "defaultMinimumTotal": {"type": "integer", "default": DEFAULT_MINIMUM_TOTAL, "minimum": 1,
                                "description": "minimum total kept for environments without minimums"},
    }),
)


def _consistent_mode(args: ResourceValidationArgs, report: ReportViolation) -> None:
    mode = args.props.get("mode", "snapshot")
    if mode not in ("snapshot", "stop"):
        report(f"job '{_job_id_of(args)}' uses mode '{mode}': the guest is paused for the whole backup; "
               f"use snapshot (consistent while running) or stop.")


consistent_mode = _job_policy(
    "consistent-mode", "Backups use snapshot (or stop) mode for a consistent state.",
    EnforcementLevel.ADVISORY, _consistent_mode)


def _missed_runs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("repeatMissed"):
        report(f"job '{_job_id_of(args)}' has repeatMissed on: a run missed while the node was down would be "
               f"replayed at boot, possibly in working hours; leave it off, monitoring reports missed runs.")


missed_runs_not_caught_up = _job_policy(
    "missed-runs-not-caught-up", "repeat-missed stays off: missed runs are reported, not replayed.",
    EnforcementLevel.ADVISORY, _missed_runs)


# ---------------------------------------------------------------------------------------------
# Stack rules that need the environment's facts


def _schedule_in_window(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    facts = environment_facts(resources)
    config = args.get_config() or {}
    for job in _of(resources, JOB):
        env = _env_of_job(job.props)
        window_cfg = (config.get("windows") or {}).get(env) or facts.get("window")
        if not window_cfg:
            report(f"job '{_job_id(job)}': no backup window is known for environment '{env}': declare the "
                   f"environment (BackupEnvironment) or set the policy config windows.{env}.", job.urn)
            continue
        tz = window_cfg.get("timezone") or facts.get("timezone") or "UTC"
        window = WindowSettings(start=window_cfg["start"], end=window_cfg["end"])
        schedule = str(job.props.get("schedule", ""))
        bad = _first_start_outside(schedule, tz, window)
        if bad:
            report(f"job '{_job_id(job)}' schedule '{schedule}' starts at {bad} ({tz}), outside the window "
                   f"{window.start}–{window.end} of environment '{env}': move the start inside it.",
                   job.urn)


def _first_start_outside(schedule: str, tz: str, window: WindowSettings) -> str | None:
    try:
        starts = start_times(schedule, tz, REFERENCE_EPOCH)
    except ValueError as err:
        return f"never (invalid schedule: {err})"
    zone = ZoneInfo(tz)
    for epoch in starts:
        local = datetime.fromtimestamp(epoch, zone)
        if not window.contains(local.hour * 60 + local.minute):
            return f"{local:%a %H:%M}"
    return None


schedule_in_window = StackValidationPolicy(
    name="schedule-in-window",
    description="Every start time of a backup job falls inside its environment's backup window.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_schedule_in_window,
    config_schema=PolicyConfigSchema(properties={
        "windows": {"type": "object", "default": {},
                    "description": "env -> {start: HH:MM, end: HH:MM, timezone}: overrides the stack's window"},
    }),
)


def _dedicated_storage(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    storages = {str(r.props.get("resourceId") or ""): r for r in _of(resources, *STORAGE_TYPES)}
    for job in _of(resources, JOB):
        # vzdump's default storage is `local` (pve-manager PVE/VZDump.pm new)
        target = str(job.props.get("storage") or "local")
        declared = storages.get(target)
        if target in SHARED_WITH_DISKS:
            reason = f"'{target}' is the node's own storage, shared with guest disks"
        elif declared is None:
            reason = f"storage '{target}' is not declared by this stack as a dedicated backup storage"
        elif DISK_CONTENTS & set(declared.props.get("contents") or []):
            reason = f"storage '{target}' also holds guest disks ({', '.join(declared.props['contents'])})"
        else:
            continue
        report(f"job '{_job_id(job)}' writes to {reason}: backups must go to the environment's dedicated "
               f"backup storage (e.g. backup-{_env_of_job(job.props)}).", job.urn)


dedicated_storage = StackValidationPolicy(
    name="dedicated-storage",
    description="Jobs write to the environment's dedicated backup storage, never to local or a disk storage.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_dedicated_storage,
)


def _versioned_state_bucket(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    versioning = {str(v.props.get("bucket")): v.props.get("versioningConfiguration") or {}
                  for v in _of(resources, S3_VERSIONING)}
    policies = {str(p.props.get("bucket")): p.props.get("policy") for p in _of(resources, S3_POLICY)}
    for bucket in _of(resources, S3_BUCKET):
        name = str(bucket.props.get("bucket") or bucket.name)
        status = versioning.get(name, {}).get("status")
        if status != "Enabled":
            report(f"state bucket '{name}' has versioning {status or 'not configured'}: add an "
                   f"S3BucketVersioning with status Enabled so every state write can be undone.", bucket.urn)
        if str(bucket.props.get("acl", "private")) in PUBLIC_ACLS:
            report(f"state bucket '{name}' has acl '{bucket.props['acl']}': state holds secrets' ciphertexts "
                   f"and resource ids; make it private.", bucket.urn)
        if _is_public_policy(policies.get(name)):
            report(f"state bucket '{name}' has a bucket policy allowing anyone (Principal '*'): remove it.",
                   bucket.urn)


def _is_public_policy(policy: Any) -> bool:
    if not policy:
        return False
    document = json.loads(policy) if isinstance(policy, str) else policy
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        anyone = principal == "*" or (isinstance(principal, dict) and "*" in json.dumps(principal))
        if statement.get("Effect") == "Allow" and anyone:
            return True
    return False


versioned_state_bucket = StackValidationPolicy(
    name="versioned-state-bucket",
    description="A bucket holding IaC state has versioning Enabled and is not public.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_versioned_state_bucket,
)


def _no_plaintext_secrets(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    envs = _of(resources, ENVIRONMENT)
    for env in envs:
        for key, kind in sorted((env.props.get("credentials") or {}).items()):
            if kind != "secret":
                report(f"stack config '{key}' is a plain string: credentials must be Pulumi secrets; run "
                       f"`pulumi config set --secret {key} <value>` and remove the plain value.", env.urn)


no_plaintext_secrets = StackValidationPolicy(
    name="no-plaintext-secrets",
    description="Provider credentials (API tokens, passwords, S3 keys, Telegram bot token) are Pulumi secrets.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_plaintext_secrets,
)


POLICIES = [
    every_guest_covered,
    retention_required,
    retention_floor,
    schedule_in_window,
    dedicated_storage,
    consistent_mode,
    missed_runs_not_caught_up,
    versioned_state_bucket,
    no_plaintext_secrets,
]
