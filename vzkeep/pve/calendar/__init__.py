"""PVE calendar events: parse a backup job's ``schedule`` and compute when it runs next.

A faithful port of proxmox-time's ``calendar_event.rs`` (proxmox-rs f330500), which PVE uses through
pve-common ``src/PVE/CalendarEvent.pm``. Acceptance, quirks and next-run results are
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
The package follows the port's parts: ``fields`` (a field's values), ``event`` (the parsed event), ``grammar``
(parse), ``clocks`` (local time to epoch) and ``next_event`` (the search of the next run).
"""

from vzkeep.pve.calendar.event import CalendarEvent
from vzkeep.pve.calendar.fields import Value
from vzkeep.pve.calendar.grammar import MAX_LENGTH, CalendarEventError, parse

__all__ = ["MAX_LENGTH", "CalendarEvent", "CalendarEventError", "Value", "parse"]
