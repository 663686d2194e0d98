"""BackupStorage: the environment's dedicated backup storage (a PVE `dir` storage)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from vzkeep.plan import StorageSpec


@dataclass
class BackupStorageArgs:
    spec: StorageSpec


class BackupStorage(pulumi.ComponentResource):
    """Declares the storage, or adopts an existing one (`storage.create: false`) without managing it."""

    storage_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupStorage", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        if spec.create:
            self.storage = proxmoxve.storage.Directory(
                f"{name}-dir",
                resource_id=spec.id,
                path=spec.path,
                nodes=list(spec.nodes),
                contents=list(spec.content),
                shared=spec.shared,
                create_base_path=True,
                # Archives live there: deleting the storage definition must be a deliberate act.
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
        else:
            # Read, not managed: `pulumi destroy` leaves an adopted storage alone.
            self.storage = proxmoxve.storage.Directory.get(f"{name}-adopted", spec.id, opts=child)
        self.storage_id = self.storage.resource_id
        self.register_outputs({"storageId": self.storage_id})
