"""BackupSchedule: the environment's vzdump job, selecting its pool on a schedule inside the window."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from vzkeep.plan import JobSpec


@dataclass
class BackupScheduleArgs:
    spec: JobSpec
    storage_id: pulumi.Input[str]
    pool_id: pulumi.Input[str]
    prune_backups: dict[str, str]
    depends_on: list[pulumi.Resource]


class BackupSchedule(pulumi.ComponentResource):
    job_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupScheduleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupSchedule", name, None, opts)
        spec = args.spec
        self.job = proxmoxve.backup.Job(
            f"{name}-job",
            resource_id=spec.id,
            schedule=spec.schedule,
            pool=args.pool_id,
            storage=args.storage_id,
            mode=spec.mode,
            compress=spec.compress,
            prune_backups=args.prune_backups,
            notes_template=spec.notes_template,
            repeat_missed=spec.repeat_missed,
            enabled=spec.enabled,
            bwlimit=spec.bwlimit,
            # The job must not exist before the storage and pool it names (PVE rejects unknown storages).
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.job_id = self.job.resource_id
        self.register_outputs({"jobId": self.job_id, "schedule": spec.schedule})
