"""How every runtime command reaches a PVE API: one option set, one ``connect``.

Options (flag / environment variable)::

    --endpoint URL          VZKEEP_ENDPOINT      https://pve1.home.arpa:8006
    --token-file FILE       VZKEEP_TOKEN_FILE    a file holding USER@REALM!TOKENID=SECRET
    --fingerprint SHA256    VZKEEP_FINGERPRINT   pin the server certificate (AA:BB:… as PVE shows it)
    --insecure                                   skip certificate checks (not recommended)
    --sandbox FILE          VZKEEP_SANDBOX       STATE/sandbox.json of `vzkeep sandbox serve`
    --read-only                                  with --sandbox: use the auditor token, not the admin one

A command declares them by decorating itself with :func:`with_connection`, which adds the options
to its signature and hands it a :class:`ConnectionOptions` as ``conn``::

    @app.command()
    @with_connection
    def list_guests(conn: ConnectionOptions, as_json: bool = False) -> None:
        pve = connect_client(conn)        # a vzkeep.pve.client.PveClient
        for guest in pve.get("cluster/resources", type="vm"):
            ...

The token secret is read from a file (never a flag: flags end up in shell history and ``ps``).
``connect_client`` is the runtime's way in (typed, PVE's errors as ``PveApiError``); ``connect`` gives
the bare ``proxmoxer.ProxmoxAPI`` it wraps, for code that speaks proxmoxer's dialect.
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from vzkeep.errors import UsageError
from vzkeep.fingerprint import FingerprintAdapter, normalize_fingerprint
from vzkeep.pve.client import PveApiError, PveClient, PveUnreachable, api_path

TOKEN_HELP = "file holding the API token as USER@REALM!TOKENID=SECRET (e.g. monitoring@pve!exporter=…)"


class ConnectionConfigError(UsageError, ValueError):
    """The connection options are incomplete or contradict each other; the text says how to fix it."""


@dataclass(frozen=True)
class ConnectionOptions:
    endpoint: str | None = None
    token_file: Path | None = None
    fingerprint: str | None = None
    insecure: bool = False
    sandbox: Path | None = None
    read_only: bool = False
    timeout: float = 10.0


@dataclass(frozen=True)
class Target:
    """A resolved connection: where, as whom, and how the certificate is checked."""

    host: str
    port: int
    user: str
    token_name: str
    token_value: str
    fingerprint: str | None  # pinned SHA-256, PVE's AA:BB:… form
    verify: bool  # CA verification when nothing is pinned and --insecure is not given

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/api2/json"

    def __repr__(self) -> str:  # never show the secret
        return f"Target({self.user}!{self.token_name} @ {self.host}:{self.port})"


# -- the typer options, defined once -----------------------------------------------------------------

EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", envvar="VZKEEP_ENDPOINT", help="PVE API endpoint, e.g. https://pve1.home.arpa:8006",
    rich_help_panel="Connection")]
TokenFileOpt = Annotated[Path | None, typer.Option(
    "--token-file", envvar="VZKEEP_TOKEN_FILE", help=TOKEN_HELP, rich_help_panel="Connection")]
FingerprintOpt = Annotated[str | None, typer.Option(
    "--fingerprint", envvar="VZKEEP_FINGERPRINT",
    help="pin the server certificate: its SHA-256 fingerprint as the PVE GUI shows it (AA:BB:…)",
    rich_help_panel="Connection")]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="do not check the server certificate at all (prefer --fingerprint)",
    rich_help_panel="Connection")]
SandboxOpt = Annotated[Path | None, typer.Option(
    "--sandbox", envvar="VZKEEP_SANDBOX", help="connect to a sandbox: its STATE/sandbox.json",
    rich_help_panel="Connection")]
ReadOnlyOpt = Annotated[bool, typer.Option(
    "--read-only", help="with --sandbox: use the read-only auditor token", rich_help_panel="Connection")]

_OPTIONS: dict[str, tuple[Any, Any]] = {
    "endpoint": (EndpointOpt, None),
    "token_file": (TokenFileOpt, None),
    "fingerprint": (FingerprintOpt, None),
    "insecure": (InsecureOpt, False),
    "sandbox": (SandboxOpt, None),
    "read_only": (ReadOnlyOpt, False),
}


def with_connection(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the connection options to a typer command; it receives them as ``conn: ConnectionOptions``."""
    return with_option_group("conn", ConnectionOptions, _OPTIONS)(func)


