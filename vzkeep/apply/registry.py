"""The resource kinds ``sandbox apply`` knows, by the SDK type token the program registers.

A token not listed here is not applied (and said so); adding a kind is one module in
``vzkeep/apply/resources`` and one line below.
"""

from __future__ import annotations

from vzkeep.apply.resources.acl import Acl
from vzkeep.apply.resources.backup_job import BackupJob
from vzkeep.apply.resources.base import ResourceKind
from vzkeep.apply.resources.bucket import Bucket, Lifecycle, Versioning
from vzkeep.apply.resources.container import Container
from vzkeep.apply.resources.files import CopyToRemote, InstallCommand
from vzkeep.apply.resources.membership import Membership
from vzkeep.apply.resources.pool import Pool
from vzkeep.apply.resources.role import Role
from vzkeep.apply.resources.storage import Directory, Nfs
from vzkeep.apply.resources.token import Token
from vzkeep.apply.resources.user import User

KINDS: tuple[ResourceKind, ...] = (
    Pool(), Membership(), Directory(), Nfs(), BackupJob(), Container(), User(), Role(), Acl(), Token(),
    InstallCommand(), CopyToRemote(), Bucket(), Versioning(), Lifecycle(),
)
BY_TOKEN: dict[str, ResourceKind] = {token: kind for kind in KINDS for token in kind.tokens}
PVE_PROVIDER = "pulumi:providers:proxmoxve"


def kind_of(type_token: str) -> ResourceKind | None:
    return BY_TOKEN.get(type_token)


def is_provider(type_token: str) -> bool:
    return type_token.startswith("pulumi:providers:")


def is_pve(type_token: str) -> bool:
    return type_token.startswith("proxmoxve:")
