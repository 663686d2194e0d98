"""The options every command that waits on PVE shares: ``--timeout`` and ``--advance``, and the ``Wait`` they make.

``--advance`` drives a sandbox's clock (``vzkeep sandbox serve --stepped``: time moves only when told)
while the command waits, so a runbook runs unchanged on a stepped sandbox. It needs ``--sandbox``: the
clock is moved through the sandbox's control API (``vzkeep.sandbox.client.SandboxClock``), which a real
cluster does not have. This module is the only place the runtime's waits meet the sandbox, so
``vzkeep.restore``/``vzkeep.drill`` never import it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from vzkeep.connection import ConnectionOptions
from vzkeep.errors import UsageError
from vzkeep.follow import Wait

AdvanceOpt = Annotated[bool, typer.Option(
    "--advance", help="with --sandbox: move the sandbox's clock while waiting, so tasks end on a stepped sandbox "
                      "(vzkeep sandbox serve --stepped) as they would on a real cluster")]


def timeout_option(default: float, what: str) -> Any:
    """``--timeout SECONDS``, with its default stated in the help."""
    return typer.Option("--timeout", min=1.0, show_default=False, metavar="SECONDS",
                        help=f"give up waiting on PVE after SECONDS {what} (default: {default:g}, "
                             f"{_human(default)}); the task still running is named, with how to follow or stop it")


def _human(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h" if hours and not rest else f"{int(seconds) // 60} min"


def make_wait(conn: ConnectionOptions, timeout: float, advance: bool, say: Any) -> Wait:
    """One bound for the command's waits; with ``--sandbox``, the sandbox's clock (moved with ``--advance``)."""
    if advance and not conn.sandbox:
        raise UsageError("--advance moves a sandbox's clock: give --sandbox FILE (or VZKEEP_SANDBOX) too",
                         "a real cluster's clock moves by itself: drop --advance")
    clock = None
    if conn.sandbox:
        from vzkeep.sandbox.client import SandboxClock  # requests and the sandbox's client: only when asked

        clock = SandboxClock(Path(conn.sandbox))
    return Wait(timeout, clock, advance, connection_args(conn), on_note=say)


def connection_args(conn: ConnectionOptions) -> str:
    """The connection options as a command line, so a suggested command reaches the same cluster."""
    if conn.sandbox:
        return f"--sandbox {shlex.quote(str(conn.sandbox))}"
    parts = []
    if conn.endpoint:
        parts.append(f"--endpoint {shlex.quote(conn.endpoint)}")
    if conn.token_file:
        parts.append(f"--token-file {shlex.quote(str(conn.token_file))}")
    if conn.fingerprint:
        parts.append(f"--fingerprint {shlex.quote(conn.fingerprint)}")
    if conn.insecure:
        parts.append("--insecure")
    return " ".join(parts)
