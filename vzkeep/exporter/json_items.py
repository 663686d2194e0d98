"""The items of PVE's ``{"data": [...]}`` answer, one at a time, from its bytes.

``json.loads`` first decodes the whole body into one ``str`` (as large as the body again) and then builds every
item; a storage listing of 50,000 backups is 10 MB of JSON. Here the body is decoded a slice at a time and each
item parsed with the standard decoder (``raw_decode``) as soon as it is complete, so what exists at once is the
body, one slice and one item. PVE writes its answers as ``{"data":...}`` (pve-http-server
``src/PVE/APIServer/Formatter/Standard.pm``); any other layout is parsed whole, which gives the same items.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any

SLICE_BYTES = 256 * 1024
_PREFIX = b'{"data":['
_DECODER = json.JSONDecoder()
_AFTER_ITEM = frozenset(",] \t\r\n")


def data_items(body: bytes, what: str) -> Iterator[Any]:
    """Each element of the answer's ``data`` list; ValueError when ``data`` is not a list."""
    if not body.startswith(_PREFIX):
        answer = json.loads(body)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise ValueError(f"{what}: expected a list, got {type(data).__name__}")
        yield from data
        return
    yield from _stream(body, len(_PREFIX), what)


def _stream(body: bytes, start: int, what: str) -> Iterator[Any]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    text, at, position = "", 0, start

    def read() -> bool:
        """Append the next slice of the body to what is left of the text; False at the end."""
        nonlocal text, at, position
        if position >= len(body):
            return False
        chunk = body[position:position + SLICE_BYTES]
        position += len(chunk)
        text = text[at:] + decoder.decode(chunk, final=position >= len(body))
        at = 0
        return True

    expect_item = True  # after "[" or ","
    while True:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at >= len(text):
            if not read():
                raise ValueError(f"{what}: the answer ends inside its data list")
            continue
        if not expect_item:
            if text[at] == ",":
                at, expect_item = at + 1, True
                continue
            if text[at] == "]":
                return
            raise ValueError(f"{what}: unexpected {text[at]!r} in the data list")
        if text[at] == "]":
            return  # an empty list
        try:
            item, end = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            if not read():
                raise ValueError(f"{what}: the answer ends inside an item") from None
            continue
        # A number is complete only where a delimiter follows ("1" may be the start of "1.5e3" in the next slice).
        unfinished = end >= len(text) or text[end] not in _AFTER_ITEM
        if not isinstance(item, dict | list | str) and unfinished and read():
            continue
        yield item
        at, expect_item = end, False
