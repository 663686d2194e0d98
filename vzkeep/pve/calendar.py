"""PVE calendar events: parse a backup job's ``schedule`` and compute when it runs next.

A faithful port of proxmox-time's ``calendar_event.rs`` (proxmox-rs f330500), which PVE uses through
pve-common ``PVE::CalendarEvent`` (reference/pve.md §3). Acceptance, quirks and next-run results are
meant to be identical to a PVE node's:

- keywords (``daily``, ``weekly``...) only as the whole string, optionally followed by ``UTC``
  (``daily 02:00`` is invalid);
- a lone number is a *minute* (``22`` = minute 22 of every hour), ``25:00`` is minute 25 second 0;
- ``fri..mon`` wraps; ``*/0`` and ``61`` are invalid; at most 128 characters;
- next run: fields checked year, month, day, weekday, hour, minute, second; the first mismatch jumps
  to its next allowed value and zeroes the smaller fields, carrying upward; at most 1000 passes;
- local time behaves like glibc ``mktime`` with ``tm_isdst=-1``: a time in a spring-forward gap
  moves forward by the gap (so ``2:30`` is skipped that day); an ambiguous fall-back time keeps the
  UTC offset of the time being edited (so ``2:30`` runs once, at the first 02:30).

Public API: :func:`parse` and :class:`CalendarEvent` (``next_after``, ``iter_after``, ``times_in_days``).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo

from vzkeep.pve.localtime import civil_from_days, days_from_civil
from vzkeep.pve.values import load_zone

__all__ = ["MAX_LENGTH", "CalendarEvent", "CalendarEventError", "Value", "check_zone", "parse"]

# pve-manager's job schema: `schedule` has maxLength 128 (reference §3.1).
MAX_LENGTH = 128

# Rust's `compute_next_event` gives up after this many passes ("cancel after 1000 loops"; the check
# `count > 1000` runs before the increment, so 1001 passes happen).
_MAX_PASSES = 1001

_WEEKDAY_BITS = {
    "monday": 1, "mon": 1, "tuesday": 2, "tue": 2, "wednesday": 4, "wed": 4, "thursday": 8, "thu": 8,
    "friday": 16, "fri": 16, "saturday": 32, "sat": 32, "sunday": 64, "sun": 64,
}  # fmt: skip
_ALL_WEEKDAYS = 127
_U32_MAX = 0xFFFFFFFF
_T = TypeVar("_T")


class CalendarEventError(ValueError):
    """A schedule PVE would refuse.

    ``str(error)`` is PVE's own reason (what ``pvesh`` or the API would print after
    ``invalid calendar event '<text>' - ``); ``hint`` says in plain words what is wrong and what to write.
    """

    def __init__(self, text: str, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.text = text
        self.reason = reason
        self.hint = hint

    @property
    def pve_message(self) -> str:
        """The full message PVE's schema check produces (pve-common ``pve_verify_calendar_event``)."""
        return f"invalid calendar event '{self.text}' - {self.reason}"


