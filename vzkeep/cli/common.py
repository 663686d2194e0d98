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

import math
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from typer._click import exceptions as click_exceptions  # typer vendors click since 0.26
from typer.core import TyperGroup

from vzkeep.errors import ExitStatus, Interrupted, UsageError, VzkeepError
from vzkeep.pve.values import UnknownTimeZone, load_zone

# The sandbox's directory (`--dir` of `sandbox serve` and `demo`) was once `--state`, a word now kept for the
# IaC state: the old name still works, unlisted, so runbooks written with it keep running.
OldDirOpt = Annotated[Path | None, typer.Option("--state", hidden=True, help="old name of --dir")]

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




def install_fast_coercion() -> None:
    """Let plain ``str``/``int``/``float``/``bool`` options skip typer's pydantic conversion.

    typer (since 0.26) converts every option through a pydantic ``TypeAdapter``: importing pydantic
    and building adapters costs more than the rest of ``vzkeep schedule next``. For a plain string,
    number or flag the conversion is one call (with the option's min/max), done here the way click
    did it; every other annotation keeps typer's own conversion. This replaces typer's
    ``build_runtime_param`` (a private function): if typer changes it, nothing is replaced and the
    import-time test (tests/test_cli.py) fails, saying that schedule imports pydantic again.
    """
    try:
        from typer import core
        from typer._coercion import RuntimeParam
    except ImportError:  # pragma: no cover - another typer
        return
    typer_build = getattr(core, "build_runtime_param", None)
    if typer_build is None or getattr(typer_build, "vzkeep_fast", False):
        return
    plain = _plain_param(RuntimeParam)

    def build_runtime_param(descriptor: Any) -> Any:
        if (descriptor.annotation in _PLAIN and not descriptor.is_choice and not descriptor.is_file
                and not descriptor.is_path):
            return plain(descriptor.parameter_info, descriptor.annotation)
        return typer_build(descriptor)

    build_runtime_param.vzkeep_fast = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]


_PLAIN = (str, int, float, bool)
_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off", ""}


def _plain_param(base: type) -> type:
    class PlainParam(base):  # type: ignore[misc,valid-type]
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if kind is bool:
                return _flag(value, ctx, param)
            try:
                converted = value if type(value) is kind else kind(value)
            except (TypeError, ValueError):
                raise click_exceptions.BadParameter(
                    f"{value!r} is not a valid {'integer' if kind is int else 'number'}.", ctx=ctx, param=param
                ) from None
            low, high = self.parameter_info.min, self.parameter_info.max
            if (low is not None and converted < low) or (high is not None and converted > high):
                bounds = f"{'' if low is None else f'{low}<='}x{'' if high is None else f'<={high}'}"
                raise click_exceptions.BadParameter(f"{value} is not in the range {bounds}.", ctx=ctx, param=param)
            return converted

    return PlainParam


def _flag(value: Any, ctx: Any, param: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise click_exceptions.BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)


_EPOCH_SECONDS = re.compile(r"-?\d+")


def parse_instant(text: str, option: str, tz: str | None = None) -> int:
    """An instant given on the command line as ISO 8601 or epoch seconds, to epoch seconds.

    A wall-clock time without an offset means the node's: in ``tz`` when given, else this machine's zone.
    """
    if _EPOCH_SECONDS.fullmatch(text.strip()):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} '{text}' is neither ISO 8601 nor epoch seconds",
                         "e.g. 2026-03-29T01:00, 2026-03-29T01:00+02:00, 2026-03-29T00:00Z or 1774746000") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz)) if tz is not None else moment.astimezone()
    return math.floor(moment.timestamp())


def zone_option(tz: str | None, option: str = "--tz",
                hint: str = "use an IANA zone name such as Europe/Paris or UTC") -> ZoneInfo | None:
    """The zone a command-line option names (None stays None), or a usage error naming the option."""
    if tz is None:
        return None
    try:
        return load_zone(tz)
    except UnknownTimeZone as exc:
        raise UsageError(f"{option}: {exc}", hint) from None
