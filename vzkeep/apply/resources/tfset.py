"""The order in which a Terraform set reaches a provider's code, where that order shows in a request.

A plugin-SDK ``schema.Set`` of strings lists its elements by ``schema.HashString`` (CRC-32 of the
string), the hash codes compared as decimal strings (terraform-plugin-sdk ``helper/schema/set.go``
``listCode``, ``helper/schema/serialize.go`` ``HashString``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable


def sdk_set_order(values: Iterable[str]) -> list[str]:
    """``(*schema.Set).List()`` of a set of strings: distinct values, sorted by str(crc32)."""
    return sorted({str(v) for v in values}, key=lambda v: str(zlib.crc32(v.encode())))
