"""The next run: a broken-down time edited field by field until every field matches (Rust ``TmEditor`` and
``compute_next_event``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vzkeep.pve.calendar.clocks import Clock
from vzkeep.pve.calendar.fields import ALL_WEEKDAYS, find_next, list_contains
from vzkeep.pve.localtime import civil_from_days, days_from_civil

if TYPE_CHECKING:
    from vzkeep.pve.calendar.event import CalendarEvent

# Rust's `compute_next_event` gives up after this many passes ("cancel after 1000 loops"; the check
# `count > 1000` runs before the increment, so 1001 passes happen).
MAX_PASSES = 1001


class Tm:
    """A broken-down time that re-normalises after every edit, like ``TmEditor`` over mktime/timegm."""

    __slots__ = ("clock", "day", "epoch", "hour", "minute", "month", "offset", "second", "wday", "year")

    def __init__(self, clock: Clock, epoch: int) -> None:
        self.clock = clock
        self.epoch = epoch
        self.offset = clock.offset_at(epoch)
        self._set_fields(epoch + self.offset)

    def _set_fields(self, naive: int) -> None:
        days, secs = divmod(naive, 86400)
        self.year, self.month, self.day = civil_from_days(days)
        self.hour, rest = divmod(secs, 3600)
        self.minute, self.second = divmod(rest, 60)
        self.wday = (days + 3) % 7  # Monday = 0 (Rust `day_num`); 1970-01-01 was a Thursday

    def _normalize(self, year: int, month: int, day: int, hour: int, minute: int, second: int) -> None:
        year += (month - 1) // 12
        month = (month - 1) % 12 + 1
        naive = (days_from_civil(year, month, 1) + day - 1) * 86400 + hour * 3600 + minute * 60 + second
        self.epoch, self.offset = self.clock.resolve(naive, self.offset)
        self._set_fields(self.epoch + self.offset)

    def add_years(self, years: int) -> None:
        self._normalize(self.year + years, 1, 1, 0, 0, 0)

    def add_months(self, months: int) -> None:
        self._normalize(self.year, self.month + months, 1, 0, 0, 0)

    def add_days(self, days: int) -> None:
        self._normalize(self.year, self.month, self.day + days, 0, 0, 0)

    def set_time(self, hour: int, minute: int, second: int) -> None:
        self._normalize(self.year, self.month, self.day, hour, minute, second)

    def set_min_sec(self, minute: int, second: int) -> None:
        self._normalize(self.year, self.month, self.day, self.hour, minute, second)

    def set_sec(self, second: int) -> None:
        self._normalize(self.year, self.month, self.day, self.hour, self.minute, second)


def compute_next(event: CalendarEvent, clock: Clock, last: int) -> int | None:
    """Rust ``compute_next_event``, one branch per field in upstream order."""
    t = Tm(clock, last + 1)
    months, days, hours, minutes, seconds = event._tables
    weekdays = event.weekdays
    any_weekday = weekdays in (0, ALL_WEEKDAYS)
    for _ in range(MAX_PASSES):
        if event.year and not list_contains(event.year, t.year):
            n = find_next(event.year, t.year)
            if n is None:
                return None  # no valid year left
            t.add_years(n - t.year)
            continue
        if months is not None and not months.contains[t.month]:
            n = months.following[t.month]
            t.add_months(n - t.month) if n is not None else t.add_years(1)
            continue
        if days is not None and not days.contains[t.day]:
            n = days.following[t.day]
            t.add_days(n - t.day) if n is not None else t.add_months(1)
            continue
        if not any_weekday and not weekdays >> t.wday & 1:
            later = [d for d in range(t.wday + 1, 7) if weekdays >> d & 1]
            t.add_days((later[0] if later else 7) - t.wday)  # else: next Monday
            continue
        if hours is not None and not hours.contains[t.hour]:
            n = hours.following[t.hour]
            t.set_time(n, 0, 0) if n is not None else t.add_days(1)
            continue
        if minutes is not None and not minutes.contains[t.minute]:
            n = minutes.following[t.minute]
            t.set_min_sec(n, 0) if n is not None else t.set_time(t.hour + 1, 0, 0)
            continue
        if seconds is not None and not seconds.contains[t.second]:
            n = seconds.following[t.second]
            t.set_sec(n) if n is not None else t.set_min_sec(t.minute + 1, 0)
            continue
        return t.epoch
    return None
