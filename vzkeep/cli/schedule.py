"""`vzkeep schedule`: check a PVE calendar event and list when a backup job would start.

The computation is `vzkeep.pve.calendar`, a port of PVE's own; this module only reads the options and
prints. Times are shown in the zone the node runs in (`--tz`, default this machine's, like a PVE node).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo
from typing import Annotated

import typer

from vzkeep.cli import output
from vzkeep.cli.common import parse_instant, sub_app, zone_option
from vzkeep.errors import FindingError, UsageError
from vzkeep.pve import calendar

app = sub_app("PVE calendar events (a backup job's `schedule`): check one and see when it runs.")



@app.callback()
def _group() -> None:
    """PVE calendar events (a backup job's `schedule`): check one and see when it runs."""


@app.command("next")
def next_runs(
    spec: Annotated[str, typer.Argument(
        metavar="SPEC", help="PVE calendar event, quoted: 'mon..fri 21:00', 'daily', '*/30', 'sat 02:00 UTC'.",
        show_default=False)],
    after: Annotated[str | None, typer.Option(
        "--after", metavar="TIME",
        help="List runs strictly after TIME: ISO 8601 (2026-03-29T01:00 is read in --tz; "
             "2026-03-29T01:00+01:00 or ...Z as given) or epoch seconds. Default: now.")] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10000, help="How many runs to list.")] = 10,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE",
        help="IANA time zone of the PVE node, e.g. Europe/Vienna. Default: this machine's zone "
             "(TZ or /etc/localtime). A spec ending in UTC is computed in UTC but shown in ZONE.")] = None,
    epoch: Annotated[bool, typer.Option("--epoch", help="Print epoch seconds, one per line.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print a JSON list of {"timestamp", "local", "utc"} (ISO 8601).')] = False,
) -> None:
    """List the next runs of a calendar event, exactly as a PVE node computes them.

    PVE's quirks apply (pve-common PVE/CalendarEvent.pm):
    - a lone number is a minute: '22' is minute 22 of every hour, '22:00' is 10 PM;
    - a keyword is the whole schedule: 'daily 02:00' is invalid, write '02:00';
    - on the day clocks spring forward, a time inside the gap is skipped.

    Exit status: 0 runs listed, 1 the event has no run after TIME, 2 invalid SPEC or option.

    Examples:

        vzkeep schedule next 'mon..fri 21:00'

        vzkeep schedule next '2:30' --tz Europe/Vienna --after 2026-03-28T12:00 --count 3

        vzkeep schedule next 'sat 02:00' --epoch -n 1

        vzkeep schedule next daily --json | jq '.[0].utc'
    """
    event = _parse_spec(spec)
    zone = _display_zone(tz)
    start = parse_instant(after, "--after", tz) if after is not None else int(time.time())
    runs = list(_take(event.iter_after(start, tz), count))
    _print_runs(runs, zone, epoch=epoch, as_json=as_json)
    if not runs:
        raise FindingError(f"calendar event '{spec}' has no run after {_describe(start, zone)}",
                           "an event with a year or a date in the past never runs again: check the spec")
    if len(runs) < count:
        output.Reporter().warn(f"calendar event '{spec}' has no run after {_describe(runs[-1], zone)}")


def _parse_spec(spec: str) -> calendar.CalendarEvent:
    try:
        return calendar.parse(spec)
    except calendar.CalendarEventError as exc:
        raise UsageError(exc.pve_message, exc.hint or "examples: 'mon..fri 21:00', 'daily', '*/30', "
                         "'sat 02:00 UTC'") from None


def _display_zone(tz: str | None) -> tzinfo | None:
    """The zone to show times in; None means this machine's local zone."""
    zone = zone_option(tz)
    return UTC if tz in ("UTC", "Etc/UTC") else zone


def _take(runs: object, count: int) -> list[int]:
    taken: list[int] = []
    for run in runs:  # type: ignore[attr-defined]
        taken.append(run)
        if len(taken) == count:
            break
    return taken


def _describe(epoch: int, zone: tzinfo | None) -> str:
    """`Sun 2026-03-29 03:30:00 +0200`: weekday, local date and time, UTC offset."""
    return output.format_time(epoch, zone, weekday=True)


def _as_record(epoch: int, zone: tzinfo | None) -> dict[str, object]:
    utc = datetime.fromtimestamp(epoch, UTC)
    return {
        "timestamp": epoch,
        "local": output.local_time(epoch, zone).isoformat(),
        "utc": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _print_runs(runs: list[int], zone: tzinfo | None, *, epoch: bool, as_json: bool) -> None:
    if as_json:
        output.emit_json([_as_record(run, zone) for run in runs])
        return
    for run in runs:
        typer.echo(str(run) if epoch else _describe(run, zone))
