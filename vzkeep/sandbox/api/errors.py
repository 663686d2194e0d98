"""PVE's error replies, as exceptions the API handlers raise (reference/pve.md §4.1).

PVE has four error shapes that clients tell apart: a real 400 with an ``errors`` map, a 403 with
``Permission check failed``, a plain 500 whose message is the ``die`` text, and a 501 for unknown
paths. ``/cluster/backup`` adds a fifth: a 400 exception stringified inside ``cfs_lock_file`` and
re-thrown as a 500 whose message still starts with ``400 Parameter verification failed.``.
"""

from __future__ import annotations

from typing import Any

PARAM_FAILED = "Parameter verification failed."


class ApiError(Exception):
    """An error reply: HTTP ``status``, the message (reason phrase = its first line), optional errors."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    @property
    def reason(self) -> str:
        # PVE puts the first line of the message in the HTTP status line (Formatter/Standard.pm).
        return self.message.split("\n", 1)[0]

    def body(self) -> dict[str, Any]:
        text = self.message if self.message.endswith("\n") else self.message + "\n"
        body: dict[str, Any] = {"data": None, "message": text}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def param_error(errors: dict[str, str]) -> ApiError:
    """``raise_param_exc``: HTTP 400 ``{"errors": {param: msg}}`` (reference §4.1)."""
    return ApiError(400, PARAM_FAILED, dict(errors))


def stringified_param_error(param: str, msg: str) -> ApiError:
    """A param exception re-thrown with ``die "$@"`` inside ``cfs_lock_file``: HTTP 500, text only.

    ``PVE::Exception::stringify`` writes ``<code> <msg>`` then one ``<param>: <msg>`` line per error
    (reference §4.1, /cluster/backup quirks).
    """
    return ApiError(500, f"400 {PARAM_FAILED}\n{param}: {msg}\n")


def die(message: str) -> ApiError:
    """A plain Perl ``die``: HTTP 500 with the text as message."""
    return ApiError(500, message)


def permission_denied(path: str, priv: str) -> ApiError:
    return ApiError(403, f"Permission check failed ({path}, {priv})")


def not_implemented(method: str, path: str) -> ApiError:
    return ApiError(501, f"Method '{method} {path}' not implemented")
