"""A calendar event's fields: the values one field lists (``5``, ``4..10``, ``22/5``), the weekdays, and
the lookup tables the search of the next run reads (proxmox-time ``calendar_event.rs`` ``DateTimeValue``)."""

from __future__ import annotations

from dataclasses import dataclass

WEEKDAY_BITS = {
    "monday": 1, "mon": 1, "tuesday": 2, "tue": 2, "wednesday": 4, "wed": 4, "thursday": 8, "thu": 8,
    "friday": 16, "fri": 16, "saturday": 32, "sat": 32, "sunday": 64, "sun": 64,
}  # fmt: skip
ALL_WEEKDAYS = 127

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


def list_contains(values: tuple[Value, ...], value: int) -> bool:
    return any(v.contains(value) for v in values)


def find_next(values: tuple[Value, ...], value: int) -> int | None:
    found = [n for n in (v.next_above(value) for v in values) if n is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class FieldTable:
    """`contains` and `find_next` precomputed for every value a broken-down time can hold (0..61)."""

    contains: tuple[bool, ...]
    following: tuple[int | None, ...]

    @classmethod
    def of(cls, values: tuple[Value, ...]) -> FieldTable | None:
        if not values:  # an empty list means "any value" (`*`)
            return None
        domain = range(62)
        return cls(
            contains=tuple(list_contains(values, v) for v in domain),
            following=tuple(find_next(values, v) for v in domain),
        )
