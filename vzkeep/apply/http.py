"""The HTTP layer of bpg's provider, as data: one request, its form encoding, PVE's errors as bpg words them.

Every request bpg's client sends goes through ``DoRequest`` (bpg ``proxmox/api/client.go``): the body
struct is turned into ``url.Values`` by go-querystring and sent form-encoded
(``application/x-www-form-urlencoded``) for POST and PUT, appended as a query string for GET and
DELETE; nothing is sent as JSON. ``url.Values.Encode`` sorts the keys and escapes like Go's
``QueryEscape`` (space as ``+``). A non-2xx answer becomes ``received an HTTP <code> response -
Reason: <reason> (<param>: <error> - <message lines>)`` (``validateResponseCode``), and 404 or a
500 saying "does not exist" counts as "the requested resource does not exist".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

Form = tuple[tuple[str, str], ...]

# bpg proxmox/api/client.go validateResponseCode: a 500 with one of these means "gone" (ErrResourceDoesNotExist).
_GONE_MARKERS = ("does not exist", "no such resource", "no such ha", "No such file or directory")


@dataclass(frozen=True)
class PveRequest:
    """One call as bpg's client makes it: ``path`` is relative to ``/api2/json/`` and may already hold a
    query (bpg builds ``pools?poolid=x`` itself); ``form`` is the encoded body struct."""

    method: str
    path: str
    form: Form = ()

    def encoded(self) -> str:
        """``url.Values.Encode()``: keys sorted, values of one key in the order they were added."""
        ordered = sorted(enumerate(self.form), key=lambda item: (item[1][0], item[0]))
        return urlencode([pair for _, pair in ordered])

    def target(self) -> str:
        """The path as sent: GET and DELETE carry the encoded values in the query string."""
        body = self.encoded()
        if self.method in ("GET", "DELETE", "HEAD") and body:
            return f"{self.path}{'&' if '?' in self.path else '?'}{body}"
        return self.path

    def body(self) -> str | None:
        """The form body of a POST or PUT, or None (bpg sends none when the struct encodes to nothing)."""
        if self.method in ("GET", "DELETE", "HEAD"):
            return None
        return self.encoded() or None

    def __str__(self) -> str:
        return f"{self.method} /api2/json/{self.target()}"


class PveHttpError(Exception):
    """A non-2xx answer, worded as bpg's ``HTTPError`` (``proxmox/api/errors.go``)."""

    def __init__(self, code: int, reason: str, body: Mapping[str, Any] | None = None) -> None:
        self.code = code
        self.reason = reason
        self.message = _bpg_message(reason, body or {})
        super().__init__(f"received an HTTP {code} response - Reason: {self.message}")

    @property
    def does_not_exist(self) -> bool:
        """bpg's ``ErrResourceDoesNotExist``: 404, or a 500 whose text says the thing is gone."""
        return self.code == 404 or (self.code == 500 and any(m in self.message for m in _GONE_MARKERS))

    @property
    def already_exists(self) -> bool:
        return "already exists" in self.message


def _bpg_message(reason: str, body: Mapping[str, Any]) -> str:
    """``validateResponseCode``: the reason phrase, then ``(param: error - message lines)``."""
    details = [f"{key}: {str(value).rstrip()}" for key, value in sorted((body.get("errors") or {}).items())]
    message = body.get("message")
    if isinstance(message, str) and message:
        lines = list(dict.fromkeys(message.split("\n")))  # slices.Compact
        details += [line for line in lines if line and not line.startswith(reason)]
    return f"{reason} ({' - '.join(details)})" if details else reason


class Transport(Protocol):
    """Sends one request and returns the reply's ``data``, or raises ``PveHttpError``."""

    def send(self, request: PveRequest) -> Any: ...


# -- go-querystring encodings -----------------------------------------------------------------------


def flag(value: bool) -> str:
    """A ``CustomBool`` under a ``url:"…,int"`` tag: ``1`` / ``0``."""
    return "1" if value else "0"


def number(value: float) -> str:
    """A Go number as ``fmt.Sprint`` prints it (``%v``): ``4``, ``0.5``; Pulumi hands integers over as floats."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if float(value).is_integer() and math.isfinite(value):
        return str(int(value))
    return repr(float(value))


def comma(values: Iterable[str]) -> str:
    """A slice under a ``url:"…,comma"`` tag."""
    return ",".join(values)


def form(*pairs: tuple[str, Any]) -> Form:
    """The encoded struct: pairs whose value is None are left out (``omitempty`` on a nil pointer)."""
    return tuple((key, value) for key, value in pairs if value is not None)


def path_escape(segment: str) -> str:
    """Go's ``url.PathEscape`` (``shouldEscape`` in ``encodePathSegment`` mode): all but the unreserved
    characters and ``$&+:=@`` is escaped (``/ ; , ?`` are)."""
    return quote(str(segment), safe="$&+:=@")
