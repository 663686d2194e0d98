"""The sandbox's HTTPS server: PVE's ``/api2/json`` on 127.0.0.1, plus the ``/_sandbox/`` control API.

Wire behaviour follows pve-http-server ``src/PVE/APIServer/AnyEvent.pm`` and
``src/PVE/APIServer/Formatter/Standard.pm``, and pve-manager ``PVE/HTTPServer.pm``:
- parameters: the query string for every method, plus a form (``decode_urlencoded``: ``&`` or ``;``
  separated, a repeated key becomes a list) or JSON body for POST/PUT; query parameters win;
- authentication reads headers only, before any body byte (``authenticate_and_handle_request``);
- bodies: at most 512 KiB (``$limit_max_post``: 501 ``for data too large``), none on GET/DELETE
  (501 ``Unexpected content for method``), no chunked encoding (501); a malformed or too deeply nested
  JSON body dies in ``handle_api2_request`` (500, JSON::XS's text, ``max_depth`` 512);
- replies: ``{"data": …}`` (plus ``total`` when set and non-zero), errors ``{"data": null, "message",
  "errors"?}`` with the first line of the message as reason phrase; 401 with an empty body.
A ``Content-Length`` that is not a number gets 400 and the connection is closed (RFC 9112 §6.3;
PVE has no check of its own). Each reply is one write on a socket with ``TCP_NODELAY``, so a
keep-alive request costs no Nagle/delayed-ACK wait.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from vzkeep.atomic import write_private
from vzkeep.errors import UsageError
from vzkeep.sandbox.api import build_handlers
from vzkeep.sandbox.api.access.auth import ROOT, AuthFailed, Credentials, Principal, authenticate
from vzkeep.sandbox.api.access.rpcenv import PoolMembers, RpcEnv
from vzkeep.sandbox.api.access.store import AccessStore
from vzkeep.sandbox.api.dispatch import Dispatcher
from vzkeep.sandbox.api.errors import ApiError, die
from vzkeep.sandbox.api.router import PagedResult, Request, Router
from vzkeep.sandbox.api.schema import validate
from vzkeep.sandbox.api.versions import PveVersion
from vzkeep.sandbox.api.versions import get as get_version
from vzkeep.sandbox.tls import ThreadingTLSServer, ensure_certificate, server_context

API_PREFIX = "/api2/json"
CONTROL_PREFIX = "/_sandbox"
CREDENTIALS_FILE = "credentials.json"
CONNECTION_FILE = "sandbox.json"
MAX_BODY = 512 * 1024  # AnyEvent.pm $limit_max_post
MAX_JSON_DEPTH = 512  # JSON::XS default max_depth, which decode_json uses
IDLE_TIMEOUT = 60.0  # seconds a connection may sit idle or stall mid-request (PVE: 5 s idle)
UNAUTHENTICATED = (("POST", "/access/ticket"), ("GET", "/access/ticket"), ("GET", "/access/domains"))


class SandboxError(UsageError):
    """A problem starting the sandbox that the user can fix (busy port, unreadable state)."""


class SandboxApp:
    """The sandbox behind the HTTP layer: routes a request to its handler, in-process or over HTTPS."""

    def __init__(self, sandbox: Any, credentials: Credentials, fingerprint: str = "",
                 access: AccessStore | None = None, verify_results: bool = False) -> None:
        self.sandbox = sandbox
        self.credentials = credentials
        self.fingerprint = fingerprint
        self.version: PveVersion = get_version(getattr(sandbox.cluster, "pve_version", None))
        directory = Path(getattr(sandbox, "directory", "."))
        self.access = access or AccessStore.open(directory, self.version, credentials, self.now)
        self.api = Dispatcher(self, build_handlers(), verify_results)
        from vzkeep.sandbox.control import build_control_router

        self.control: Router = build_control_router()

    @property
    def cluster(self) -> Any:
        return self.sandbox.cluster

    @property
    def local_node(self) -> str:
        """The node this endpoint "is": the first node by name, as if we talked to it directly."""
        return min(self.cluster.nodes)

    def now(self) -> float:
        clock = getattr(self.sandbox, "clock", None)
        return float(clock.now()) if clock is not None else time.time()

    def pools(self) -> dict[str, PoolMembers]:
        """Pool members for permission checks (PVE reads them from user.cfg; the engine keeps them)."""
        cluster = self.cluster
        with cluster.lock:
            vms: dict[str, set[int]] = {pid: set() for pid in cluster.pools}
            for guest in cluster.guests.values():
                if guest.pool in vms:
                    vms[guest.pool].add(guest.vmid)
            return {pid: PoolMembers(frozenset(vms[pid]), frozenset(getattr(pool, "storage", None) or ()))
                    for pid, pool in cluster.pools.items()}

    def rpcenv(self) -> RpcEnv:
        return self.access.rpcenv(self.pools)

    def save(self) -> None:
        """Persist the cluster after a change, so the state survives a restart."""
        save = getattr(self.sandbox, "save", None)
        if callable(save):
            save()
        else:
            self.cluster.save(Path(self.sandbox.directory) / "cluster.json")

    def call(
        self, method: str, path: str, params: dict[str, Any] | None = None, principal: Principal = ROOT,
        router: Router | None = None,
    ) -> Any:
        """Run one API call in-process (raises ApiError like the HTTP layer would answer)."""
        if router is None or router is not self.control:
            return self.api.call(method, path, dict(params or {}), principal)
        return self._control_call(method, path, dict(params or {}), principal)

    def _control_call(self, method: str, path: str, params: dict[str, Any], principal: Principal) -> Any:
        route, path_params = self.control.resolve(method, path)
        merged = {**params, **{k: unquote_text(v) for k, v in path_params.items()}}
        req = Request(self, method, path, merged, principal)
        if route.perm:
            acl_path, privilege = route.perm
            req.require(acl_path.format(**path_params), privilege)
        req.params = validate(merged, route.schema)
        result = route.handler(req)
        if method != "GET":
            self.save()
        return result


# -- request parsing (AnyEvent.pm decode_urlencoded / extract_params) -------------------------------------


def unquote_text(text: str) -> str:
    """Percent-decode text that http.server decoded as Latin-1 (raw bytes), then read it as UTF-8."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def decode_urlencoded(data: str) -> dict[str, Any]:
    """``decode_urlencoded``: pairs split on ``&``/``;``, ``+`` is a space, a repeated key collects a
    list, a key without ``=`` is undefined (None). Like Perl's ``my ($k, $v) = split(/=/, $kv)``, a
    value ends at its next ``=`` (clients percent-encode ``=`` inside values)."""
    out: dict[str, Any] = {}
    for pair in re.split(r"[&;]", data):
        if pair == "":
            continue
        fields = pair.split("=")
        key = unquote_text(fields[0].replace("+", " "))
        value: Any = unquote_text(fields[1].replace("+", " ")) if len(fields) > 1 else None
        if value is not None and key in out and out[key] is not None:
            old = out[key]
            value = [*old, value] if isinstance(old, list) else [old, value]
        out[key] = value
    return out


