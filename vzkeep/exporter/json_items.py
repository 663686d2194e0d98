"""The items of PVE's ``{"data": [...]}`` answer, a piece at a time, from its bytes.

``json.loads`` first decodes the whole body into one ``str`` (as large as the body again) and then builds every
item; a storage listing of 50,000 backups is 10 MB of JSON. Here the list is cut into pieces of about
``PIECE_BYTES`` between two items (at ``},{``) and each piece is parsed on its own by the standard decoder, so
what exists at once is the body, one piece as text and its items, at the decoder's own speed.

A cut is kept only if the piece parses as a list: ``},{`` inside a string leaves the piece with an open string
(every quote inside a JSON string is escaped), and inside a nested value with an open bracket, so a wrong cut
never parses and the piece grows to the next ``},{``. PVE writes its answers as ``{"data":[...]}``
(pve-http-server ``src/PVE/APIServer/Formatter/Standard.pm``); any other layout is parsed whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

PIECE_BYTES = 1 << 20
_PREFIX = b'{"data":['
_SUFFIX = b"]}"
_CUT = b"},{"


def data_items(body: bytes, what: str) -> Iterator[Any]:
    """Each element of the answer's ``data`` list; ValueError when ``data`` is not a list."""
    for batch in data_batches(body, what):
        yield from batch


def data_batches(body: bytes, what: str) -> Iterator[list[Any]]:
    """The elements of the answer's ``data`` list, a piece's worth at a time."""
    stripped = body.rstrip()
    if not (stripped.startswith(_PREFIX) and stripped.endswith(_SUFFIX)):
        yield _whole(body, what)
        return
    end = len(stripped) - len(_SUFFIX)  # the list's closing bracket
    start = len(_PREFIX)
    while start < end:
        cut = body.find(_CUT, min(start + PIECE_BYTES, end), end)
        while True:
            stop = end if cut < 0 else cut + 1  # a piece ends with its last item's "}"
            try:
                items = json.loads(b"[" + body[start:stop] + b"]")
            except ValueError:
                if cut < 0:
                    yield _whole(body, what)  # not a list of items after all: let the decoder say why
                    return
                cut = body.find(_CUT, cut + 1, end)  # the cut was inside a value: take the next one
                continue
            break
        yield items
        start = stop + 1  # past the comma


def _whole(body: bytes, what: str) -> list[Any]:
    answer = json.loads(body)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"{what}: expected a list, got {type(data).__name__}")
    return data
