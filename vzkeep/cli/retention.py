"""`vzkeep retention`: see what a prune-backups policy keeps and removes, marked exactly like PVE."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vzkeep.cli import output
from vzkeep.cli.common import sub_app
from vzkeep.errors import UsageError
from vzkeep.pve import retention
from vzkeep.pve.localtime import LocalClock

app = sub_app("Retention (PVE prune-backups): preview what a policy keeps and removes.")

_MARK_STYLE = {"keep": "green", "remove": "red", "protected": "cyan", "renamed": "yellow"}
_UNGROUPED = "not grouped (non-standard names)"
_LISTING_HINT = ("save a listing on the node with: pvesh get /nodes/NODE/storage/STORAGE/content --content backup "
                 "--output-format json > backups.json")


@app.callback()
def retention_group() -> None:
    """Retention (PVE prune-backups): preview what a policy keeps and removes."""


@app.command("plan")
def plan(
    listing_file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="Storage content listing as JSON: a list of backups or PVE's {\"data\": [...]}. "
            "'-' (the default) reads stdin.",
        ),
    ] = "-",
    prune_backups: Annotated[
        str,
        typer.Option(
            "--prune-backups",
            "-p",
            help="Retention as PVE writes it, e.g. keep-last=3,keep-daily=7,keep-weekly=4. "
            "Options: keep-all, keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly.",
        ),
    ] = ...,  # type: ignore[assignment]
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="The PVE node's time zone (IANA name); periods are its local days, weeks... "
                     "Default: this machine's zone."),
    ] = None,
    vmid: Annotated[int | None, typer.Option("--vmid", help="Only this guest's backups.")] = None,
    guest_type: Annotated[
        str | None, typer.Option("--type", help="Only backups of this guest type: qemu or lxc.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the marks exactly as GET .../prunebackups returns them.")
    ] = False,
) -> None:
    """Show which backups a prune-backups policy keeps and removes, and why.

    Marks are PVE's own (pve-storage prune_mark_backup_group): rules apply
    newest first in the order last, hourly, daily, weekly, monthly, yearly;
    a period an earlier rule already kept costs no slot; protected backups
    are never counted nor removed; non-standard names are never pruned.
    Nothing is deleted: this only reads a listing.

    [bold]Examples[/bold]

      [dim]# on the node: save a storage's backup listing[/dim]
      pvesh get /nodes/pve1/storage/backup-prod/content \\
        --content backup --output-format json > backups.json

      [dim]# try a policy on it, in the node's time zone[/dim]
      vzkeep retention plan -p keep-daily=7,keep-weekly=4 \\
        --tz Europe/Paris backups.json

      [dim]# what keep-daily=3 would remove for VM 100, for a script[/dim]
      vzkeep retention plan -p keep-daily=3 --vmid 100 --json backups.json

    Exit status: 0 plan shown, 2 bad option, time zone or listing.
    """
    if guest_type is not None and guest_type not in ("qemu", "lxc"):
        raise UsageError(f"--type '{guest_type}' is not a guest type (allowed: qemu, lxc)",
                         "leave --type out to see both")
    try:
        keep = retention.parse_prune_backups(prune_backups)
    except ValueError as exc:
        raise UsageError(f"--prune-backups '{prune_backups}': {_without_prefix(str(exc))}",
                         "e.g. keep-last=3,keep-daily=7,keep-weekly=4, or keep-all=1") from None
    listing = _read_listing(listing_file)
    try:
        clock = LocalClock(tz)
        verdicts = retention.explain(listing, keep, tz, vmid=vmid, type=guest_type)
    except ValueError as exc:
        raise UsageError(f"{_source_name(listing_file)}: {exc}", _LISTING_HINT) from None
    if as_json:
        output.emit_json([verdict.entry for verdict in verdicts])
        return
    _print_plan(verdicts, keep, clock)


def _read_listing(listing_file: str) -> list[dict[str, Any]]:
    source = _source_name(listing_file)
    try:
        text = sys.stdin.read() if listing_file == "-" else Path(listing_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}", _LISTING_HINT) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text (byte {exc.start})", _LISTING_HINT) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                         _LISTING_HINT) from None
    items = document.get("data") if isinstance(document, dict) else document
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UsageError(f'{source}: expected a list of backups or {{"data": [...]}} as pvesh or the API '
                         "return it", _LISTING_HINT)
    return items


def _print_plan(verdicts: list[retention.Verdict], keep: dict[str, int], clock: LocalClock) -> None:
    console = output.console()
    zone = clock.tz or "local time"
    storages = sorted({_storage(v.entry["volid"]) for v in verdicts})
    console.print(output.styled("Policy ", (retention.format_prune_backups(keep), "bold"),
                                f" on {', '.join(storages) or '-'}, periods in {zone}"))
    for title, group in _by_group(verdicts):
        table = Table(title=Text(title), title_justify="left", show_edge=False)
        table.add_column("backup", overflow="fold")
        table.add_column(f"time ({zone})", no_wrap=True)
        table.add_column("mark", no_wrap=True)
        table.add_column("why", min_width=22)
        for verdict in sorted(group, key=lambda v: -v.entry["ctime"]):
            style = _MARK_STYLE[verdict.mark]
            table.add_row(
                _filename(verdict.entry["volid"]),
                clock.strftime("%Y-%m-%d %H:%M:%S", verdict.entry["ctime"]),
                Text(verdict.mark, style=style),
                verdict.reason,
            )
        console.print()
        console.print(table)
    console.print()
    console.print(_summary(verdicts))


def _by_group(verdicts: Iterable[retention.Verdict]) -> list[tuple[str, list[retention.Verdict]]]:
    groups: dict[str, list[retention.Verdict]] = {}
    for verdict in verdicts:
        title = _UNGROUPED if verdict.mark == "renamed" else retention.group_key(verdict.entry)
        groups.setdefault(title, []).append(verdict)
    return sorted(groups.items(), key=lambda item: (item[0] == _UNGROUPED, _group_order(item[0])))


def _group_order(title: str) -> tuple[str, int]:
    kind, _, vmid = title.partition("/")
    return kind, int(vmid) if vmid.isdigit() else 0


def _summary(verdicts: list[retention.Verdict]) -> str:
    counts = {mark: 0 for mark in retention.MARKS}
    for verdict in verdicts:
        counts[verdict.mark] += 1
    text = f"kept {counts['keep']}, removed {counts['remove']}"
    extras = [f"{counts[mark]} {mark}" for mark in ("protected", "renamed") if counts[mark]]
    return text + (f" ({', '.join(extras)} left alone)" if extras else "")


def _storage(volid: str) -> str:
    return volid.split(":", 1)[0] if ":" in volid else "-"


def _filename(volid: str) -> str:
    return volid.rsplit("/", 1)[-1]


def _source_name(listing_file: str) -> str:
    return "stdin" if listing_file == "-" else listing_file


def _without_prefix(message: str) -> str:
    return message.removeprefix("prune-backups: ")
