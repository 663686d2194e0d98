"""Pulumi ComponentResources of vzkeep. Thin: they turn `vzkeep.plan` specs into provider resources.

No Proxmox semantics live here (DESIGN.md "Three parts, one core"): names, schedules, windows and
retention are decided by `vzkeep.plan`; components only declare what the specs say.
"""

from components.backup_environment import BackupEnvironment, BackupEnvironmentArgs
from components.backup_monitoring import BackupMonitoring, BackupMonitoringArgs
from components.backup_pool import BackupPool, BackupPoolArgs
from components.backup_schedule import BackupSchedule, BackupScheduleArgs
from components.backup_storage import BackupStorage, BackupStorageArgs
from components.object_store import ObjectStore, ObjectStoreArgs
from components.remote_store import RemoteStore, RemoteStoreArgs
from components.retention_policy import RetentionPolicy, RetentionPolicyArgs
from components.state_bucket import StateBucket, StateBucketArgs

__all__ = [
    "BackupEnvironment",
    "BackupEnvironmentArgs",
    "BackupMonitoring",
    "BackupMonitoringArgs",
    "BackupPool",
    "BackupPoolArgs",
    "BackupSchedule",
    "BackupScheduleArgs",
    "BackupStorage",
    "BackupStorageArgs",
    "ObjectStore",
    "ObjectStoreArgs",
    "RemoteStore",
    "RemoteStoreArgs",
    "RetentionPolicy",
    "RetentionPolicyArgs",
    "StateBucket",
    "StateBucketArgs",
]
