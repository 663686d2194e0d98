"""One API call through PVE's request pipeline, in PVE's order (pve-manager ``PVE/HTTPServer.pm``
``rest_handler``, pve-common ``PVE/RESTHandler.pm`` ``handle``):

1. find the method in the schema (``Method 'GET /x' not implemented``, 501, when the schema has none, or
   when the sandbox does not serve it);
2. merge URI parameters (a conflicting duplicate is a 400);
3. refuse API tokens on methods without ``allowtoken``;
4. check the schema's ``permissions`` declaration with the raw parameters;
5. ``proxyto``: the target node must exist (500 hostname lookup) and be up (595);
6. normalise legacy list/array parameters, validate against the schema (400 with ``errors``), convert;
7. run the handler; optionally verify the result against the schema's ``returns`` (as PVE does
   with ``$result_verification``), which the conformance tests turn on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vzkeep.sandbox.api.access.auth import Principal
from vzkeep.sandbox.api.errors import ApiError, die, not_implemented, param_error
from vzkeep.sandbox.api.router import Handlers, PagedResult, Request
from vzkeep.sandbox.api.validation import coerce, normalize_legacy_param_formats

if TYPE_CHECKING:
    from vzkeep.sandbox.api.pve_schema import Method
    from vzkeep.sandbox.server import SandboxApp

RESULT_FAILED = "Result verification failed\n"
LOCALHOST = "localhost"


@dataclass
class Dispatcher:
    app: SandboxApp
    handlers: Handlers
    verify_results: bool = False
    served: dict[str, Method] = field(init=False)

    def __post_init__(self) -> None:
        schema = self.app.version.schema
        unknown = sorted(set(self.handlers.routes) - set(schema.methods))
        if unknown:
            raise ValueError(f"handlers for methods PVE {schema.pve_version} does not have: {', '.join(unknown)}")
        self.served = {key: schema.methods[key] for key in self.handlers.routes}

    def resolve(self, method: str, path: str) -> tuple[Method, dict[str, str]]:
        found = self.app.version.schema.resolve(method, path)
        if found is None or found[0].key not in self.served:
            raise not_implemented(method, path)
        return found

    def prepare(self, method: str, path: str, params: dict[str, Any], principal: Principal) -> Request:
        """Steps 1 to 6: the request a handler would receive (raises ApiError where PVE stops)."""
        api, uri = self.resolve(method, path)
        merged = dict(uri)
        for key in sorted(params):
            if key in uri and uri[key] != params[key]:
                raise param_error({key: "duplicate parameter (already defined in URI) with conflicting values!"})
            merged[key] = params[key]
        if principal.token and not api.allowtoken:
            raise ApiError(403, f"Permission check failed (URI '{path}' not available with API token, need proper "
                                f"ticket.\n)\n")
        req = Request(self.app, method, path, merged, principal, api)
        req.rpcenv.check_api2_permissions(api.permissions, principal.authid, merged)
        if api.proxyto:
            self._proxy_target(api.proxyto, merged)
        checker = self.app.version.checker
        normalized = normalize_legacy_param_formats(merged, api.parameters)
        checker.validate(normalized, api.parameters)
        req.params = coerce(normalized, api.parameters)
        return req

    def call(self, method: str, path: str, params: dict[str, Any], principal: Principal) -> Any:
        req = self.prepare(method, path, params, principal)
        assert req.api is not None
        result = self.handlers.routes[req.api.key](req)
        if self.verify_results:
            data = result.items if isinstance(result, PagedResult) else result
            self.app.version.checker.validate(data, req.api.returns, RESULT_FAILED)
        return result

    def _proxy_target(self, proxyto: str, params: dict[str, Any]) -> None:
        """``resolve_proxyto`` + ``remote_node_ip`` (pve-cluster Cluster.pm): a node that is not in the
        cluster fails the host lookup; one that is down cannot be reached."""
        node = params.get(proxyto)
        if not node:
            raise param_error({proxyto: "proxyto parameter does not exist"})
        if node == LOCALHOST:
            params[proxyto] = node = self.app.local_node
        cluster = self.app.cluster
        if node not in cluster.nodes:
            raise die(f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                      "Name or service not known\n")
        if not cluster.nodes[node].online:
            raise ApiError(595, f"Connection refused - node '{node}' is offline (sandbox: node down)")