# --- field values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One comma-separated item of a field (Rust ``DateTimeValue``).

    ``Value(5)`` is ``5``; ``Value(4, end=10)`` is ``4..10``; ``Value(5, repeat=2)`` is ``5/2`` (5, 7, 9,
    ... without upper bound); ``Value(4, end=10, repeat=2)`` is ``4..10/2``. ``repeat`` may be 0 (then
    only ``start`` matches), exactly as upstream.
    """

    start: int
    end: int | None = None
    repeat: int | None = None

    def contains(self, value: int) -> bool:
        if self.repeat is None:
            if self.end is None:
                return value == self.start
            return self.start <= value <= self.end
        if value < self.start:
            return False
        if self.repeat == 0:
            return value == self.start
        in_step = (value - self.start) % self.repeat == 0
        return in_step and (self.end is None or value <= self.end)

    def next_above(self, value: int) -> int | None:
        """The smallest member greater than ``value``, computed like Rust ``find_next``.

        An open repetition (``22/5``) has no upper bound, so this may exceed the field's range (27 for an
        hour); the caller then lets mktime normalise it into the next day, as PVE does.
        """
        if self.repeat is None and self.end is None:
            return self.start if self.start > value else None
        if value < self.start:
            return self.start
        if self.repeat is None:
            assert self.end is not None
            return value + 1 if value + 1 <= self.end else None
        if self.repeat == 0:
            return None
        n = self.start + ((value - self.start + self.repeat) // self.repeat) * self.repeat
        return n if self.end is None or n <= self.end else None


def _list_contains(values: tuple[Value, ...], value: int) -> bool:
    return any(v.contains(value) for v in values)


def _find_next(values: tuple[Value, ...], value: int) -> int | None:
    found = [n for n in (v.next_above(value) for v in values) if n is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class _FieldTable:
    """`contains` and `find_next` precomputed for every value a broken-down time can hold (0..61)."""

    contains: tuple[bool, ...]
    following: tuple[int | None, ...]

    @classmethod
    def of(cls, values: tuple[Value, ...]) -> _FieldTable | None:
        if not values:  # an empty list means "any value" (`*`)
            return None
        domain = range(62)
        return cls(
            contains=tuple(_list_contains(values, v) for v in domain),
            following=tuple(_find_next(values, v) for v in domain),
        )


# --- the event -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarEvent:
    """A parsed PVE calendar event: an immutable, hashable value.

    ``weekdays`` is a bit set (Monday = 1 ... Sunday = 64, 0 = any); each date/time field is a tuple of
    :class:`Value`, empty meaning any. Build one with :func:`parse`.
    """

    text: str
    utc: bool
    weekdays: int = 0
    year: tuple[Value, ...] = ()
    month: tuple[Value, ...] = ()
    day: tuple[Value, ...] = ()
    hour: tuple[Value, ...] = ()
    minute: tuple[Value, ...] = ()
    second: tuple[Value, ...] = ()
    _tables: tuple[_FieldTable | None, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tables = tuple(_FieldTable.of(f) for f in (self.month, self.day, self.hour, self.minute, self.second))
        object.__setattr__(self, "_tables", tables)

    def __str__(self) -> str:
        return self.text

    def next_after(self, last: int, tz: str | None = None) -> int | None:
        """The first matching epoch second strictly after ``last``, or None if there is none.

        Evaluated in the IANA zone ``tz`` (None = this process's local zone, like a PVE node; ignored
        when the event ends in ``UTC``). None also when 1000 passes find nothing (``2021-02-29``) or the
        search leaves the years the zone database covers.
        """
        clock = _UTC_CLOCK if self.utc else _clock_for(tz)
        try:
            return _compute_next(self, clock, int(last))
        except OverflowError:
            return None

    def iter_after(self, last: int, tz: str | None = None) -> Iterator[int]:
        """Successive runs after ``last``, each the ``next_after`` of the previous one, until none is left."""
        clock = _UTC_CLOCK if self.utc else _clock_for(tz)
        current = int(last)
        while True:
            try:
                following = _compute_next(self, clock, current)
            except OverflowError:
                return
            if following is None:
                return
            yield following
            current = following

    def times_in_days(self, start: int, days: int, tz: str | None = None) -> list[int]:
        """Every run in ``[start, start + days * 86400)``: e.g. all start times of the next week."""
        end = start + days * 86400
        runs: list[int] = []
        for run in self.iter_after(start - 1, tz):
            if run >= end:
                break
            runs.append(run)
        return runs


@lru_cache(maxsize=1024)
def parse(text: str) -> CalendarEvent:
    """Parse a PVE calendar event; raise :class:`CalendarEventError` (a ValueError) where PVE would refuse.

    Like pve-common, surrounding whitespace is trimmed before parsing, and the 128-character limit of
    the job schema is applied to the text as given. Results are cached (events are immutable), since
    planners and the sandbox parse the same few schedules over and over.
    """
    if len(text) > MAX_LENGTH:
        raise CalendarEventError(
            text,
            f"value may only be {MAX_LENGTH} characters long",
            f"a PVE job schedule has at most {MAX_LENGTH} characters; this one has {len(text)}",
        )
    trimmed = text.strip()
    if not trimmed:
        raise CalendarEventError(
            text,
            "unable to parse calendar event - event is empty",
            "write a schedule such as 'daily', '02:00' (every day) or 'mon..fri 21:00'",
        )
    return _Parser(text, trimmed).event()


# --- parser: a transliteration of the nom combinators, including their backtracking ---------------------


class _NoMatch(Exception):
    """A nom `Err::Error`: `rest` is where it happened, `context` the upstream label."""

    def __init__(self, rest: str, context: str) -> None:
        super().__init__(context)
        self.rest = rest
        self.context = context


class _NotWeekday(_NoMatch):
    """A word that is no weekday; `rest` is the word itself, as upstream reports it."""

    def __init__(self, word: str) -> None:
        super().__init__(word, 'Context("weekday")')


_KEYWORDS: dict[str, dict[str, tuple[Value, ...] | int]] = {
    "minutely": {"second": (Value(0),)},
    "hourly": {"minute": (Value(0),), "second": (Value(0),)},
    "daily": {"hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),)},
    "weekly": {"hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),), "weekdays": 1},
    "monthly": {"hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),), "day": (Value(1),)},
    "yearly": {
        "hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),), "day": (Value(1),),
        "month": (Value(1),),
    },
    "quarterly": {
        "hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),), "day": (Value(1),),
        "month": (Value(1), Value(4), Value(7), Value(10)),
    },
    "semiannually": {
        "hour": (Value(0),), "minute": (Value(0),), "second": (Value(0),), "day": (Value(1),),
        "month": (Value(1), Value(7)),
    },
}  # fmt: skip
_KEYWORDS["annually"] = _KEYWORDS["yearly"]
_KEYWORDS["semi-annually"] = _KEYWORDS["semiannually"]

_GRAMMAR = "[WEEKDAYS] [[YYYY-]MM-DD] [[HH:]MM[:SS]] [UTC], e.g. 'mon..fri 21:00' or '*-*-01 02:30'"


def _digits(s: str) -> str:
    end = 0
    while end < len(s) and "0" <= s[end] <= "9":  # nom's digit1 is ASCII only
        end += 1
    return s[:end]


def _alpha(s: str) -> str:
    end = 0
    while end < len(s) and s[end].isascii() and s[end].isalpha():  # nom's alpha1 is ASCII only
        end += 1
    return s[:end]


def _skip_space(s: str) -> str:
    return s.lstrip(" \t")  # nom's space0


class _Parser:
    """One parse of one event; each method is one rule of proxmox-time's grammar (reference §3.2)."""

    def __init__(self, original: str, text: str) -> None:
        self.original = original
        self.text = text
        self.deepest: tuple[int, str] | None = None  # (remaining length, plain-words problem)

    # -- error bookkeeping: PVE reports only its outermost error; the hint uses the furthest one --

    def _note(self, rest: str, problem: str) -> None:
        if self.deepest is None or len(rest) <= self.deepest[0]:
            self.deepest = (len(rest), problem)

    def _refuse(self, rest: str, kind: str, hint: str) -> CalendarEventError:
        # anyhow message of `parse_complete_line`: `unable to parse {what} at '{rest}' - {kind:?}`
        return CalendarEventError(self.original, f"unable to parse calendar event at '{rest}' - {kind}", hint)

    # -- grammar --

    def event(self) -> CalendarEvent:
        i = self.text
        utc = False
        if i.endswith("UTC"):
            utc = True
            i = i[:-3].rstrip(" ")
        fields: dict[str, tuple[Value, ...] | int] = {}
        has_days = has_date = has_time = False
        if i[:1].isascii() and i[:1].isalpha():
            if i in _KEYWORDS:
                return CalendarEvent(self.text, utc, **_KEYWORDS[i])  # type: ignore[arg-type]
            i, fields["weekdays"] = self._weekday_list(i)
            has_days = True
            i = _skip_space(i)
        date = self._try(self._date_spec, i)
        if date is not None:
            i, (fields["year"], fields["month"], fields["day"]) = date
            has_date = True
            i = _skip_space(i)
        clock = self._try(self._time_spec, i)
        if clock is not None:
            i, (fields["hour"], fields["minute"], fields["second"]) = clock
            has_time = True
        else:  # no time given: midnight
            fields["hour"] = fields["minute"] = fields["second"] = (Value(0),)
        if not (has_days or has_date or has_time):
            hint = self.deepest[1] if self.deepest else f"expected a date or a time here; grammar: {_GRAMMAR}"
            raise self._refuse(i, 'Context("date or time specification")', hint)
        if i:
            raise self._refuse(i, "Nom(Eof)", self._trailing_hint(i))
        return CalendarEvent(self.text, utc, **fields)  # type: ignore[arg-type]

    @staticmethod
    def _try(rule: Callable[[str], _T], i: str) -> _T | None:
        """nom's `opt`: a failed rule consumes nothing."""
        try:
            return rule(i)
        except _NoMatch:
            return None

    def _trailing_hint(self, rest: str) -> str:
        if rest.startswith("/"):
            return f"'{rest}' is not understood: a repetition needs a step of at least 1, as in '*/15'"
        if self.deepest and self.deepest[0] <= len(rest):
            return self.deepest[1]
        return f"'{rest}' is not part of a calendar event; grammar: {_GRAMMAR}"

    @staticmethod
    def _weekday(i: str) -> tuple[int, str]:
        word = _alpha(i)
        if not word:
            raise _NoMatch(i, "Nom(Alpha)")
        bit = _WEEKDAY_BITS.get(word.lower())
        if bit is None:
            raise _NotWeekday(word)
        return bit, i[len(word) :]

    def _weekday_range(self, i: str) -> tuple[int, str]:
        start, i = self._weekday(i)
        if i.startswith(".."):
            try:
                end, rest = self._weekday(i[2:])
            except _NoMatch:
                return start, i
            return _weekday_span(start, end), rest
        return start, i

    def _weekday_list(self, i: str) -> tuple[str, int]:
        """`wdrange ("," wdrange)*`; only the first range must parse (nom `separated_list1`)."""
        try:
            mask, i = self._weekday_range(i)
        except _NotWeekday as exc:
            raise self._weekday_refusal(exc.rest) from None
        while i.startswith(","):
            try:
                more, rest = self._weekday_range(i[1:])
            except _NoMatch:
                break
            mask |= more
            i = rest
        return i, mask

    def _weekday_refusal(self, word: str) -> CalendarEventError:
        rest = self.text[len(word) :].strip()
        if word in _KEYWORDS and rest:
            hint = (
                f"the keyword '{word}' must be the whole schedule and cannot be combined with '{rest}'; "
                f"for a time of day write it alone (e.g. '02:00' runs every day at 02:00, "
                f"'mon..fri 02:00' on workdays)"
            )
        else:
            hint = (
                f"'{word}' is neither a weekday (mon..sun or monday..sunday) nor a keyword "
                f"({', '.join(sorted(_KEYWORDS))})"
            )
        # upstream: the weekday parser's error is the first entry of nom's VerboseError list
        return self._refuse(word, 'Context("weekday")', hint)

    def _number(self, i: str, limit: int, what: str) -> tuple[int, str]:
        digits = _digits(i)
        if not digits or int(digits) > _U32_MAX:
            raise _NoMatch(i, "Nom(Digit)")
        value, rest = int(digits), i[len(digits) :]
        if value >= limit:
            self._note(rest, f"{what} {value} is too large (at most {limit - 1})")
            raise _NoMatch(rest, 'Context("time value too large")')
        return value, rest

    def _item(self, i: str, limit: int, what: str) -> tuple[Value, str]:
        """`N`, `A..B`, `N/R` or `A..B/R` (Rust `parse_date_time_comp`)."""
        value, i = self._number(i, limit, what)
        if i.startswith(".."):
            try:
                end, rest = self._number(i[2:], limit, what)
            except _NoMatch:
                end = None
            if end is not None:
                if value > end:
                    self._note(rest, f"{what} range {value}..{end} starts after it ends")
                    raise _NoMatch(rest, 'Context("range start is bigger than end")')
                if rest.startswith("/"):
                    repeat, rest = self._number(rest[1:], limit, what)
                    return Value(value, end, repeat), rest
                return Value(value, end), rest
        if i.startswith("/"):
            repeat, i = self._number(i[1:], limit, what)
            return Value(value, None, repeat), i
        return Value(value), i

    def _items(self, i: str, first: int, limit: int, what: str) -> tuple[tuple[Value, ...], str]:
        """`*`, `*/R` or a comma list of items (Rust `parse_date_time_comp_list`)."""
        if i.startswith("*"):
            rest = i[1:]
            if rest.startswith("/"):
                repeat, after = self._number(rest[1:], limit, what)
                if repeat > 0:
                    return (Value(first, None, repeat),), after
                # `*/0` upstream: the `*` alone is taken, leaving `/0` as junk
            return (), rest
        item, i = self._item(i, limit, what)
        values = [item]
        while i.startswith(","):
            try:
                item, rest = self._item(i[1:], limit, what)
            except _NoMatch:
                break
            values.append(item)
            i = rest
        return tuple(values), i

    def _time_spec(self, i: str) -> tuple[str, tuple[tuple[Value, ...], ...]]:
        """`[HOUR:]MINUTE[:SECOND]`; the hour is optional, so `25:00` is minute 25, second 0."""
        hour: tuple[Value, ...] = ()
        try:
            values, rest = self._items(i, 0, 24, "hour")
            if rest.startswith(":"):
                hour, i = values, rest[1:]
        except _NoMatch:
            pass
        minute, i = self._items(i, 0, 60, "minute")
        second: tuple[Value, ...] = (Value(0),)
        if i.startswith(":"):
            try:
                second, i = self._items(i[1:], 0, 60, "second")
            except _NoMatch:
                second = (Value(0),)
        return i, (hour, minute, second)

    def _date_spec(self, i: str) -> tuple[str, tuple[tuple[Value, ...], ...]]:
        """`YEAR-MONTH-DAY` or `MONTH-DAY` (years 0..2199 like systemd)."""
        try:
            year, rest = self._items(i, 0, 2200, "year")
            month, rest = self._items(self._dash(rest), 1, 13, "month")
            day, rest = self._items(self._dash(rest), 1, 32, "day")
            return rest, (year, month, day)
        except _NoMatch:
            pass
        month, rest = self._items(i, 1, 13, "month")
        day, rest = self._items(self._dash(rest), 1, 32, "day")
        return rest, ((), month, day)

    @staticmethod
    def _dash(i: str) -> str:
        if not i.startswith("-"):
            raise _NoMatch(i, "Nom(Tag)")
        return i[1:]


