"""PVE's error replies, as exceptions the API handlers raise (pve-common ``PVE/Exception.pm``,
pve-manager ``PVE/HTTPServer.pm`` ``rest_handler``, pve-http-server ``Formatter/Standard.pm``).

Clients tell four shapes apart: a 400 with an ``errors`` map (``raise_param_exc``), a 403 with
``Permission check failed (…)`` (``raise_perm_exc``), a 500 whose message is the text of a plain
``die``, and a 501 for a method the API does not have. Code that catches an exception inside a
configuration lock and dies again with it (``die "$errmsg: $err"``, ``die "$@"``) turns a 400 or 403
into a 500 whose text is the exception stringified: ``400 Parameter verification failed.`` plus one
``param: message`` line per error (``stringify``).
"""

from __future__ import annotations

from typing import Any

PARAM_FAILED = "Parameter verification failed."


class ApiError(Exception):
    """An error reply: HTTP ``status``, the message (reason phrase = its first line), optional errors.

    ``plain`` marks a Perl ``die`` with a string (no ``PVE::Exception``, so no code when stringified);
    by default a 500 without errors is one.
    """

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None,
                 plain: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.plain = (status == 500 and not errors) if plain is None else plain

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

    def stringify(self) -> str:
        """``PVE::Exception::stringify``: ``<code> <msg>`` and one ``<param>: <msg>`` line per error."""
        text = self.message if self.plain else f"{self.status} {self.message}"
        if not text.endswith("\n"):
            text += "\n"
        for key, value in (self.errors or {}).items():
            text += f"{key}: {value}\n"
        return text


def param_error(errors: dict[str, str]) -> ApiError:
    """``raise_param_exc``: HTTP 400 ``{"errors": {param: msg}}``."""
    return ApiError(400, PARAM_FAILED, dict(errors))


def stringified_param_error(param: str, msg: str) -> ApiError:
    """A param exception re-thrown with ``die "$@"`` inside ``cfs_lock_file``: HTTP 500, text only."""
    return die(param_error({param: msg}).stringify())


def locked(message: str, error: Exception) -> ApiError:
    """``lock_user_config``/``lock_storage_config`` with ``$errmsg``: ``die "$errmsg: $err"``, where an
    exception is stringified (``400 Parameter verification failed.`` …)."""
    text = error.stringify() if isinstance(error, ApiError) else str(error)
    return die(f"{message}: {text}")


def die(message: str) -> ApiError:
    """A plain Perl ``die``: HTTP 500 with the text as message."""
    return ApiError(500, message, plain=True)


def permission_denied(path: str, priv: str) -> ApiError:
    """``raise_perm_exc("$path, $priv")``."""
    return ApiError(403, f"Permission check failed ({path}, {priv})\n")


def not_implemented(method: str, path: str) -> ApiError:
    return ApiError(501, f"Method '{method} {path}' not implemented")
