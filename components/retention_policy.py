"""RetentionPolicy: a validated prune-backups value, shown in the stack and fed to the job."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass
class RetentionPolicyArgs:
    prune_backups: dict[str, int]  # validated by vzkeep.config (finite, not empty, no keep-all mix)


class RetentionPolicy(pulumi.ComponentResource):
    """No provider resource: PVE applies retention through the job's `prune-backups`.

    The job's value wins over the storage's (pve-manager `PVE/VZDump.pm`).
    """

    prune_backups: dict[str, str]

    def __init__(
        self, name: str, args: RetentionPolicyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:RetentionPolicy", name, None, opts)
        # The provider takes prune-backups values as strings (pulumi-proxmoxve backup.Job).
        self.prune_backups = {key: str(value) for key, value in args.prune_backups.items()}
        self.summary = ", ".join(f"{key}={value}" for key, value in self.prune_backups.items())
        self.register_outputs({"pruneBackups": self.prune_backups, "summary": self.summary})
