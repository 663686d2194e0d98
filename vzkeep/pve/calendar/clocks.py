"""Clocks: how broken-down local time maps to epoch seconds in UTC, an IANA zone, or the process's own zone
(glibc ``mktime`` with ``tm_isdst=-1``, as PVE's search calls it)."""

from __future__ import annotations

import abc
import time
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from vzkeep.pve.values import load_zone


class Clock(abc.ABC):
    """UTC offsets of one zone, and glibc-mktime-like resolution of a local time to an epoch."""

    @abc.abstractmethod
    def offset_at(self, epoch: int) -> int:
        """Seconds east of UTC at ``epoch``."""

    def resolve(self, naive: int, hint: int) -> tuple[int, int]:
        """Epoch and offset for local time ``naive`` (local seconds counted like epoch seconds).

        glibc's mktime(tm_isdst=-1) first tries the previous call's offset; we pass the offset of the
        time being edited as ``hint``, which is what that previous call produced inside the loop. If
        that fails the time is either ambiguous (take the earlier instant) or in a gap; for a gap glibc
        returns the instant that lies the gap's size later, i.e. the time read with the offset from
        before the transition (verified on bookworm's glibc 2.36, Europe/Vienna).
        """
        if self.offset_at(naive - hint) == hint:
            return naive - hint, hint
        # the offsets around `naive`: before and after a possible transition, and the hint's answer
        candidates = {self.offset_at(naive - 86400), self.offset_at(naive + 86400)}
        candidates.add(self.offset_at(naive - hint))
        valid = [o for o in candidates if self.offset_at(naive - o) == o]
        if valid:
            offset = max(valid)  # ambiguous: the first occurrence
            return naive - offset, offset
        before = min(candidates)
        epoch = naive - before
        return epoch, self.offset_at(epoch)


class UtcClock(Clock):
    def offset_at(self, epoch: int) -> int:
        return 0

    def resolve(self, naive: int, hint: int) -> tuple[int, int]:
        return naive, 0


class ZoneClock(Clock):
    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def offset_at(self, epoch: int) -> int:
        try:
            offset = datetime.fromtimestamp(epoch, self.zone).utcoffset()
        except (ValueError, OSError) as exc:  # outside years 1..9999
            raise OverflowError(str(exc)) from exc
        assert offset is not None
        return offset.days * 86400 + offset.seconds


class SystemClock(Clock):
    """The process's local zone (TZ or /etc/localtime), read through libc like PVE does."""

    def offset_at(self, epoch: int) -> int:
        try:
            return time.localtime(epoch).tm_gmtoff
        except (ValueError, OSError) as exc:
            raise OverflowError(str(exc)) from exc


UTC_CLOCK = UtcClock()
SYSTEM_CLOCK = SystemClock()


@lru_cache(maxsize=64)
def zone_clock(name: str) -> Clock:
    if name in ("UTC", "Etc/UTC"):
        return UTC_CLOCK
    return ZoneClock(load_zone(name))


def clock_for(tz: str | None) -> Clock:
    return SYSTEM_CLOCK if tz is None else zone_clock(tz)
