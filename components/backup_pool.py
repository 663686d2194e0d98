"""BackupPool: the PVE pool an environment's guests live in, and the inventory's guests put in it.

The job selects the pool, so a guest added to the pool is covered without a code change. The
guests the stack's inventory lists exist before the program (it does not create them); each becomes
a pool member here (`pool.Membership`, PVE `PUT /pools` with `vms`), so the job covers them on a
fresh cluster too, and `allow-move` takes a guest out of another pool it was in.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from vzkeep.plan import PoolSpec


@dataclass
class BackupPoolArgs:
    spec: PoolSpec


class BackupPool(pulumi.ComponentResource):
    """Creates the pool when `createPool` is on; otherwise the pool is adopted by id only."""

    pool_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupPoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupPool", name, None, opts)
        spec = args.spec
        self.pool: proxmoxve.PoolLegacy | None = None
        if spec.create:
            self.pool = proxmoxve.PoolLegacy(
                f"{name}-pool",
                pool_id=spec.id,
                comment=spec.comment,
                # Deleting the pool would orphan every guest's membership: never do it by accident.
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            self.pool_id = self.pool.pool_id
        else:
            self.pool_id = pulumi.Output.from_input(spec.id)
        member = pulumi.ResourceOptions(parent=self, depends_on=[self.pool] if self.pool else None)
        self.members = [proxmoxve.pool.Membership(f"{name}-member-{vmid}", pool_id=self.pool_id, vm_id=vmid,
                                                  opts=member)
                        for vmid in spec.members]
        self.register_outputs({"poolId": self.pool_id, "members": list(spec.members)})
