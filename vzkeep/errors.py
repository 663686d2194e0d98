"""One way to fail: every error the user can act on is a ``VzkeepError``.

An error carries three things, as httpie's and borgmatic's do: the message (what is wrong, where),
an optional hint (what to do next) and the exit status the command ends with. The CLI's single
handler (``vzkeep.cli.main``) prints ``vzkeep: error: <message>`` and, on the next line, the hint,
then exits with the status; nothing else in the code base prints an error or chooses an exit code.

Runtime modules (restore, drill, verify, state, the sandbox client) raise these errors and never
import the CLI; the statuses are defined once, here.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What a command's exit status means, for scripts and CI. Defined once for every command."""

    OK = 0
    FINDING = 1  # the command ran and found a problem: corruption, a policy violation, a failed check
    USAGE = 2  # bad arguments or configuration: nothing was done, fix the input and re-run
    TIMEOUT = 3  # a wait reached its limit (the PVE task may still be running: the message says which)
    INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C


class VzkeepError(Exception):
    """A problem phrased for the user: ``message`` says what and where, ``hint`` what to try next."""

    status: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str, hint: str | None = None, *, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
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
