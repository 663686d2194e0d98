"""How PVE reads two kinds of values that vzkeep reads in many places: booleans and time zones.

Booleans: pve-common ``src/PVE/JSONSchema.pm`` ``parse_boolean``::

    return 1 if $bool =~ m/^(1|on|yes|true)$/i;
    return 0 if $bool =~ m/^(0|off|no|false)$/i;
    return undef;

(surrounding blanks are tolerated here, as every caller did before; PVE's API parameters never carry them).

Time zones: a node's zone is an IANA name (PVE's ``timezone`` format, ``pve_verify_timezone`` in the same
file, accepts ``UTC`` and the names of ``zone.tab``); what vzkeep needs is a zone it can compute with, so
the check is that the tz database knows the name, with one message everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TRUE_WORDS = frozenset({"1", "on", "yes", "true"})
FALSE_WORDS = frozenset({"0", "off", "no", "false"})


def parse_boolean(value: Any) -> bool | None:
    """PVE's reading of a boolean: True, False, or None when the value is not one of PVE's words."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def is_true(value: Any) -> bool:
    """PVE's ``if (parse_boolean($value))``: a value that is not one of PVE's words counts as false."""
    return parse_boolean(value) is True


class UnknownTimeZone(ValueError):
    """Not a time zone the tz database knows; the message names it and what is allowed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Paris' or 'UTC')")
        self.name = name


@lru_cache(maxsize=64)
def load_zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or UnknownTimeZone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise UnknownTimeZone(name) from None
