"""The exporter's one seam to PVE: ``ApiGet``, a read of one API path (proxmoxer's shape), and its errors.

Tests and benches pass any callable ``get(path, **params) -> data``; the command passes ``proxmoxer_get``.
"""

from __future__ import annotations

from typing import Any, Protocol


class ApiGet(Protocol):
    """``get("nodes/pve1/tasks", typefilter="vzdump")`` → the ``data`` of PVE's answer (proxmoxer's shape)."""

    def __call__(self, path: str, **params: Any) -> Any: ...


def proxmoxer_get(api: Any) -> ApiGet:
    """The read seam over a ``proxmoxer.ProxmoxAPI`` (``vzkeep.connection.connect``)."""

    def get(path: str, **params: Any) -> Any:
        return api.get(path, **params)

    return get


# PVE answers 501 "Method 'GET /...' not implemented" for a path it does not serve (pve-http-server
# src/PVE/APIServer/AnyEvent.pm rest_handler): an older PVE, or a sandbox without that route.
NOT_IMPLEMENTED = 501


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed read (proxmoxer's ``ResourceException.status_code``), else None."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def describe(exc: Exception) -> str:
    """One line about a failure, without request headers (the token is in them, never in the message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
