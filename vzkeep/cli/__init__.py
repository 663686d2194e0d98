"""The ``vzkeep`` command line: one sub-command group per area, each in its own module.

Exit codes are shared by every command: 0 success, 1 a finding (corruption, policy violation,
failed check), 2 a usage or configuration error.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vzkeep",
    help="Backup strategy as code for Proxmox VE homelabs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each area module exposes `app` (a command group) or `register(app)` for top-level commands.
    from vzkeep.cli import (
        backups,
        demo,
        drill,
        exporter,
        monitoring,
        preview,
        restore,
        retention,
        sandbox,
        schedule,
        state,
        task,
        verify,
    )

    for group in (schedule, retention, sandbox, backups, monitoring, state, task):
        app.add_typer(group.app, name=group.__name__.rsplit(".", 1)[-1])
    for command in (preview, demo, verify, exporter, restore, drill):
        command.register(app)


_register()


def main() -> None:
    app()
