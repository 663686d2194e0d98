"""Routing table of the emulated API: method + path template -> handler, schema and permission.

Path templates use PVE's ``{name}`` placeholders. ``{volume}`` matches the rest of the path
because a volume id (``store:backup/vzdump-…``) contains a slash and clients such as proxmoxer
send it unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vzkeep.sandbox.api.errors import not_implemented, permission_denied
from vzkeep.sandbox.api.schema import Schema

if TYPE_CHECKING:
    from vzkeep.sandbox.server import SandboxApp

# PVEAuditor (pve-access-control ``PVE/AccessControl.pm`` roles): read-only everywhere.
AUDITOR_PRIVILEGES = frozenset(
    {"Sys.Audit", "VM.Audit", "Datastore.Audit", "Pool.Audit", "SDN.Audit", "Mapping.Audit"}
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``root@pam`` plus a token name, and the privileges it holds on ``/``."""

    user: str
    tokenid: str | None = None
    privileges: frozenset[str] | None = None  # None = every privilege (root@pam)

    @property
    def userid(self) -> str:
        # Tasks started with a token carry ``user@realm!tokenid`` as UPID user (reference §4.1).
        return f"{self.user}!{self.tokenid}" if self.tokenid else self.user

    def can(self, privilege: str) -> bool:
        return self.privileges is None or privilege in self.privileges


ROOT = Principal("root@pam")


@dataclass
class Request:
    app: SandboxApp
    method: str
    path: str
    params: dict[str, Any]
    principal: Principal

    def require(self, acl_path: str, privilege: str) -> None:
        """403 with PVE's text when the caller lacks ``privilege`` on ``acl_path``; ``A|B`` means any of
        them, reported joined as ``check_any`` does (``Permission check failed (/vms/100, A|B)``)."""
        if not any(self.principal.can(p) for p in privilege.split("|")):
            raise permission_denied(acl_path, privilege)


Handler = Callable[[Request], Any]


@dataclass
class PagedResult:
    """A list reply that also carries ``total`` (``/nodes/{n}/tasks``, task logs; reference §4.1)."""

    items: list[Any]
    total: int


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    schema: Schema
    perm: tuple[str, str] | None  # (acl path template, privilege), checked before the handler


def _compile(template: str) -> re.Pattern[str]:
    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"(?P<{name}>.+)" if name == "volume" else f"(?P<{name}>[^/]+)"

    return re.compile("^" + re.sub(r"\{([a-z_]+)\}", placeholder, template) + "$")


@dataclass
class Router:
    routes: list[Route] = field(default_factory=list)

    def add(
        self, method: str, template: str, schema: Schema | None = None, perm: tuple[str, str] | None = None
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method, template, _compile(template), handler, schema or {}, perm))
            return handler

        return decorate

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method path``; 501 ``Method 'GET /x' not implemented`` as PVE when none."""
        for route in self.routes:
            if route.method != method:
                continue
            match = route.regex.match(path)
            if match:
                return route, match.groupdict()
        raise not_implemented(method, path)
