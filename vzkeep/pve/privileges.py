"""PVE privileges vzkeep's own identities need, read from PVE's permission checks.

The exporter reads; it never changes anything. What each privilege is for, on `/` with propagation:

- `Sys.Audit`: `GET /cluster/backup`, `/cluster/backup-info/not-backed-up` (pve-manager
  `PVE/API2/Backup.pm`, `PVE/API2/Cluster/BackupInfo.pm`), every user's tasks and their logs on a node
  (pve-manager `PVE/API2/Tasks.pm`);
- `VM.Audit`: guests in `/cluster/resources` and in not-backed-up;
- `Pool.Audit`: the pool of each guest (pve-manager `PVE/API2/Cluster.pm`, resources index);
- `Datastore.Audit`: storages in `/cluster/resources` and their content index (pve-storage
  `src/PVE/API2/Storage/Content.pm`);
- `Datastore.AllocateSpace` + `VM.Backup`: a backup volume is listed only to a caller holding both (or
  `Datastore.Allocate`, which could also delete it): pve-storage `src/PVE/Storage.pm` `check_volume_access`
  (`$vtype eq 'backup' && $ownervm`: `Datastore.AllocateSpace` on `/storage/$sid`, `VM.Backup` on
  `/vms/$ownervm`). Without them the content listing answers 200 with no backups.
"""

from __future__ import annotations

EXPORTER_ROLE_PRIVILEGES: tuple[str, ...] = (
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Pool.Audit",
    "Sys.Audit",
    "VM.Audit",
    "VM.Backup",
)
