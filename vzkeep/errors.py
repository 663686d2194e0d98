"""One way to fail: every error the user can act on is a ``VzkeepError``.

An error carries three things, as httpie's and borgmatic's do: the message (what is wrong, where),
an optional hint (what to do next) and the exit status the command ends with. The CLI's single
handler (``vzkeep.cli.common.VzkeepGroup.main``, what ``vzkeep.cli.main`` runs) prints
``vzkeep: error: <message>``, its notes indented, then ``hint: <hint>``, and exits with the status;
nothing else in the code base prints an error or chooses an exit code.

Runtime modules (restore, drill, verify, state, the sandbox client) raise these errors and never
import the CLI; the statuses are defined once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitStatus(IntEnum):
    """What a command's exit status means, for scripts and CI. Defined once for every command."""

    OK = 0
    FINDING = 1  # the command ran and found a problem: corruption, a policy violation, a failed check
    USAGE = 2  # bad arguments or configuration: nothing was done, fix the input and re-run
    TIMEOUT = 3  # a wait reached its limit (the PVE task may still be running: the message says which)
    INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug in vzkeep, not in the input; `--traceback` shows where
    INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C


class VzkeepError(Exception):
    """A problem phrased for the user: ``message`` says what and where, ``hint`` what to try next.

    ``notes`` are extra lines shown between the two, indented: every problem of a config file
    (borgmatic's ``At 'key': ...`` lines), the last lines of a PVE task log. They are Python's own
    exception notes (PEP 678, ``add_note``), so code that catches the error can add context too.
    """

    status: ExitStatus = ExitStatus.USAGE

    def __init__(
        self, message: str, hint: str | None = None, *, status: ExitStatus | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        for note in notes:
            self.add_note(note)
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class UsageError(VzkeepError):
    """Bad arguments, a bad file or bad settings (exit 2): nothing was changed."""


class FindingError(VzkeepError):
    """The command ran and found a problem that the user must look at (exit 1)."""

    status = ExitStatus.FINDING


class WaitTimeout(VzkeepError):
    """A bounded wait ended before what it waited for (exit 3)."""

    status = ExitStatus.TIMEOUT


class Interrupted(VzkeepError):
    """Ctrl-C (exit 130); the message says what may still be running."""

    status = ExitStatus.INTERRUPTED
