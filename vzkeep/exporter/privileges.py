"""The exporter checks its own privileges on every poll (``GET /access/permissions``) and says what is missing.

PVE answers a token without a privilege with less data, not with an error: guests, storages or backup
volumes simply are not listed (see ``vzkeep.pve.privileges``). So the exporter compares what it holds with
what each of its calls needs, publishes every missing (privilege, path) as ``vzkeep_missing_privilege`` and
logs one line each time one goes missing (and when it is granted again), with the ``pveum`` command.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from vzkeep.exporter.api import ApiGet
from vzkeep.pve import privileges as pve
from vzkeep.pve.privileges import MissingPrivilege

log = logging.getLogger("vzkeep.exporter")


class PrivilegeCheck:
    """Remembers what was missing at the last check, so each change is logged once."""

    def __init__(self, authid: str | None = None) -> None:
        self.authid = authid  # user@realm!token of the exporter, for the pveum commands it prints
        self.missing: tuple[MissingPrivilege, ...] = ()

    def check(self, get: ApiGet, *, nodes: Iterable[str], storages: Iterable[str], vmids: Iterable[int],
              pools: Iterable[str]) -> tuple[MissingPrivilege, ...]:
        answer: Any = get("access/permissions")
        if not isinstance(answer, dict):
            raise ValueError(f"/access/permissions: expected an object, got {type(answer).__name__}")
        found = tuple(pve.missing_privileges(answer, nodes=nodes, storages=storages, vmids=vmids, pools=pools))
        self._log_changes(found)
        self.missing = found
        return found

    def _log_changes(self, found: Sequence[MissingPrivilege]) -> None:
        before = {(m.privilege, m.path) for m in self.missing}
        now = {(m.privilege, m.path) for m in found}
        for m in found:
            if (m.privilege, m.path) not in before:
                log.warning("%s", missing_line(m, self.authid))
        for privilege, path in sorted(before - now):
            log.info("PVE privilege %s on %s is granted now", privilege, path)


def missing_line(m: MissingPrivilege, authid: str | None) -> str:
    """One line: the privilege, the path, what it hides, and the ``pveum`` command that grants it."""
    return (
        f"missing PVE privilege {m.privilege} on {m.path}: the exporter cannot see {m.what} "
        f"({', '.join(m.calls)}); grant it with: {pve.pveum_grant_command(m.path, authid)} "
        f"(create the role first if needed: {pve.pveum_role_command()}; see docs/exporter.md)"
    )
