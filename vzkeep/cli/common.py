"""What every command shares: how errors are shown and which exit codes mean what."""

from __future__ import annotations

from typing import Any, NoReturn

import typer

from vzkeep.connection import ConnectionConfigError, ConnectionOptions, connect

EXIT_OK = 0
EXIT_FINDING = 1  # corruption, policy violation, failed check
EXIT_USAGE = 2  # bad arguments or configuration


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: <message>` on stderr, unwrapped (scripts grep it), and exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def connect_or_fail(conn: ConnectionOptions) -> Any:
    """A PVE API client for the connection options, or exit 2 naming the option to fix."""
    try:
        return connect(conn)
    except ConnectionConfigError as exc:
        fail(str(exc), EXIT_USAGE)