def _weekday_span(start: int, end: int) -> int:
    """`start..end` as a bit set; `fri..mon` wraps over the weekend (Rust `parse_weekdays_range`)."""
    if start > end:
        return _weekday_span(start, 64) | _weekday_span(1, end)
    mask, bit = 0, start
    while True:
        mask |= bit
        if bit >= end:
            return mask
        bit <<= 1


# --- clocks: how broken-down local time maps to epoch seconds ----------------------------------------


class _Clock(abc.ABC):
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


class _UtcClock(_Clock):
    def offset_at(self, epoch: int) -> int:
        return 0

    def resolve(self, naive: int, hint: int) -> tuple[int, int]:
        return naive, 0


class _ZoneClock(_Clock):
    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def offset_at(self, epoch: int) -> int:
        try:
            offset = datetime.fromtimestamp(epoch, self.zone).utcoffset()
        except (ValueError, OSError) as exc:  # outside years 1..9999
            raise OverflowError(str(exc)) from exc
        assert offset is not None
        return offset.days * 86400 + offset.seconds


class _SystemClock(_Clock):
    """The process's local zone (TZ or /etc/localtime), read through libc like PVE does."""

    def offset_at(self, epoch: int) -> int:
        try:
            return time.localtime(epoch).tm_gmtoff
        except (ValueError, OSError) as exc:
            raise OverflowError(str(exc)) from exc