class BodyError(Exception):
    """A body PVE's ``extract_params`` dies on: HTTP 500 with JSON::XS's message."""


def json_depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
    """None when ``raw`` nests at most ``limit`` deep, else the offset where it goes deeper (strings skipped)."""
    depth = 0
    for match in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return match.start()
        elif token in (b"]", b"}"):
            depth -= 1
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"malformed JSON string, neither tag, array, object, number, string or atom ('{name}')")


def parse_json_body(raw: bytes) -> dict[str, Any]:
    offset = json_depth_ok(raw)
    if offset is not None:
        snippet = raw[offset:offset + 10].decode("utf-8", "replace")
        raise BodyError("json text or perl structure exceeds maximum nesting level (max_depth set too low?), "
                        f"at character offset {offset} (before \"{snippet}\")")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError(f"malformed JSON string: {exc}") from None
    if not isinstance(data, dict):
        raise BodyError("Not a HASH reference")  # extract_params then treats it as a hash
    return data


def extract_params(method: str, content_type: str, raw: bytes, query: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if method in ("PUT", "POST") and raw:
        if content_type.split(";", 1)[0].strip().lower() == "application/json":
            params = parse_json_body(raw)
        else:
            params = decode_urlencoded(raw.decode("latin-1"))
    params.update(decode_urlencoded(query))
    params.pop("_dc", None)  # "remove disable cache parameter"
    return params


def parse_content_length(value: str | None) -> int | None:
    """The body length; None when absent; ValueError when it is not a plain non-negative number."""
    if value is None or value.strip() == "":
        return None
    if not re.fullmatch(r"\s*\d{1,15}\s*", value):
        raise ValueError(value)
    return int(value)


def safe_reason(text: str) -> str:
    """A reason phrase the status line can carry: the first line, in Latin-1."""
    first = text.split("\n", 1)[0].replace("\r", " ")
    return first.encode("latin-1", "replace").decode("latin-1")


# -- HTTP layer -------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    timeout = IDLE_TIMEOUT
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
        try:
            self._serve(method)
        except (OSError, ssl.SSLError):
            self.close_connection = True  # the client went away or stalled: nothing to answer
        except Exception as exc:  # a bug of ours: PVE answers any die with 500, and so do we
            self._send_error(die(str(exc) or type(exc).__name__))

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote_text(url.path)
        if path.startswith(API_PREFIX + "/"):
            rel, router = path[len(API_PREFIX):], None
        elif path.startswith(CONTROL_PREFIX + "/"):
            rel, router = path[len(CONTROL_PREFIX):], self.server.app.control
        else:
            if self.headers.get("Content-Length") not in (None, "", "0"):
                self._discard_and_close()
            self._send_error(ApiError(501, f"Method '{method} {path}' not implemented"))
            return
        encoding = self.headers.get("Transfer-Encoding")
        if encoding:
            self._discard_and_close()
            text = ("chunked transfer encoding not supported" if encoding.strip().lower() == "chunked"
                    else f"Unknown transfer encoding '{encoding}'")
            self._send_plain(501, text)
            return
        try:
            length = parse_content_length(self.headers.get("Content-Length"))
        except ValueError:
            self._discard_and_close()
            self._send_plain(400, "invalid Content-Length")
            return
        try:
            principal = ROOT
            if router is not None or (method, rel) not in UNAUTHENTICATED:
                principal = self._authenticate(method)
        except AuthFailed as exc:
            if length:
                self._discard_and_close()
            self._send_unauthorized(str(exc))
            return
        if length:
            if method not in ("PUT", "POST"):
                self._discard_and_close()
                self._send_plain(501, f"Unexpected content for method '{method}'")
                return
            if length > MAX_BODY:
                self._discard_and_close()
                self._send_plain(501, "for data too large")
                return
        raw = self.rfile.read(length) if length else b""
        try:
            params = extract_params(method, self.headers.get("Content-Type", ""), raw, url.query)
        except BodyError as exc:
            self._send_plain(500, str(exc))
            return
        self._dispatch(method, rel, params, principal, router)

    def _discard_and_close(self) -> None:
        # The body (if any) stays unread: the connection cannot carry another request.
        self.close_connection = True

    def _dispatch(self, method: str, path: str, params: dict[str, Any], principal: Principal,
                  router: Router | None) -> None:
        app = self.server.app
        try:
            result = app.call(method, path, params, principal, router=router)
        except ApiError as exc:
            self._send_error(exc)
            return
        body: dict[str, Any] = {"data": result}
        if isinstance(result, PagedResult):
            body = {"data": result.items}
            if result.total:
                body["total"] = result.total
        self._send_json(200, "OK", body)

    def _authenticate(self, method: str) -> Principal:
        try:
            cookies = {k: m.value for k, m in SimpleCookie(self.headers.get("Cookie", "")).items()}
        except CookieError:
            cookies = {}
        app = self.server.app
        return authenticate(app.credentials, app.access, method, self.headers, cookies)

    def _send_unauthorized(self, reason: str) -> None:
        # PVE delays every unauthorized reply by 3 s to slow down guessing (AnyEvent.pm). The sandbox
        # only listens on 127.0.0.1, so by default it answers at once; tests would crawl otherwise.
        if self.server.auth_failure_delay:
            time.sleep(self.server.auth_failure_delay)
        self._send(401, reason, [], b"")

    def _send_error(self, exc: ApiError) -> None:
        self._send_json(exc.status, exc.reason, exc.body())

    def _send_plain(self, status: int, text: str) -> None:
        # AnyEvent.pm error(): the message is the reason phrase and the body, no content type
        self._send(status, text, [], text.encode("utf-8", "replace"))

    def _send_json(self, status: int, reason: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._send(status, reason, [("Content-Type", "application/json;charset=UTF-8"),
                                    ("Cache-Control", "max-age=0")], payload)

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall on keep-alive)."""
        self.send_response(status, safe_reason(reason))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n" + payload)
        self.flush_headers()


class _TLSServer(ThreadingTLSServer):
    allow_reuse_address = False  # a second sandbox on the same port must fail, not share it
    idle_timeout = IDLE_TIMEOUT

    def __init__(self, address: tuple[str, int], app: SandboxApp, context: ssl.SSLContext,
                 auth_failure_delay: float) -> None:
        self.app = app
        self.context = context
        self.auth_failure_delay = auth_failure_delay
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback here; a client can trigger it, so stay quiet.
        return


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


# -- the sandbox's directory --------------------------------------------------------------------------------


def load_or_create_credentials(directory: Path) -> Credentials:
    path = directory / CREDENTIALS_FILE
    if path.exists():
        return Credentials.from_json(json.loads(path.read_text()))
    creds = Credentials.generate()
    write_private_json(path, creds.to_json())
    return creds


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write a file holding secrets: 0600 from creation, unique temp name, atomic (``vzkeep.atomic``)."""
    write_private(path, json.dumps(data, indent=1))


def connection_info(server: SandboxServer, creds: Credentials, fingerprint: str) -> dict[str, Any]:
    """The content of ``STATE/sandbox.json``: everything a client needs to connect."""
    return {
        "host": server.host,
        "port": server.port,
        "url": server.url,
        "fingerprint": fingerprint,
        "pve_version": server.app.version.version,
        "tokens": {role: token.to_json() for role, token in creds.tokens.items()},
        "password": {"user": "root@pam", "password": creds.root_password},
    }


def make_app(sandbox: Any, directory: Path, verify_results: bool = False) -> SandboxApp:
    """The API in front of ``sandbox``, with the state dir's credentials and certificate (made once)."""
    directory.mkdir(parents=True, exist_ok=True)
    creds = load_or_create_credentials(directory)
    node = min(sandbox.cluster.nodes) if sandbox.cluster.nodes else "pve"
    _, _, fingerprint = ensure_certificate(directory, node)
    return SandboxApp(sandbox, creds, fingerprint, verify_results=verify_results)


def serve_app(app: SandboxApp, directory: Path, host: str = "127.0.0.1", port: int = 8006,
              auth_failure_delay: float = 0.0) -> SandboxServer:
    """Serve ``app`` over HTTPS and write ``STATE/sandbox.json`` (mode 0600) once listening."""
    node = min(app.cluster.nodes) if app.cluster.nodes else "pve"
    cert, key, fingerprint = ensure_certificate(directory, node)
    server = SandboxServer(app, cert, key, host, port, auth_failure_delay).start()
    write_private_json(directory / CONNECTION_FILE, connection_info(server, app.credentials, fingerprint))
    return server


def start_server(sandbox: Any, directory: Path, host: str = "127.0.0.1", port: int = 8006,
                 auth_failure_delay: float = 0.0) -> SandboxServer:
    """``make_app`` + ``serve_app``."""
    return serve_app(make_app(sandbox, directory), directory, host, port, auth_failure_delay)

