"""What every command shares: the one error handler, and the command groups that run it.

Commands never print an error or pick an exit status themselves: they raise a ``VzkeepError``
(``vzkeep.errors``) and return normally otherwise. ``VzkeepGroup.main`` — what ``vzkeep.cli.main``
and test runners call — turns whatever ends a command into one message and one exit status, like
httpie's ``main``:

- a ``VzkeepError``: ``vzkeep: error: <message>``, its notes indented, ``hint: <hint>``, and the
  error's status (2 usage, 1 finding, 3 timeout, 130 interrupted);
- a bad option or argument (click's usage errors): the same shape, exit 2, the hint naming ``--help``;
- Ctrl-C: ``vzkeep: error: interrupted``, exit 130;
- anything else is a bug: ``vzkeep: error: <Type>: <message>`` and a hint to re-run with
  ``--traceback`` (which re-raises it), exit 70. No traceback is ever printed otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click_exceptions  # typer vendors click since 0.26
from typer.core import TyperGroup

from vzkeep.errors import ExitStatus, Interrupted, UsageError, VzkeepError

PROGRAM = "vzkeep"
TRACEBACK_ENV = "VZKEEP_TRACEBACK"  # set to 1 to see the traceback of an unexpected error (as --traceback)


class VzkeepGroup(TyperGroup):
    """A typer command group whose ``main`` is the CLI's single error handler."""

    show_traceback = False

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        self.show_traceback = os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
        self._command_path = prog_name or PROGRAM
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            status = returned if isinstance(returned, int) and not isinstance(returned, bool) else ExitStatus.OK
        except click_exceptions.NoArgsIsHelpError as exc:  # the help is already printed
            status = exc.exit_code
        except click_exceptions.ClickException as exc:
            status = report(_from_click(exc))
        except typer.Abort:
            status = report(Interrupted("aborted"))
        except VzkeepError as exc:
            status = report(exc, self._recorded_path())
        except Exception as exc:
            if self.show_traceback:
                raise
            status = report(_unexpected(exc))
        if standalone_mode:
            sys.exit(int(status))
        return int(status)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # typer would turn it into a silent exit 130: say what happened instead
            raise Interrupted("interrupted (Ctrl-C)") from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None:  # the deepest command wins: the default hint names its --help
            ctx.meta["vzkeep.command_path"] = f"{ctx.command_path} {name}"
        return name, command, rest

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        if parent is None:
            self._root_meta = ctx.meta
        return ctx

    def _recorded_path(self) -> str:
        meta = getattr(self, "_root_meta", {})
        return meta.get("vzkeep.command_path", self._command_path)


def sub_app(help: str, **options: Any) -> typer.Typer:
    """A command group (``vzkeep schedule``, ``vzkeep state`` …) that runs the error handler too."""
    options.setdefault("no_args_is_help", True)
    options.setdefault("rich_markup_mode", "rich")
    return typer.Typer(cls=VzkeepGroup, help=help, **options)


def report(error: VzkeepError, command_path: str = PROGRAM) -> ExitStatus:
    """Print an error the one way (stderr, no markup, NO_COLOR honoured) and return its exit status."""
    from rich.text import Text

    from vzkeep.cli.output import console

    err = console(stderr=True, soft_wrap=True)
    first, *more = error.message.splitlines() or [""]
    err.print(Text.assemble((f"{PROGRAM}: error", "bold red"), ": ", first))
    for line in [*more, *getattr(error, "__notes__", ())]:
        err.print(Text("  " + line.strip("\n")))
    hint = error.hint
    if hint is None and error.status == ExitStatus.USAGE:
        hint = f"see '{command_path} --help' for the options and examples"
    if hint:
        err.print(Text.assemble(("hint", "bold"), ": ", hint))
    return error.status


def _from_click(exc: click_exceptions.ClickException) -> VzkeepError:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else PROGRAM
    return UsageError(exc.format_message(), f"see '{path} --help' for the options and examples",
                      status=ExitStatus(exc.exit_code) if exc.exit_code in ExitStatus._value2member_map_
                      else ExitStatus.USAGE)


def _unexpected(exc: BaseException) -> VzkeepError:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return VzkeepError(
        f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
        f"this is a bug in vzkeep: re-run with --traceback (or {TRACEBACK_ENV}=1) to see where, and report it",
        status=ExitStatus.INTERNAL,
    )

