"""vzkeep.pve.privileges: the exporter's role and the reading of ``GET /access/permissions``
(pve-access-control ``src/PVE/RPCEnvironment.pm get_effective_permissions``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from vzkeep.pve.privileges import (
    EXPORTER_ROLE_PRIVILEGES,
    REQUIREMENTS,
    missing_privileges,
    privileges_at,
    pveum_grant_command,
    pveum_role_command,
)

# pve-access-control src/PVE/AccessControl.pm: the built-in PVEAuditor role holds every "audit" privilege.
AUDITOR = {"Sys.Audit", "VM.Audit", "VM.GuestAgent.Audit", "Datastore.Audit", "Pool.Audit", "SDN.Audit",
           "Mapping.Audit"}


def on(privs: set[str] | frozenset[str], propagate: int = 1) -> dict[str, int]:
    return {p: propagate for p in sorted(privs)}


def test_the_role_is_what_the_calls_need_and_not_more() -> None:
    # Enough: granted on / with propagation, the exporter lacks nothing. Not more: without any one of its
    # privileges, some call the exporter makes goes blind (each one is needed), and it holds no privilege that
    # writes anything but backups' space (Datastore.Allocate would let it change storages).
    def lacking(held: frozenset[str]) -> set[tuple[str, str]]:
        found = missing_privileges(everywhere(held), nodes=["pve1", "pve2"], storages=["backup-prod"],
                                   vmids=[100, 200], pools=["prod"])
        return {(m.privilege, m.path) for m in found}

    assert lacking(EXPORTER_ROLE_PRIVILEGES) == set()
    for privilege in sorted(EXPORTER_ROLE_PRIVILEGES):
        assert {p for p, _ in lacking(EXPORTER_ROLE_PRIVILEGES - {privilege})} == {privilege}, privilege
    assert "Datastore.Allocate" not in EXPORTER_ROLE_PRIVILEGES
    assert all(r.source for r in REQUIREMENTS)
    assert pveum_role_command() == (
        "pveum role add VzkeepExporter --privs "
        "'Datastore.AllocateSpace,Datastore.Audit,Pool.Audit,Sys.Audit,VM.Audit,VM.Backup'"
    )


@pytest.mark.parametrize(("authid", "expected"), [
    ("monitoring@pve!exporter", "pveum acl modify / --tokens 'monitoring@pve!exporter' --roles VzkeepExporter"),
    ("monitoring@pve", "pveum acl modify / --users monitoring@pve --roles VzkeepExporter"),
    (None, "pveum acl modify / --users USER@REALM --roles VzkeepExporter"),
])
def test_grant_command(authid: str | None, expected: str) -> None:
    assert pveum_grant_command("/", authid) == expected


PERMS_CASES: list[tuple[str, dict[str, dict[str, int]], str, set[str]]] = [
    ("listed path is exact", {"/": on({"Sys.Audit"}), "/vms/100": on({"VM.Audit"}, 0)}, "/vms/100", {"VM.Audit"}),
    ("unlisted path inherits what propagates", {"/": on({"Sys.Audit"}), "/vms": on({"VM.Audit"})}, "/vms/100",
     {"VM.Audit"}),
    ("propagate 0 stops at the path", {"/": on({"Sys.Audit"}, 0)}, "/nodes/pve1", set()),
    # /vms is always evaluated by PVE: absent means nothing is held there, even if / propagates.
    ("a default path left out holds nothing", {"/": on({"VM.Audit"})}, "/vms/100", set()),
    ("deep path walks up to /storage", {"/storage": on({"Datastore.Audit"})}, "/storage/backup-prod",
     {"Datastore.Audit"}),
    ("nothing at all", {}, "/", set()),
]


@pytest.mark.parametrize(("description", "perms", "path", "expected"), PERMS_CASES, ids=[c[0] for c in PERMS_CASES])
def test_privileges_at(description: str, perms: dict[str, dict[str, int]], path: str, expected: set[str]) -> None:
    assert privileges_at(perms, path) == expected


def everywhere(privs: set[str] | frozenset[str]) -> dict[str, dict[str, int]]:
    """What PVE answers for a role granted on / with propagation: every default path holds it."""
    return {p: on(privs) for p in ("/", "/access", "/nodes", "/pool", "/storage", "/vms", "/vms/100", "/vms/200")}


@dataclass
class Case:
    description: str
    perms: dict[str, Any]
    expected: set[tuple[str, str]]
    vmids: list[int] = field(default_factory=lambda: [100, 200])


MISSING_CASES = [
    Case("the documented role on /: nothing missing", everywhere(EXPORTER_ROLE_PRIVILEGES), set()),
    Case("PVEAuditor on /: backups invisible", everywhere(AUDITOR),
         {("Datastore.AllocateSpace", "/storage"), ("VM.Backup", "/vms")}),
    Case("VM.Backup only through the prod pool: lab's guest reported alone",
         {**everywhere(AUDITOR | {"Datastore.AllocateSpace"}), "/vms/100": on(AUDITOR | {"VM.Backup"})},
         {("VM.Backup", "/vms/200")}),
    Case("no privilege at all", {}, {
        ("Sys.Audit", "/"), ("Sys.Audit", "/nodes"), ("Datastore.Audit", "/storage"),
        ("Datastore.AllocateSpace", "/storage"), ("VM.Audit", "/vms"), ("VM.Backup", "/vms"),
        ("Pool.Audit", "/pool"),
    }, vmids=[]),
    Case("role on / without propagation: nodes and storages lack it",
         {"/": on(EXPORTER_ROLE_PRIVILEGES, 0)},
         {("Sys.Audit", "/nodes"), ("Datastore.Audit", "/storage"), ("Datastore.AllocateSpace", "/storage"),
          ("VM.Audit", "/vms"), ("VM.Backup", "/vms"), ("Pool.Audit", "/pool")}),
]


@pytest.mark.parametrize("case", MISSING_CASES, ids=lambda c: c.description)
def test_missing_privileges(case: Case) -> None:
    found = missing_privileges(case.perms, nodes=["pve1", "pve2"], storages=["backup-lab", "backup-prod"],
                               vmids=case.vmids, pools=["lab", "prod"])
    assert {(m.privilege, m.path) for m in found} == case.expected


def test_a_missing_privilege_names_every_call_that_needs_it() -> None:
    found = missing_privileges({}, nodes=["pve1"], storages=[], vmids=[], pools=[])
    sys_audit_nodes = next(m for m in found if m.privilege == "Sys.Audit" and m.path == "/nodes/pve1")
    assert sys_audit_nodes.calls == (
        "GET /nodes/{node}/tasks", "GET /nodes/{node}/tasks/{upid}/log", "GET /nodes/{node}/time",
    )
