"""BackupEnvironment: one environment's backups, parent of every backup component of the stack.

Its outputs state the environment's facts (pool, window, time zone, the guests it must cover, and
whether each credential in the stack config is a Pulumi secret), so the policy pack can judge the
stack from the resources alone (policies never see stack config).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.backup_pool import BackupPool, BackupPoolArgs
from components.backup_schedule import BackupSchedule, BackupScheduleArgs
from components.backup_storage import BackupStorage, BackupStorageArgs
from components.remote_store import RemoteStore, RemoteStoreArgs
from components.retention_policy import RetentionPolicy, RetentionPolicyArgs
from vzkeep.plan import StackPlan


@dataclass
class BackupEnvironmentArgs:
    plan: StackPlan
    credentials: dict[str, str]  # config key -> "secret" | "plain"


class BackupEnvironment(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: BackupEnvironmentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupEnvironment", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self)
        self.pool = BackupPool(f"{name}-pool", BackupPoolArgs(plan.pool), opts=child)
        self.storage = BackupStorage(f"{name}-storage", BackupStorageArgs(plan.storage), opts=child)
        self.retention = RetentionPolicy(
            f"{name}-retention", RetentionPolicyArgs(plan.job.prune_backups), opts=child)
        self.schedule = BackupSchedule(
            f"{name}-backup",
            BackupScheduleArgs(
                spec=plan.job, storage_id=self.storage.storage_id, pool_id=self.pool.pool_id,
                prune_backups=self.retention.prune_backups, depends_on=[self.storage, self.pool],
            ),
            opts=child,
        )
        # Offsite copies are optional: without `vzkeep:remote` nothing else is declared.
        self.remote = None
        if plan.offsite is not None:
            self.remote = RemoteStore(
                f"{name}-offsite",
                RemoteStoreArgs(plan=plan.offsite, pool_id=self.pool.pool_id, depends_on=[self.pool]),
                opts=child,
            )
        self.register_outputs({
            "env": plan.env,
            "pool": plan.pool.id,
            "window": {"start": plan.thresholds.window_start, "end": plan.thresholds.window_end},
            "timezone": plan.job.timezone,
            "backupStorage": plan.storage.id,
            "offsiteStorage": plan.offsite.storage.id if plan.offsite else None,
            "inventory": [
                {"vmid": g.vmid, "name": g.name, "type": g.type, "pool": g.pool, "node": g.node}
                for g in plan.guests
            ],
            "credentials": args.credentials,
            # vzkeep:policy.retentionFloor, in PVE's option names: the floor the retention-floor policy applies.
            "retentionFloor": floor.minimums() if (floor := plan.settings.policy.retention_floor) else None,
        })
