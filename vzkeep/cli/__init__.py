"""The ``vzkeep`` command line: one sub-command group per area, each in its own module, loaded on use.

``vzkeep --help`` and ``vzkeep schedule next`` must start as fast as a small CLI, so the root imports
no sub-command: ``COMMANDS`` (read from ``commands.json``) lists each one's module and one-line help,
and a module is imported only when its command runs (or its own ``--help`` is asked for). A test checks
that each line there matches the loaded command's own help.

Exit statuses are shared by every command (``vzkeep.errors.ExitStatus``): 0 success, 1 a finding
(corruption, policy violation, failed check), 2 a usage or configuration error, 3 a wait that timed
out, 130 interrupted; 70 is a bug in vzkeep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer

from vzkeep.cli.common import VzkeepGroup, install_fast_coercion


@dataclass(frozen=True)
class Entry:
    """One sub-command: the module that defines it, and the line ``vzkeep --help`` shows for it."""

    module: str
    help: str
    group: bool  # the module has `app` (a group of sub-commands); else `register(app)` adds one command


def _read_commands() -> dict[str, Entry]:
    """``commands.json``: each sub-command's line for ``vzkeep --help`` and whether it is a group; the module
    is ``vzkeep.cli.<name>``. A data file, read without importing any sub-command."""
    table = json.loads(Path(__file__).with_name("commands.json").read_text(encoding="utf-8"))
    return {name: Entry(f"vzkeep.cli.{name}", row["help"], row["group"]) for name, row in table.items()}


COMMANDS: dict[str, Entry] = _read_commands()


def load_command(name: str) -> Any:
    """Import a sub-command's module and build its click command (a group or a single command)."""
    entry = COMMANDS[name]
    module = import_module(entry.module)
    if entry.group:
        command = typer.main.get_group(module.app)
    else:
        holder = typer.Typer(add_completion=False, rich_markup_mode="rich")
        module.register(holder)
        command = typer.main.get_command_from_info(
            holder.registered_commands[0], pretty_exceptions_short=True, rich_markup_mode="rich")
    command.name = name
    return command


class LazyGroup(VzkeepGroup):
    """The root group: lists every sub-command from ``COMMANDS``, imports one only to run it."""

    _listing_help = False

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = dict.fromkeys(COMMANDS)  # type: ignore[assignment]  # typer suggests names from these

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._listing_help:  # `vzkeep --help` shows one line per command: no import needed
            return typer.core.TyperCommand(name=cmd_name, help=COMMANDS[cmd_name].help)
        return load_command(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing_help = False


install_fast_coercion()


def _show_version(value: bool) -> None:
    if value:
        from vzkeep import __version__

        typer.echo(f"vzkeep {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=LazyGroup,
    name="vzkeep",
    help="Backup strategy as code for Proxmox VE homelabs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version, help="Print vzkeep's version and exit.")] = False,
    traceback: Annotated[bool, typer.Option(
        "--traceback", help="On an unexpected error, show Python's traceback (for a bug report).")] = False,
) -> None:
    """Backup strategy as code for Proxmox VE homelabs."""
    if traceback:
        ctx.command.show_traceback = True  # type: ignore[attr-defined]


def main() -> None:
    app()
