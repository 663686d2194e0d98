"""Privileges and built-in roles, per PVE version: pve-access-control ``src/PVE/AccessControl.pm``
``$privgroups`` and ``create_roles``.

``PRIVGROUPS`` is that table as data, for the pve-access-control release each PVE version ships
(8.2.2 with PVE 8.4, commit 25dd375; 9.0.7 with PVE 9.1, commit 4858e4a). ``create_roles`` builds the
special roles from it exactly as the Perl code does.
"""

from __future__ import annotations

from collections.abc import Mapping

Privgroups = Mapping[str, Mapping[str, tuple[str, ...]]]

_COMMON: dict[str, dict[str, tuple[str, ...]]] = {
    "Sys": {"root": ("Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"),
            "admin": ("Sys.Console", "Sys.Syslog"), "user": (), "audit": ("Sys.Audit",)},
    "Datastore": {"root": (), "admin": ("Datastore.Allocate", "Datastore.AllocateTemplate"),
                  "user": ("Datastore.AllocateSpace",), "audit": ("Datastore.Audit",)},
    "SDN": {"root": (), "admin": ("SDN.Allocate", "SDN.Audit"), "user": ("SDN.Use",), "audit": ("SDN.Audit",)},
    "User": {"root": ("Realm.Allocate",), "admin": ("User.Modify", "Group.Allocate", "Realm.AllocateUser"),
             "user": (), "audit": ()},
    "Pool": {"root": (), "admin": ("Pool.Allocate",), "user": ("Pool.Audit",), "audit": ("Pool.Audit",)},
    "Mapping": {"root": (), "admin": ("Mapping.Modify",), "user": ("Mapping.Use",), "audit": ("Mapping.Audit",)},
}

PRIVGROUPS: dict[str, Privgroups] = {
    "8": {
        "VM": {
            "root": (),
            "admin": ("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
                      "VM.Config.HWType", "VM.Config.Options", "VM.Allocate", "VM.Clone", "VM.Migrate",
                      "VM.Monitor", "VM.Snapshot", "VM.Snapshot.Rollback"),
            "user": ("VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.PowerMgmt"),
            "audit": ("VM.Audit",),
        },
        **_COMMON,
    },
    "9": {
        "VM": {
            "root": (),
            "admin": ("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
                      "VM.Config.HWType", "VM.Config.Options", "VM.Allocate", "VM.Clone",
                      "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.Replicate", "VM.Snapshot",
                      "VM.Snapshot.Rollback"),
            "user": ("VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup",
                     "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite",
                     "VM.PowerMgmt"),
            "audit": ("VM.Audit", "VM.GuestAgent.Audit"),
        },
        **_COMMON,
    },
}


def valid_privileges(groups: Privgroups) -> frozenset[str]:
    """``$valid_privs``: every privilege of a group, plus ``Permissions.Modify`` (in no group)."""
    privs = {"Permissions.Modify"}
    for category in groups.values():
        for level in ("root", "admin", "user", "audit"):
            privs.update(category[level])
    return frozenset(privs)


def create_roles(groups: Privgroups) -> dict[str, frozenset[str]]:
    """``create_roles``: NoAccess, Administrator, PVE<Cat>Admin/User, PVEAdmin, PVEAuditor, PVETemplateUser."""
    roles: dict[str, set[str]] = {"NoAccess": set(), "Administrator": set(valid_privileges(groups))}
    for category, levels in groups.items():
        for priv in (*levels["admin"], *levels["user"], *levels["audit"]):
            roles.setdefault(f"PVE{category}Admin", set()).add(priv)
            roles.setdefault("PVEAdmin", set()).add(priv)
        if levels["user"]:
            for priv in (*levels["user"], *levels["audit"]):
                roles.setdefault(f"PVE{category}User", set()).add(priv)
        for priv in levels["audit"]:
            roles.setdefault("PVEAuditor", set()).add(priv)
    # "remove Mapping.Modify from PVEAdmin, only Administrator, root@pam and PVEMappingAdmin should be able to use that"
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    return {name: frozenset(privs) for name, privs in roles.items()}
