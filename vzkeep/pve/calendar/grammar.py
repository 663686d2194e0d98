"""Reading a calendar event's text: a transliteration of proxmox-time's nom grammar, its backtracking and
its error messages included, and the schema's length limit."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from vzkeep.pve.calendar.event import CalendarEvent
from vzkeep.pve.calendar.fields import WEEKDAY_BITS, Value

# pve-manager's job schema: `schedule` has maxLength 128 (PVE/Jobs/Plugin.pm).
MAX_LENGTH = 128

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
    """One parse of one event; each method is one rule of proxmox-time's grammar
    (proxmox-rs ``proxmox-time/src/calendar_event.rs``)."""

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
        bit = WEEKDAY_BITS.get(word.lower())
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
