"""The ``vzkeep`` command line: one sub-command group per area, each in its own module, loaded on use.

``vzkeep --help`` and ``vzkeep schedule next`` must start as fast as a small CLI, so the root imports
no sub-command: ``COMMANDS`` lists each one's module and one-line help, and a module is imported
only when its command runs (or its own ``--help`` is asked for). A test checks that each line here
matches the loaded command's own help.

Exit statuses are shared by every command (``vzkeep.errors.ExitStatus``): 0 success, 1 a finding
(corruption, policy violation, failed check), 2 a usage or configuration error, 3 a wait that timed
out, 130 interrupted; 70 is a bug in vzkeep.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Annotated, Any

import typer

from vzkeep.cli.common import VzkeepGroup, install_fast_coercion


@dataclass(frozen=True)
class Entry:
    """One sub-command: the module that defines it, and the line ``vzkeep --help`` shows for it."""

    module: str
    help: str
    group: bool  # the module has `app` (a group of sub-commands); else `register(app)` adds one command


COMMANDS: dict[str, Entry] = {
    "schedule": Entry("vzkeep.cli.schedule", "PVE calendar events (a backup job's `schedule`): check one and see "
                      "when it runs.", group=True),
    "retention": Entry("vzkeep.cli.retention", "Retention (PVE prune-backups): preview what a policy keeps and "
                       "removes.", group=True),
    "preview": Entry("vzkeep.cli.preview", "Show what a stack declares and judge it with the policy pack, under "
                     "Pulumi's mocks.", group=False),
    "sandbox": Entry("vzkeep.cli.sandbox", "An emulated Proxmox VE cluster on 127.0.0.1 (`serve`), and the knobs "
                     "to drive it.", group=True),
    "demo": Entry("vzkeep.cli.demo", "Watch the whole strategy work on an emulated cluster: one simulated week, "
                  "in under a minute.", group=False),
    "backups": Entry("vzkeep.cli.backups", "Backup archives across every storage and node.", group=True),
    "verify": Entry("vzkeep.cli.verify", "Verify vzdump archives: compression checksums, VMA or tar structure, "
                    "name/time, SHA-256, one pass.", group=False),
    "restore": Entry("vzkeep.cli.restore", "Restore a VM or container from its newest backup (or the one --from "
                     "names).", group=False),
    "drill": Entry("vzkeep.cli.drill", "Rehearse restores: each guest's newest backup into a scratch VMID, "
                   "started, timed, destroyed.", group=False),
    "exporter": Entry("vzkeep.cli.exporter", "Serve Prometheus metrics about backups (last success, size, status "
                      "per guest, jobs, storage) and a status page.", group=False),
    "monitoring": Entry("vzkeep.cli.monitoring", "Monitoring: alert rules, Alertmanager route to Telegram, Grafana "
                        "dashboard.", group=True),
    "state": Entry("vzkeep.cli.state", "The IaC state on a self-hosted, versioned S3 bucket (Pulumi DIY backend, "
                   "Terraform S3 backend).", group=True),
    "task": Entry("vzkeep.cli.task", "Follow or stop a PVE task (by its UPID) that a vzkeep command stopped "
                  "waiting for.", group=True),
}


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