_UTC_CLOCK = _UtcClock()
_SYSTEM_CLOCK = _SystemClock()


@lru_cache(maxsize=64)
def _zone_clock(name: str) -> _Clock:
    if name in ("UTC", "Etc/UTC"):
        return _UTC_CLOCK
    return _ZoneClock(load_zone(name))


def _clock_for(tz: str | None) -> _Clock:
    return _SYSTEM_CLOCK if tz is None else _zone_clock(tz)


def check_zone(tz: str) -> None:
    """Raise ValueError naming ``tz`` unless it is a known IANA time zone."""
    _zone_clock(tz)


# --- broken-down time and the search (Rust `TmEditor` and `compute_next_event`) ------------------------


class _Tm:
    """A broken-down time that re-normalises after every edit, like ``TmEditor`` over mktime/timegm."""

    __slots__ = ("clock", "day", "epoch", "hour", "minute", "month", "offset", "second", "wday", "year")

    def __init__(self, clock: _Clock, epoch: int) -> None:
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


def _compute_next(event: CalendarEvent, clock: _Clock, last: int) -> int | None:
    """Rust ``compute_next_event``, one branch per field in upstream order."""
    t = _Tm(clock, last + 1)
    months, days, hours, minutes, seconds = event._tables
    weekdays = event.weekdays
    any_weekday = weekdays in (0, _ALL_WEEKDAYS)
    for _ in range(_MAX_PASSES):
        if event.year and not _list_contains(event.year, t.year):
            n = _find_next(event.year, t.year)
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
