"""The parsed calendar event, an immutable value that computes its own runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from vzkeep.pve.calendar.clocks import UTC_CLOCK, clock_for
from vzkeep.pve.calendar.fields import FieldTable, Value
from vzkeep.pve.calendar.next_event import compute_next


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
    _tables: tuple[FieldTable | None, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tables = tuple(FieldTable.of(f) for f in (self.month, self.day, self.hour, self.minute, self.second))
        object.__setattr__(self, "_tables", tables)

    def __str__(self) -> str:
        return self.text

    def next_after(self, last: int, tz: str | None = None) -> int | None:
        """The first matching epoch second strictly after ``last``, or None if there is none.

        Evaluated in the IANA zone ``tz`` (None = this process's local zone, like a PVE node; ignored
        when the event ends in ``UTC``). None also when 1000 passes find nothing (``2021-02-29``) or the
        search leaves the years the zone database covers.
        """
        clock = UTC_CLOCK if self.utc else clock_for(tz)
        try:
            return compute_next(self, clock, int(last))
        except OverflowError:
            return None

    def iter_after(self, last: int, tz: str | None = None) -> Iterator[int]:
        """Successive runs after ``last``, each the ``next_after`` of the previous one, until none is left."""
        clock = UTC_CLOCK if self.utc else clock_for(tz)
        current = int(last)
        while True:
            try:
                following = compute_next(self, clock, current)
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