def with_option_group(param: str, factory: Callable[..., Any], options: dict[str, tuple[Any, Any]]
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding ``options`` (name → (annotated type, default)) to a typer command's signature;
    the command receives them together as ``param=factory(**values)``. One definition of a group of
    options shared by several commands (the connection here, the state target in ``vzkeep state``)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)
        # Resolve string annotations (`from __future__ import annotations`) in the command's module: typer
        # reads the signature, and with a bare string it would lose every option name and help text.
        resolved = _type_hints(func)
        kept = [p.replace(annotation=resolved.get(name, p.annotation))
                for name, p in signature.parameters.items() if name != param]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for name, (annotation, default) in options.items()]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            group = factory(**{name: kwargs.pop(name) for name in options})
            return func(*args, **{param: group}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        hints = {k: v for k, v in resolved.items() if k != param}
        hints.update({name: annotation for name, (annotation, _) in options.items()})
        wrapper.__annotations__ = hints
        del wrapper.__wrapped__  # typer must see the new signature, not the wrapped one
        return wrapper

    return decorate


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(func, include_extras=True)


# -- resolving options into a target ----------------------------------------------------------------


def read_token_file(path: Path) -> tuple[str, str, str]:
    """``USER@REALM!TOKENID=SECRET`` → (user, token id, secret); split at the last '=' like PVE."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConnectionConfigError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    token_id, sep, secret = text.rpartition("=")
    user, bang, name = token_id.partition("!")
    if not (sep and bang and "@" in user and name and secret):
        raise ConnectionConfigError(
            f"--token-file {path}: expected one line USER@REALM!TOKENID=SECRET (e.g. monitoring@pve!exporter=…)"
        )
    return user, name, secret


def _from_sandbox(opts: ConnectionOptions) -> Target:
    path = Path(opts.sandbox)  # type: ignore[arg-type]
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConnectionConfigError(
            f"--sandbox {path}: cannot read the sandbox connection file ({exc}); start one with "
            "`vzkeep sandbox serve --dir DIR` and pass DIR/sandbox.json"
        ) from None
    token = info["tokens"]["auditor" if opts.read_only else "admin"]
    return Target(host=info["host"], port=int(info["port"]), user=token["user"], token_name=token["token_name"],
                  token_value=token["token_value"], fingerprint=normalize_fingerprint(info["fingerprint"]),
                  verify=False)


def _from_endpoint(opts: ConnectionOptions) -> Target:
    if not opts.endpoint:
        raise ConnectionConfigError("no PVE endpoint: give --endpoint URL (or VZKEEP_ENDPOINT), or --sandbox FILE")
    url = urlsplit(opts.endpoint if "://" in opts.endpoint else f"https://{opts.endpoint}")
    if url.scheme != "https" or not url.hostname:
        raise ConnectionConfigError(
            f"--endpoint {opts.endpoint!r}: expected https://HOST[:PORT] (PVE only speaks HTTPS)")
    if not opts.token_file:
        raise ConnectionConfigError("no API token: give --token-file FILE (or VZKEEP_TOKEN_FILE)")
    user, name, secret = read_token_file(Path(opts.token_file))
    if opts.fingerprint and opts.insecure:
        raise ConnectionConfigError("--fingerprint and --insecure contradict each other: pin the certificate or don't")
    try:
        pin = normalize_fingerprint(opts.fingerprint) if opts.fingerprint else None
    except ValueError as exc:
        raise ConnectionConfigError(f"--fingerprint: {exc}") from None
    return Target(host=url.hostname, port=url.port or 8006, user=user, token_name=name, token_value=secret,
                  fingerprint=pin, verify=not (pin or opts.insecure))


def resolve(opts: ConnectionOptions) -> Target:
    """Where to connect and how; ``--sandbox`` wins over ``--endpoint``."""
    return _from_sandbox(opts) if opts.sandbox else _from_endpoint(opts)


# -- connecting -----------------------------------------------------------------------------------------


def connect(opts: ConnectionOptions | Target) -> Any:
    """A ``proxmoxer.ProxmoxAPI`` for the options; a pinned fingerprint is enforced on every connection."""
    from proxmoxer import ProxmoxAPI

    target = opts if isinstance(opts, Target) else resolve(opts)
    timeout = opts.timeout if isinstance(opts, ConnectionOptions) else 10.0
    api = ProxmoxAPI(target.host, port=target.port, user=target.user, token_name=target.token_name,
                     token_value=target.token_value, verify_ssl=target.verify, timeout=timeout)
    session = api._store["session"]
    if target.fingerprint:
        session.mount("https://", FingerprintAdapter(target.fingerprint))
    if not target.verify:
        # The certificate is either pinned (checked above) or deliberately not checked (--insecure);
        # urllib3's "unverified request" warning would only be noise.
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    return api


def connect_client(opts: ConnectionOptions | Target) -> PveClient:
    """The runtime's typed PVE client for the options (see :class:`ProxmoxerClient`)."""
    target = opts if isinstance(opts, Target) else resolve(opts)
    return ProxmoxerClient(connect(opts), f"{target.host}:{target.port}")


class ProxmoxerClient:
    """A :class:`vzkeep.pve.client.PveClient` over ``proxmoxer.ProxmoxAPI``.

    proxmoxer already speaks in paths (``api.get("nodes/pve1/tasks")``); this adds the seam's error
    contract: PVE's error answers become ``PveApiError`` with PVE's words, a request that got no answer
    becomes ``PveUnreachable``. Nothing is retried here: the caller knows whether a call is safe to repeat.
    """

    def __init__(self, proxmox: Any, where: str = "the PVE API") -> None:
        self.proxmox = proxmox  # a proxmoxer.ProxmoxAPI (untyped upstream)
        self.where = where

    def get(self, path: str, /, **params: Any) -> Any:
        return self._call("GET", path, params)

    def post(self, path: str, /, **params: Any) -> Any:
        return self._call("POST", path, params)

    def put(self, path: str, /, **params: Any) -> Any:
        return self._call("PUT", path, params)

    def delete(self, path: str, /, **params: Any) -> Any:
        return self._call("DELETE", path, params)

    def _call(self, method: str, path: str, params: dict[str, Any]) -> Any:
        import requests
        from proxmoxer.core import ResourceException

        path = api_path(path)
        try:
            return getattr(self.proxmox, method.lower())(path, **params)
        except ResourceException as exc:
            errors = exc.errors if isinstance(exc.errors, dict) else ({"": str(exc.errors)} if exc.errors else {})
            raise PveApiError(int(exc.status_code), str(exc.content or exc.status_message or ""),
                              {str(k): str(v) for k, v in errors.items()}, method=method, path=path) from None
        except requests.RequestException as exc:
            raise PveUnreachable(f"{method} /{path}: no answer from {self.where} ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    # requests nests the cause (MaxRetryError → NewConnectionError …); its innermost text is the useful one.
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    return str(inner) or type(exc).__name__
