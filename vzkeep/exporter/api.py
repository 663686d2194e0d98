"""The exporter's one seam to PVE: ``ApiGet`` (``vzkeep.pve.client``), a read of one API path, and its errors.

Tests and benches pass any callable ``get(path, **params) -> data``; the command passes ``proxmoxer_get``,
which can also hand back an answer's raw JSON body (``raw_body``): the exporter reads the biggest answers,
storage listings with every backup volume, without building one dict per volume, and skips a listing whose
bytes did not change since the last poll.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vzkeep.pve.client import ApiGet  # the runtime's read seam: ``get(path, **params)`` → PVE's ``data``

if TYPE_CHECKING:
    from proxmoxer import ProxmoxAPI


class ProxmoxerGet:
    """The read seam over a ``proxmoxer.ProxmoxAPI`` (``vzkeep.connection.connect``)."""

    def __init__(self, api: ProxmoxAPI) -> None:
        self.api = api

    def __call__(self, path: str, /, **params: Any) -> Any:
        return self.api.get(path, **params)

    def raw(self, path: str, **params: Any) -> bytes:
        """PVE's whole answer, ``{"data": ...}``, as bytes, through proxmoxer's session (its auth, TLS pin
        and timeout). Not through ``get``: proxmoxer 2.3 formats every body into a debug message, even with
        debug logging off, which costs more than parsing a listing of 50,000 backups."""
        from proxmoxer.core import ResourceException

        store = getattr(self.api(path), "_store", None)
        if not isinstance(store, dict) or "session" not in store:  # another proxmoxer: parse, then dump
            return json.dumps({"data": self(path, **params)}).encode()
        # Streamed, then read at once: the body lands in one buffer instead of a list of 10 KiB chunks
        # joined into a second copy (requests' ``content``).
        with store["session"].request("GET", store["base_url"], params=params or None, stream=True) as response:
            if response.status_code >= 400:
                raise ResourceException(response.status_code, response.reason, response.text[:500])
            return bytes(response.raw.read(decode_content=True))


def proxmoxer_get(api: ProxmoxAPI) -> ApiGet:
    """The read seam over a ``proxmoxer.ProxmoxAPI`` (``vzkeep.connection.connect``)."""
    return ProxmoxerGet(api)


def raw_body(get: ApiGet, path: str, **params: Any) -> bytes | None:
    """The answer's JSON body as bytes when the seam can give it, else None (then call ``get``)."""
    raw = getattr(get, "raw", None)
    return raw(path, **params) if callable(raw) else None


# PVE answers 501 "Method 'GET /...' not implemented" for a path it does not serve (pve-http-server
# src/PVE/APIServer/AnyEvent.pm rest_handler): an older PVE, or a sandbox without that route.
NOT_IMPLEMENTED = 501


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed read (proxmoxer's ``ResourceException.status_code``, or ``http_status`` of
    vzkeep's own PVE client errors), else None."""
    for name in ("status_code", "http_status"):
        status = getattr(exc, name, None)
        if isinstance(status, int):
            return status
    return None


def describe(exc: Exception) -> str:
    """One line about a failure, without request headers (the token is in them, never in the message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
