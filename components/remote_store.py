"""RemoteStore: offsite copies on a NAS over NFS, with their own job (DESIGN.md "Offsite")."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.backup_schedule import BackupSchedule, BackupScheduleArgs
from vzkeep.plan import OffsitePlan


@dataclass
class RemoteStoreArgs:
    plan: OffsitePlan
    pool_id: pulumi.Input[str]
    depends_on: list[pulumi.Resource]


class RemoteStore(pulumi.ComponentResource):
    """A shared NFS storage visible from every node (and from a reinstalled one) plus the offsite job."""

    storage_id: pulumi.Output[str]
    job_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RemoteStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:RemoteStore", name, None, opts)
        storage, job = args.plan.storage, args.plan.job
        self.nfs = proxmoxve.storage.Nfs(
            f"{name}-nfs",
            resource_id=storage.id,
            server=storage.server,
            export=storage.export,
            options=storage.options,
            nodes=list(storage.nodes),
            contents=list(storage.content),
            # The archives on the NAS are what survives the node: never drop the storage by accident.
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.schedule = BackupSchedule(
            f"{name}-backup",
            BackupScheduleArgs(
                spec=job, storage_id=self.nfs.resource_id, pool_id=args.pool_id,
                prune_backups={key: str(value) for key, value in job.prune_backups.items()},
                depends_on=[self.nfs, *args.depends_on],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.storage_id = self.nfs.resource_id
        self.job_id = self.schedule.job_id
        self.register_outputs({"storageId": self.storage_id, "jobId": self.job_id, "schedule": job.schedule})
