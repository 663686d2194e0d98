"""The sandbox's HTTPS server: PVE's ``/api2/json`` on 127.0.0.1, plus the ``/_sandbox/`` control API.

Wire behaviour follows pve-http-server and pve-manager ``PVE/HTTPServer.pm`` (reference/pve.md §4.1):
query string for GET/DELETE, form or JSON bodies for POST/PUT, ``{"data": …}`` on success, PVE's
error bodies, 401 with an empty body, 501 for paths PVE would not know. One thread per connection,
HTTP/1.1 keep-alive, because proxmoxer and the exporter reuse their connections.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from vzkeep.errors import UsageError
from vzkeep.sandbox.api import build_router
from vzkeep.sandbox.api.access import AuthFailed, Credentials, authenticate
from vzkeep.sandbox.api.errors import ApiError, die
from vzkeep.sandbox.api.router import ROOT, PagedResult, Principal, Request, Router
from vzkeep.sandbox.api.schema import validate
from vzkeep.sandbox.tls import ensure_certificate, server_context

API_PREFIX = "/api2/json"
CONTROL_PREFIX = "/_sandbox"
CREDENTIALS_FILE = "credentials.json"
CONNECTION_FILE = "sandbox.json"


class SandboxError(UsageError):
    """A problem starting the sandbox that the user can fix (busy port, unreadable state)."""


class SandboxApp:
    """The sandbox behind the HTTP layer: routes a request to its handler, in-process or over HTTPS."""

    def __init__(self, sandbox: Any, credentials: Credentials, fingerprint: str = "") -> None:
        self.sandbox = sandbox
        self.credentials = credentials
        self.fingerprint = fingerprint
        self.api: Router = build_router()
        from vzkeep.sandbox.control import build_control_router

        self.control: Router = build_control_router()

    @property
    def cluster(self) -> Any:
        return self.sandbox.cluster

    @property
    def local_node(self) -> str:
        """The node this endpoint "is": the first node by name, as if we talked to it directly."""
        return min(self.cluster.nodes)

    def save(self) -> None:
        """Persist the cluster after a change, so the state survives a restart."""
        save = getattr(self.sandbox, "save", None)
        if callable(save):
            save()
        else:
            self.cluster.save(Path(self.sandbox.state_dir) / "cluster.json")

    def call(
        self, method: str, path: str, params: dict[str, Any] | None = None, principal: Principal = ROOT,
        router: Router | None = None,
    ) -> Any:
        """Run one API call in-process (raises ApiError like the HTTP layer would answer)."""
        route, path_params = (router or self.api).resolve(method, path)
        merged = {**(params or {}), **{k: unquote(v) for k, v in path_params.items()}}
        req = Request(self, method, path, merged, principal)
        if route.perm:
            acl_path, privilege = route.perm
            req.require(acl_path.format(**path_params), privilege)
        req.params = validate(merged, route.schema)
        result = route.handler(req)
        if method != "GET":
            self.save()
        return result


# -- HTTP layer ---------------------------------------------------------------------------------


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    if "application/json" in content_type:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        return data
    return _flatten(parse_qs(raw.decode("utf-8"), keep_blank_values=True))


def _flatten(multi: dict[str, list[str]]) -> dict[str, Any]:
    return {k: (v[0] if len(v) == 1 else v) for k, v in multi.items()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by default: request lines are noise in tests and `serve` prints its own summary.
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            params = _flatten(parse_qs(url.query, keep_blank_values=True))
            params.update(_parse_body(self.headers.get("Content-Type", ""), raw))
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_error(ApiError(400, f"unable to parse request body - {exc}"))
            return
        path = url.path
        if path.startswith(API_PREFIX + "/"):
            self._dispatch(method, path[len(API_PREFIX):], params, app.api)
        elif path.startswith(CONTROL_PREFIX + "/"):
            self._dispatch(method, path[len(CONTROL_PREFIX):], params, app.control)
        else:
            self._send_error(ApiError(501, f"Method '{method} {path}' not implemented"))

    def _dispatch(self, method: str, path: str, params: dict[str, Any], router: Router) -> None:
        app = self.server.app
        path = unquote(path)
        try:
            principal = None
            if not (method == "POST" and path == "/access/ticket" and router is app.api):
                principal = self._authenticate(method)
            result = app.call(method, path, params, principal or ROOT, router=router)
        except AuthFailed as exc:
            self._send_unauthorized(str(exc))
            return
        except ApiError as exc:
            self._send_error(exc)
            return
        except Exception as exc:  # a bug or an engine error: PVE answers any other die with 500
            self._send_error(die(str(exc) or type(exc).__name__))
            return
        body: dict[str, Any] = {"data": result}
        if isinstance(result, PagedResult):
            body = {"data": result.items, "total": result.total}
        self._send_json(200, "OK", body)

    def _authenticate(self, method: str) -> Principal:
        cookies = {k: m.value for k, m in SimpleCookie(self.headers.get("Cookie", "")).items()}
        return authenticate(self.server.app.credentials, method, self.headers, cookies)

    def _send_unauthorized(self, reason: str) -> None:
        # PVE delays every unauthorized reply by 3 s to slow down guessing (AnyEvent.pm). The sandbox
        # only listens on 127.0.0.1, so by default it answers at once; tests would crawl otherwise.
        if self.server.auth_failure_delay:
            time.sleep(self.server.auth_failure_delay)
        self.send_response(401, reason)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_error(self, exc: ApiError) -> None:
        self._send_json(exc.status, exc.reason, exc.body())

    def _send_json(self, status: int, reason: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(payload)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a second sandbox on the same port must fail, not share it

    def __init__(self, address: tuple[str, int], app: SandboxApp, context: ssl.SSLContext,
                 auth_failure_delay: float) -> None:
        self.app = app
        self.context = context
        self.auth_failure_delay = auth_failure_delay
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow or rejecting
        # client never blocks the accept loop.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            tls.close()


class SandboxServer:
    """A running HTTPS server in a background thread; ``url`` ends with ``/api2/json``."""

    def __init__(self, app: SandboxApp, cert: Path, key: Path, host: str = "127.0.0.1", port: int = 8006,
                 auth_failure_delay: float = 0.0) -> None:
        try:
            self.httpd = _TLSServer((host, port), app, server_context(cert, key), auth_failure_delay)
        except OSError as exc:
            if exc.errno in (98, 48):  # EADDRINUSE on Linux / macOS
                raise SandboxError(
                    f"port {port} on {host} is already in use (another sandbox or a real PVE?); "
                    f"stop it or choose another port with --port"
                ) from exc
            raise SandboxError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self.app = app
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sandbox-https", daemon=True)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{API_PREFIX}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


# -- state directory ------------------------------------------------------------------------------


def load_or_create_credentials(state_dir: Path) -> Credentials:
    path = state_dir / CREDENTIALS_FILE
    if path.exists():
        return Credentials.from_json(json.loads(path.read_text()))
    creds = Credentials.generate()
    write_private_json(path, creds.to_json())
    return creds


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write a file holding secrets with mode 0600 from the start (never world-readable)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)


def connection_info(server: SandboxServer, creds: Credentials, fingerprint: str) -> dict[str, Any]:
    """The content of ``STATE/sandbox.json``: everything a client needs to connect."""
    return {
        "host": server.host,
        "port": server.port,
        "url": server.url,
        "fingerprint": fingerprint,
        "tokens": {role: token.to_json() for role, token in creds.tokens.items()},
        "password": {"user": "root@pam", "password": creds.root_password},
    }


def make_app(sandbox: Any, state_dir: Path) -> SandboxApp:
    """The API in front of ``sandbox``, with the state dir's credentials and certificate (made once)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    creds = load_or_create_credentials(state_dir)
    node = min(sandbox.cluster.nodes) if sandbox.cluster.nodes else "pve"
    _, _, fingerprint = ensure_certificate(state_dir, node)
    return SandboxApp(sandbox, creds, fingerprint)


def serve_app(app: SandboxApp, state_dir: Path, host: str = "127.0.0.1", port: int = 8006,
              auth_failure_delay: float = 0.0) -> SandboxServer:
    """Serve ``app`` over HTTPS and write ``STATE/sandbox.json`` (mode 0600) once listening."""
    node = min(app.cluster.nodes) if app.cluster.nodes else "pve"
    cert, key, fingerprint = ensure_certificate(state_dir, node)
    server = SandboxServer(app, cert, key, host, port, auth_failure_delay).start()
    write_private_json(state_dir / CONNECTION_FILE, connection_info(server, app.credentials, fingerprint))
    return server


def start_server(sandbox: Any, state_dir: Path, host: str = "127.0.0.1", port: int = 8006,
                 auth_failure_delay: float = 0.0) -> SandboxServer:
    """``make_app`` + ``serve_app``."""
    return serve_app(make_app(sandbox, state_dir), state_dir, host, port, auth_failure_delay)
