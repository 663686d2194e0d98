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
    # DEV-ONLY tolerance while areas land in parallel; the lead makes this strict before release.
    import importlib

    groups = {"schedule": "schedule", "state": "state", "retention": "retention", "sandbox": "sandbox",
              "monitoring": "monitoring", "backups": "backups"}
    commands = ["preview", "demo", "verify", "exporter", "restore", "drill"]
    for module_name, group in groups.items():
        try:
            module = importlib.import_module(f"vzkeep.cli.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"vzkeep.cli.{module_name}":
                raise
            continue
        app.add_typer(module.app, name=group)
    for module_name in commands:
        try:
            module = importlib.import_module(f"vzkeep.cli.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"vzkeep.cli.{module_name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    app()
