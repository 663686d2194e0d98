"""Handlers by route, and the request they receive.

PVE routes come from the schema (``pve_schema``): a handler registers under the schema's own method
and path template (``handlers.add("GET", "/nodes/{node}/status")``) and declares nothing else: its
parameters, their checks and its permission declaration are the schema's (``dispatch``).

``Router`` (hand-typed ``Param`` schemas and a permission pair) serves only the ``/_sandbox/`` control
API, which is not PVE and has no published schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vzkeep.sandbox.api.access.auth import ROOT, Principal
from vzkeep.sandbox.api.errors import not_implemented
from vzkeep.sandbox.api.schema import Schema

if TYPE_CHECKING:
    from vzkeep.sandbox.api.access.rpcenv import RpcEnv
    from vzkeep.sandbox.api.pve_schema import Method
    from vzkeep.sandbox.api.versions import PveVersion
    from vzkeep.sandbox.server import SandboxApp

__all__ = ["ROOT", "Handler", "Handlers", "PagedResult", "Principal", "Request", "Router"]


@dataclass
class Request:
    app: SandboxApp
    method: str
    path: str
    params: dict[str, Any]
    principal: Principal
    api: Method | None = None  # the schema method (None for the control API)
    _rpcenv: RpcEnv | None = field(default=None, repr=False)

    @property
    def version(self) -> PveVersion:
        return self.app.version

    @property
    def authid(self) -> str:
        return self.principal.authid

    @property
    def rpcenv(self) -> RpcEnv:
        if self._rpcenv is None:
            self._rpcenv = self.app.rpcenv()
        return self._rpcenv

    def require(self, acl_path: str, privilege: str) -> None:
        """403 with PVE's text unless the caller holds ``privilege`` on ``acl_path`` (``A|B``: any of them,
        reported as ``check_any`` does: ``Permission check failed (/vms/100, A|B)``)."""
        privs = privilege.split("|")
        if len(privs) > 1:
            self.rpcenv.check_any(self.authid, acl_path, privs)
        else:
            self.rpcenv.check(self.authid, acl_path, privs)

    def allowed(self, acl_path: str, *privs: str, any_: bool = False) -> bool:
        if self.authid == ROOT.authid:  # RPCEnvironment.pm permissions: "root can do anything"
            return True
        return self.rpcenv.check_full(self.authid, acl_path, list(privs), any_, noerr=True)

    def get(self, name: str) -> Any:
        """The parameter, or the schema's default for it (what PVE handlers write as ``$param->{x} // d``)."""
        if name in self.params:
            return self.params[name]
        return self.api.default(name) if self.api is not None else None


Handler = Callable[[Request], Any]


@dataclass
class PagedResult:
    """A list reply that also carries ``total`` (``/nodes/{n}/tasks``, task logs: RESTEnvironment
    ``set_result_attrib('total')``)."""

    items: list[Any]
    total: int


@dataclass
class Handlers:
    """The PVE routes the sandbox serves: ``"<METHOD> <schema path>"`` → handler."""

    routes: dict[str, Handler] = field(default_factory=dict)

    def add(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            key = f"{method} {template}"
            if key in self.routes:
                raise ValueError(f"{key} is served twice")
            self.routes[key] = handler
            return handler

        return decorate


# -- the /_sandbox/ control API -----------------------------------------------------------------------------


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
        return f"(?P<{match.group(1)}>[^/]+)"

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
