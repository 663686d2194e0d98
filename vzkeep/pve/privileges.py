"""The PVE privileges the exporter needs, per API call it makes, and how to read them back from PVE.

Every entry of ``REQUIREMENTS`` is one privilege on one ACL path that one call of the exporter needs, with
the PVE source file that decides it. ``EXPORTER_ROLE_PRIVILEGES`` is their union: the least-privilege role
to grant on ``/`` (propagating). The monitoring stack declares the exporter's PVE role from it::

    from vzkeep.pve.privileges import EXPORTER_ROLE_NAME, EXPORTER_ROLE_PRIVILEGES

Why the role is not read-only. pve-storage lists a backup volume in
``GET /nodes/{node}/storage/{storage}/content`` only to a caller who passes ``check_volume_access``
(``src/PVE/Storage.pm``; ``src/PVE/API2/Storage/Content.pm`` ``index`` drops every volume that fails it):
``Datastore.Allocate`` on ``/storage/{storage}``, or ``Datastore.AllocateSpace`` on the storage **and**
``VM.Backup`` on ``/vms/{vmid}``. A PVEAuditor token gets HTTP 200 and an empty list. Of the two,
``Datastore.Allocate`` is the wider one (it edits and removes storage definitions and deletes any volume,
disk images included), so the role takes ``Datastore.AllocateSpace`` + ``VM.Backup``. With them a token can
also start a backup, delete or prune backups, change a backup's notes and protection, and restore a backup
over an existing guest (pve-manager ``PVE/API2/VZDump.pm``; pve-storage ``Content.pm`` ``delete`` and
``updateattributes``, ``PruneBackups.pm``; qemu-server ``PVE/API2/Qemu.pm`` ``create_vm``). No read-only
privilege of PVE shows backup volumes.

Paths use PVE's ACL path forms (``/``, ``/nodes/{node}``, ``/storage/{storage}``, ``/vms/{vmid}``,
``/pool/{pool}``); ``{...}`` are filled in per node, storage, guest or pool.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

EXPORTER_ROLE_NAME = "VzkeepExporter"


@dataclass(frozen=True)
class Requirement:
    """``privilege`` on ``path`` is what ``call`` needs so that the exporter sees ``what``."""

    call: str
    privilege: str
    path: str
    what: str
    source: str


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "GET /cluster/resources", "VM.Audit", "/vms/{vmid}", "the guest at all",
        "pve-manager PVE/API2/Cluster.pm resources: a guest without VM.Audit is skipped",
    ),
    Requirement(
        "GET /cluster/resources", "Pool.Audit", "/pool/{pool}", "the guest's pool (its environment)",
        "pve-manager PVE/API2/Cluster.pm resources: the pool field is deleted without Pool.Audit",
    ),
    Requirement(
        "GET /cluster/resources", "Datastore.Audit", "/storage/{storage}", "the storage and its fill",
        "pve-manager PVE/API2/Cluster.pm resources: a storage without Datastore.Audit is skipped",
    ),
    Requirement(
        "GET /cluster/backup", "Sys.Audit", "/", "the backup jobs",
        "pve-manager PVE/API2/Backup.pm index: check => ['perm', '/', ['Sys.Audit']]",
    ),
    Requirement(
        "GET /cluster/backup-info/not-backed-up", "Sys.Audit", "/", "the guests in no job",
        "pve-manager PVE/API2/Cluster/BackupInfo.pm get_guests_not_in_backup: check => ['perm', '/', "
        "['Sys.Audit']], then guests filtered by VM.Audit",
    ),
    Requirement(
        "GET /nodes/{node}/tasks", "Sys.Audit", "/nodes/{node}", "backup tasks of other users (the scheduler's)",
        "pve-manager PVE/API2/Tasks.pm node_tasks: without Sys.Audit only the caller's own tasks",
    ),
    Requirement(
        "GET /nodes/{node}/tasks/{upid}/log", "Sys.Audit", "/nodes/{node}", "the log of another user's task",
        "pve-manager PVE/API2/Tasks.pm read_task_log",
    ),
    Requirement(
        "GET /nodes/{node}/time", "Sys.Audit", "/nodes/{node}", "the cluster's clock and time zone",
        "pve-manager PVE/API2/Nodes.pm time: check => ['perm', '/nodes/{node}', ['Sys.Audit']]",
    ),
    Requirement(
        "GET /nodes/{node}/storage/{storage}/content", "Datastore.AllocateSpace", "/storage/{storage}",
        "backup volumes on the storage",
        "pve-storage src/PVE/Storage.pm check_volume_access (backup volume: Datastore.AllocateSpace on the "
        "storage and VM.Backup on the guest, or Datastore.Allocate), applied per volume by "
        "src/PVE/API2/Storage/Content.pm index",
    ),
    Requirement(
        "GET /nodes/{node}/storage/{storage}/content", "VM.Backup", "/vms/{vmid}", "the guest's backup volumes",
        "pve-storage src/PVE/Storage.pm check_volume_access",
    ),
)
# GET /access/permissions needs nothing: "Each user/token is allowed to dump their own permissions"
# (pve-access-control src/PVE/API2/AccessControl.pm permissions).

EXPORTER_ROLE_PRIVILEGES: frozenset[str] = frozenset(r.privilege for r in REQUIREMENTS)


def pveum_role_command(role: str = EXPORTER_ROLE_NAME) -> str:
    """The ``pveum`` line that creates the role (``role modify`` with the same ``--privs`` updates it)."""
    return f"pveum role add {role} --privs '{','.join(sorted(EXPORTER_ROLE_PRIVILEGES))}'"


def pveum_grant_command(path: str, authid: str | None, role: str = EXPORTER_ROLE_NAME) -> str:
    """The ``pveum`` line that grants ``role`` on ``path`` to a token (``user@realm!name``) or a user."""
    kind = "--tokens" if authid and "!" in authid else "--users"
    return f"pveum acl modify {shlex.quote(path)} {kind} {shlex.quote(authid or 'USER@REALM')} --roles {role}"


# --- effective privileges from GET /access/permissions -----------------------------------------------------

# The paths pve-access-control always evaluates (src/PVE/RPCEnvironment.pm get_effective_permissions),
# besides every ACL path and every pool member's /vms/{vmid} and /storage/{storage}.
DEFAULT_PATHS = ("/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms")

EffectivePermissions = Mapping[str, Mapping[str, int]]


class EffectivePrivileges:
    """The privileges held on any path, from the answer of ``GET /access/permissions`` (no ``path``).

    That answer maps a path to ``{privilege: propagate}`` for the default paths, every ACL path and every
    pool member, each already resolved through inheritance, and leaves out paths where nothing is held
    (RPCEnvironment.pm get_effective_permissions). So a listed path is exact; an unlisted one holds what its
    nearest listed ancestor propagates (privileges granted there with ``propagate 0`` stop at it).
    """

    def __init__(self, permissions: EffectivePermissions) -> None:
        self.permissions = permissions
        self._below: dict[str, frozenset[str]] = {}  # path -> what it propagates to unlisted children

    def at(self, path: str) -> frozenset[str]:
        if path in self.permissions:
            return frozenset(self.permissions[path])
        return self._inherited(path.rsplit("/", 1)[0] or "/") if path != "/" else frozenset()

    def _inherited(self, parent: str) -> frozenset[str]:
        if parent not in self._below:
            if parent in self.permissions:
                held = frozenset(p for p, propagate in self.permissions[parent].items() if _true(propagate))
            elif parent in DEFAULT_PATHS or parent == "/":
                held = frozenset()  # evaluated by PVE and left out: nothing is held there, nor below
            else:
                held = self._inherited(parent.rsplit("/", 1)[0] or "/")
            self._below[parent] = held
        return self._below[parent]


def privileges_at(permissions: EffectivePermissions, path: str) -> frozenset[str]:
    """The privileges held on ``path`` (see ``EffectivePrivileges``)."""
    return EffectivePrivileges(permissions).at(path)


def _true(value: object) -> bool:
    return value not in (0, "0", False, None)


@dataclass(frozen=True)
class MissingPrivilege:
    privilege: str
    path: str
    calls: tuple[str, ...]  # the exporter's calls that lack it
    what: str  # what the exporter cannot see without it


def missing_privileges(
    permissions: EffectivePermissions, *, nodes: Iterable[str], storages: Iterable[str],
    vmids: Iterable[int], pools: Iterable[str],
) -> list[MissingPrivilege]:
    """Every requirement the token does not meet, on the concrete paths the exporter reads.

    A privilege that is missing on every concrete path of one kind (every guest, every storage...) is
    reported once, on the kind's parent path (``/vms``, ``/storage``...), so a token without ``VM.Backup``
    gives one finding, not one per guest.
    """
    concrete = {
        "/": ["/"],
        "/nodes/{node}": [f"/nodes/{n}" for n in sorted(set(nodes))],
        "/storage/{storage}": [f"/storage/{s}" for s in sorted(set(storages))],
        "/vms/{vmid}": [f"/vms/{v}" for v in sorted(set(vmids))],
        "/pool/{pool}": [f"/pool/{p}" for p in sorted(set(pools))],
    }
    found: dict[tuple[str, str], MissingPrivilege] = {}
    at = EffectivePrivileges(permissions).at  # thousands of guests share their parent's answer
    for req in REQUIREMENTS:
        paths = concrete[req.path]
        lacking = [p for p in paths if req.privilege not in at(p)]
        if not paths:  # no guest, storage or pool of that kind is visible: check the parent path itself
            parent = req.path.split("/{")[0] or "/"
            lacking = [parent] if req.privilege not in at(parent) else []
        elif len(lacking) == len(paths) and len(paths) > 1:
            lacking = [req.path.split("/{")[0] or "/"]
        for path in lacking:
            key = (req.privilege, path)
            known = found.get(key)
            calls = (*known.calls, req.call) if known else (req.call,)
            found[key] = MissingPrivilege(req.privilege, path, tuple(dict.fromkeys(calls)),
                                          known.what if known else req.what)
    return [found[k] for k in sorted(found)]
