"""A PVE node's wall clock, as PVE's Perl code reads and writes it.

vzdump names archives with Perl's ``localtime`` and pve-storage reads the names back with
``Time::Local::timelocal`` (pve-storage ``src/PVE/Storage.pm`` ``archive_info``), so archive names, retention
buckets and task timestamps must agree with Perl, DST gaps and overlaps included. ``LocalClock`` is that clock.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from vzkeep.pve.values import load_zone

_SECS_PER_HOUR = 3600
_SECS_PER_DAY = 86400
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class LocalClock:
    """The wall clock of a PVE node in time zone ``tz`` (an IANA name; None = this process's zone).

    ``fields`` is Perl's ``localtime``, ``timelocal`` is ``Time::Local::timelocal``: PVE names
    archives with the first and reads them back with the second, so both must agree with Perl,
    DST gaps and overlaps included.
    """

    def __init__(self, tz: str | None = None) -> None:
        self.tz = tz
        self._zone = _load_zone(tz) if tz is not None else None
        # Offsets per UTC hour. An hour whose first and last second have the same offset is taken
        # as constant: tzdata has no pair of transitions less than an hour apart.
        self._hour_offsets: dict[int, int | None] = {}

    def offset(self, t: int) -> int:
        """Seconds east of UTC at epoch ``t`` (``_timegm(localtime(t)) - t`` in Time::Local)."""
        hour = t // _SECS_PER_HOUR
        try:
            constant = self._hour_offsets[hour]
        except KeyError:
            start = hour * _SECS_PER_HOUR
            first, last = self._exact_offset(start), self._exact_offset(start + _SECS_PER_HOUR - 1)
            constant = first if first == last else None
            self._hour_offsets[hour] = constant
        return constant if constant is not None else self._exact_offset(t)

    def local_seconds(self, t: int) -> int:
        """The local wall-clock time of ``t`` counted like an epoch (``_timegm(localtime(t))``)."""
        return t + self.offset(t)

    def fields(self, t: int) -> time.struct_time:
        """``localtime(t)``: year, month, day, hour, minute, second of the node's wall clock."""
        return time.gmtime(self.local_seconds(t))

    def strftime(self, fmt: str, t: int) -> str:
        return time.strftime(fmt, self.fields(t))

    def timelocal(self, year: int, month: int, mday: int, hour: int, minute: int, sec: int) -> int:
        """Epoch of a local wall-clock time, exactly as Time::Local 1.30 ``timelocal`` computes it.

        ``month`` is 1-based. In a DST overlap the earlier instant wins; a time inside a DST gap
        gives the instant one hour later (Time::Local documentation, "Ambiguous Local Times").
        """
        ref_t = timegm(year, month, mday, hour, minute, sec)
        # Fast path, same result: where the offset is one constant over every instant the
        # algorithm below probes (ref_t, loc_t, loc_t - 1h), it returns ref_t - offset.
        hours = self._hour_offsets
        constant = hours.get(ref_t // _SECS_PER_HOUR)
        if constant is not None:
            loc_t = ref_t - constant
            if hours.get(loc_t // _SECS_PER_HOUR) == constant == hours.get(loc_t // _SECS_PER_HOUR - 1):
                return loc_t
        zone_off = self.offset(ref_t)
        if not zone_off:
            return ref_t
        loc_t = ref_t - zone_off
        dst_off = ref_t - self.local_seconds(loc_t)
        # The second hour after a DST change where the local time moves backward.
        if not dst_off and (ref_t - _SECS_PER_HOUR) - self.local_seconds(loc_t - _SECS_PER_HOUR) < 0:
            return loc_t - _SECS_PER_HOUR
        loc_t += dst_off
        if dst_off > 0:
            return loc_t
        # Inside a forward-jump gap the adjustment was wrong: undo it.
        got = self.local_seconds(loc_t) % _SECS_PER_DAY
        if (got % 60, got // 60 % 60, got // _SECS_PER_HOUR) != (sec, minute, hour):
            loc_t -= dst_off
        return loc_t

    def _exact_offset(self, t: int) -> int:
        try:
            if self._zone is None:
                return time.localtime(t).tm_gmtoff
            delta = datetime.fromtimestamp(t, self._zone).utcoffset()
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"time {t} is outside the range this clock can convert") from exc
        return int(delta.total_seconds()) if delta is not None else 0


@lru_cache(maxsize=64)
def clock_of(tz: str | None) -> LocalClock:
    """One shared ``LocalClock`` per zone, so its per-hour offsets are worked out once per process."""
    return LocalClock(tz)


def timegm(year: int, month: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """Time::Local ``timegm`` with its range checks (month 1-based here, 0-based in Perl's messages)."""
    year = _perl_year(year)
    if not 1 <= month <= 12:
        raise ValueError(f"Month '{month - 1}' out of range 0..11")
    days_in_month = _MONTH_DAYS[month - 1] + (1 if month == 2 and _is_leap_year(year) else 0)
    if not 1 <= mday <= days_in_month:
        raise ValueError(f"Day '{mday}' out of range 1..{days_in_month}")
    if not 0 <= hour <= 23:
        raise ValueError(f"Hour '{hour}' out of range 0..23")
    if not 0 <= minute <= 59:
        raise ValueError(f"Minute '{minute}' out of range 0..59")
    if not 0 <= sec <= 59:
        raise ValueError(f"Second '{sec}' out of range 0..59")
    return days_from_civil(year, month, mday) * _SECS_PER_DAY + hour * _SECS_PER_HOUR + minute * 60 + sec


def _load_zone(tz: str) -> ZoneInfo:
    return load_zone(tz)


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_from_civil(year: int, month: int, mday: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any year (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + mday - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _perl_year(year: int) -> int:
    """How Time::Local reads a year: >= 1000 literally, 100..999 as years since 1900, and 0..99 in a
    rolling century around today (only reachable through names like ``0999``, never written by vzdump)."""
    if year >= 1000:
        return year
    if year >= 100:
        return year + 1900
    this_year = time.localtime().tm_year - 1900
    breakpoint_ = (this_year + 50) % 100
    next_century = this_year - this_year % 100 + (100 if breakpoint_ < 50 else 0)
    century = next_century - 100
    return year + (century if year > breakpoint_ else next_century) + 1900


def civil_from_days(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (year, month, day) of a day count since 1970-01-01."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day
