"""The one seam between vzkeep's runtime and a PVE API: a typed client and the errors it raises.

PVE's API is a tree of paths answered over HTTPS under ``/api2/json`` (pve-http-server
``src/PVE/APIServer/AnyEvent.pm``; the tree is pve-manager ``PVE/API2.pm``): ``GET`` reads, ``POST``
creates (or starts a task and answers its UPID), ``PUT`` changes, ``DELETE`` removes; every answer is
``{"data": …}`` and an error is an HTTP status with PVE's reason phrase and, for bad parameters,
``{"errors": {param: text}}`` (pve-common ``src/PVE/Exception.pm``, ``raise_param_exc``).

``PveClient`` is that, typed: paths are PVE's (``nodes/pve1/qemu``, with or without the leading
``/``), parameters are PVE's names, the result is the ``data``. Restore, drill, the demo and the
backup inventory use nothing else, so a test (or another transport) can stand in for proxmoxer with
four methods. ``ApiGet`` is the read-only part the exporter polls with.

Errors: ``PveApiError`` when PVE answered with an error status (its own words kept), ``PveUnreachable``
when no answer came (connection refused or dropped, timeout). Callers decide what to retry: only
reads are retried by the task follower (``vzkeep.follow``); a POST is never sent twice.
"""

from __future__ import annotations

from typing import Any, Protocol

from vzkeep.errors import ExitStatus, VzkeepError

# pveproxy answers these when it cannot reach the node it proxies to (pve-http-server AnyEvent.pm:
# 595 "Errors during connection establishment", 596 "Broken pipe"), or a gateway in front of it does.
TRANSIENT_STATUSES = frozenset({502, 503, 504, 595, 596})


class ApiGet(Protocol):
    """``get("nodes/pve1/tasks", typefilter="vzdump")`` → the ``data`` of PVE's answer."""

    def __call__(self, path: str, **params: Any) -> Any: ...


class PveClient(Protocol):
    """Reads and the few writes the runtime makes, as PVE's HTTP API defines them."""

    def get(self, path: str, **params: Any) -> Any:
        """``GET /api2/json/<path>?params``: the answer's ``data``."""
        ...

    def post(self, path: str, **params: Any) -> Any:
        """``POST``: create, or start a task (the answer is its UPID)."""
        ...

    def put(self, path: str, **params: Any) -> Any:
        """``PUT``: change (e.g. a guest's config)."""
        ...

    def delete(self, path: str, **params: Any) -> Any:
        """``DELETE``: remove (e.g. a guest: the answer is the destroy task's UPID)."""
        ...


class PveApiError(VzkeepError):
    """PVE answered with an error: ``status`` (HTTP), ``reason`` (PVE's words), ``errors`` (per parameter)."""

    status = ExitStatus.FINDING

    def __init__(self, http_status: int, reason: str, errors: dict[str, str] | None = None,
                 *, method: str = "", path: str = "") -> None:
        self.http_status = http_status
        self.reason = reason.strip()
        self.errors = errors or {}
        self.method, self.path = method, path
        super().__init__(self.pve_words())

    def pve_words(self) -> str:
        """PVE's own message: the reason phrase, its parameter errors, the status (``… (HTTP 500)``)."""
        text = self.reason
        text += "".join(f"; {k}: {v}" if k else f"; {v}" for k, v in self.errors.items())
        return f"{text} (HTTP {self.http_status})"

    @property
    def transient(self) -> bool:
        """An error of the path to PVE, not of the request: asking again later may succeed."""
        return self.http_status in TRANSIENT_STATUSES


class PveUnreachable(VzkeepError):
    """No answer from PVE: connection refused or dropped, or a timeout. The request may have been lost."""

    status = ExitStatus.USAGE
    transient = True


def api_path(path: str) -> str:
    """``/nodes/pve1/qemu`` or ``nodes/pve1/qemu`` → ``nodes/pve1/qemu`` (relative to ``/api2/json``)."""
    return path.strip("/")
