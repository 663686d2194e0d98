"""One way to print: consoles, sizes, times, JSON, and the "progress to stderr, result to stdout" split.

Every command prints through this module, so that what a person sees on a terminal and what a
script reads from a pipe follow the same rules everywhere:

- **User data is never markup.** Consoles are built with markup, emoji codes and highlighting off:
  a sandbox path ``/tmp/sb[red]x`` prints as typed, a fingerprint ``…:0F:A5:53:CD:58:…`` never
  becomes an emoji. Our own styling goes through ``Text`` objects and ``style=``, never through
  ``[bold]`` strings that user data could be spliced into.
- **Pipes get whole lines.** When the stream is not a terminal, text is not wrapped, tables are not
  squeezed to 80 columns and names are not cut; there is no colour.
- **``NO_COLOR`` is honoured** (https://no-color.org), on stdout and stderr alike, errors included.
- **Every time says its zone** (a UTC offset, and the zone's name where it is not obvious).
- **JSON has one shape**: two-space indentation, UTF-8, one document per command on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # rich is imported on first use: `vzkeep schedule next` prints without it
    from rich.console import Console, RenderableType
    from rich.text import Text

JSON_INDENT = 2
# A pipe has no width: lay tables out as wide as their content needs (no squeezing, no cutting).
UNBOUNDED_WIDTH = 100_000
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # English whatever the locale


def no_color() -> bool:
    """True when the user asked for no colour (https://no-color.org: any non-empty NO_COLOR)."""
    return os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """The one way to build a rich console, for stdout (results) or stderr (progress, warnings, errors).

    Markup, emoji codes and highlighting are off, so strings print exactly as given. On a terminal,
    output fits its width (``soft_wrap=True`` keeps long lines whole, for tokens and URLs to copy);
    elsewhere nothing is wrapped or cut and no colour is written.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = _isatty(stream)
    return Console(
        stderr=stderr,  # the stream is looked up at print time: test runners swap sys.stdout
        markup=False,
        emoji=False,
        highlight=False,
        no_color=no_color(),
        soft_wrap=soft_wrap or not terminal,
        width=None if terminal else UNBOUNDED_WIDTH,
    )


def heading(out: Console, title: str | Text) -> None:
    """A section title: a rule across a terminal, a plain ``== title ==`` line in a pipe."""
    from rich.text import Text

    text = title if isinstance(title, Text) else Text(title, style="bold")
    if out.is_terminal:
        out.rule(text)
    else:
        out.print(Text.assemble("== ", text, " =="))


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings (user data, printed as typed) and ``(text, style)`` pairs."""
    from rich.text import Text

    return Text.assemble(*parts)


# -- sizes and times ----------------------------------------------------------------------------------------


def human_size(size: float) -> str:
    """Bytes for people, in IEC units as PVE's GUI shows them: ``512 B``, ``1.5 KiB``, ``8.0 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in _SIZE_UNITS:
        size /= 1024
        if size < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def zone(name: str | tzinfo | None) -> tzinfo | None:
    """A zone from an IANA name (``UTC`` included); None stays None (this machine's zone)."""
    if name is None or isinstance(name, tzinfo):
        return name
    return UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(name)


def local_time(epoch: float, tz: str | tzinfo | None = None) -> datetime:
    """The moment in zone ``tz`` (an IANA name or tzinfo; None: this machine's zone), zone attached."""
    where = zone(tz)
    return datetime.fromtimestamp(epoch, where) if where is not None else datetime.fromtimestamp(epoch).astimezone()


def format_time(
    epoch: float, tz: str | tzinfo | None = None, *, seconds: bool = True, weekday: bool = False
) -> str:
    """A time that says its zone: ``2026-01-05 02:00:03 +0100``, or ``Mon 2026-01-05 02:00 +0100``.

    The UTC offset is always there, so the line means one instant wherever it is read; ``tz`` is the
    zone the reader thinks in (the node's for backups and schedules).
    """
    moment = local_time(epoch, tz)
    text = moment.strftime("%Y-%m-%d %H:%M:%S %z" if seconds else "%Y-%m-%d %H:%M %z")
    return f"{_WEEKDAYS[moment.weekday()]} {text}" if weekday else text


def format_age(seconds: float) -> str:
    """How long ago, rounded for people: ``45 s``, ``12 min``, ``5 h``, ``3 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


# -- JSON ---------------------------------------------------------------------------------------------------


def json_text(document: Any) -> str:
    """The one JSON layout of every ``--json``: two-space indent, UTF-8 as is, unknown types as strings."""
    return json.dumps(document, indent=JSON_INDENT, ensure_ascii=False, default=str)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout, the result of a ``--json`` command."""
    sys.stdout.write(json_text(document) + "\n")
    sys.stdout.flush()


# -- progress to stderr, result to stdout -------------------------------------------------------------------


class Reporter:
    """What a command says while it works goes to stderr; what it found goes to stdout.

    With ``as_json``, stdout carries exactly one JSON document (``result_json``) and progress lines
    are dropped, so ``… --json | jq`` always parses; warnings still reach stderr. Errors are not
    reported here: raise a ``VzkeepError`` and the CLI's handler prints it.
    """

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        """The console for results (stdout)."""
        if self._out is None:
            self._out = console()
        return self._out

    @property
    def err(self) -> Console:
        """The console for progress and warnings (stderr)."""
        if self._err is None:
            self._err = console(stderr=True, soft_wrap=True)
        return self._err

    def progress(self, text: str | Text) -> None:
        """One line of progress on stderr (nothing with --json)."""
        if not self.as_json:
            self.err.print(text)

    def warn(self, text: str) -> None:
        """``warning: …`` on stderr, also with --json: a script's log should show it."""
        from rich.text import Text

        self.err.print(Text.assemble(("warning", "yellow"), ": ", text))

    def result(self, *renderables: RenderableType) -> None:
        """Part of the human-readable result, on stdout (ignored with --json)."""
        if not self.as_json:
            self.out.print(*renderables)

    def result_json(self, document: Any) -> None:
        """The JSON result, on stdout (only with --json)."""
        if self.as_json:
            emit_json(document)

    def progress_bar(self, *columns: Any, transient: bool = True) -> Any:
        """A rich progress bar on stderr when stderr is a terminal and not --json, else None."""
        if self.as_json or not self.err.is_terminal:
            return None
        from rich.progress import Progress

        return Progress(*columns, console=self.err, transient=transient)

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on a terminal while a step runs; a plain progress line elsewhere."""
        if self.as_json or not self.err.is_terminal:
            self.progress(text)
            yield
            return
        with self.err.status(text):
            yield


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False
