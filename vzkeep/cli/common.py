"""What every command shares: how errors are shown and which exit codes mean what."""

from __future__ import annotations

from typing import NoReturn

import typer

EXIT_OK = 0
EXIT_FINDING = 1  # corruption, policy violation, failed check
EXIT_USAGE = 2  # bad arguments or configuration


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `error: <message>` on stderr, unwrapped (scripts grep it), and exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
