"""``vzkeep backups list``: every backup archive of the cluster, including those of deleted guests."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vzkeep.backups import Backup, all_verify_results, collect, select
from vzkeep.cli.common import EXIT_USAGE, fail
from vzkeep.connection import ConnectionConfigError, ConnectionOptions, connect_client, with_connection
from vzkeep.pve.client import PveApiError, PveUnreachable

app = typer.Typer(help="Backup archives across every storage and node.", no_args_is_help=True)
_STAMP_RE = re.compile(r"-(\d{4})_(\d{2})_(\d{2})-(\d{2})_(\d{2})_(\d{2})\.")


def stamp(backup: Backup) -> str:
    """The backup time as the node wrote it in the file name (node-local, reference §1.2)."""
    match = _STAMP_RE.search(backup.filename)
    if match:
        y, mo, d, h, mi, s = match.groups()
        return f"{y}-{mo}-{d} {h}:{mi}:{s}"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(backup.ctime))


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@app.command("list")
@with_connection
def list_backups(
    conn: ConnectionOptions,
    env: Annotated[str | None, typer.Option("--env", help="only this environment (pool)")] = None,
    guest: Annotated[str | None, typer.Option("--guest", help="only this guest: name or VMID")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="only this storage")] = None,
    results: Annotated[Path | None, typer.Option(
        "--results", help="verify results store (default $VZKEEP_STATE_DIR/verify.json)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document for scripts")] = False,
) -> None:
    """List every backup archive: guest, VMID, environment, time, size, storage, protected, verified.

    Guests that no longer exist are listed too (name and environment then come from the archive's
    notes): that is exactly when you need their backups. A shared storage is listed once; a node's
    own storage once per node. VERIFIED is the last `vzkeep verify` result: ok, corrupt, stale (the
    file changed since) or - (never verified).

    Examples:

        vzkeep backups list --env prod

        vzkeep backups list --guest postgres --json | jq '.backups[0].volid'
    """
    try:
        inventory = collect(connect_client(conn), all_verify_results(str(results) if results else None))
    except ConnectionConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except (PveApiError, PveUnreachable) as exc:
        fail(f"cannot read the cluster: {exc}", EXIT_USAGE)
    chosen = select(inventory.backups, env=env, guest=guest, storage=storage)
    if as_json:
        print(json.dumps({"backups": [b.to_json() for b in chosen], "warnings": inventory.warnings}, indent=1))
        return
    # a pipe or a file gets full lines (no wrapping at 80 columns), a terminal its own width
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
    err = Console(stderr=True, highlight=False)
    for warning in inventory.warnings:
        err.print(f"warning: {warning}", markup=False)
    if not chosen:
        console.print("no backups match", markup=False)
        return
    console.print(_table(chosen))


def _table(backups: list[Backup]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("VMID", "NAME", "ENV", "TIME", "SIZE", "STORAGE", "PROT", "VERIFIED", "GUEST", "VOLID"):
        table.add_column(column, justify="right" if column in ("VMID", "SIZE") else "left")
    for b in backups:
        verified = b.verify_state()
        if verified == "corrupt" and b.verification is not None and b.verification.problems:
            verified = f"corrupt: {b.verification.problems[0]}"
        cells = (str(b.vmid), b.name or "?", b.env or "-", stamp(b), human_size(b.size), b.storage,
                 "yes" if b.protected else "", verified, "exists" if b.guest_exists else "gone", b.volid)
        table.add_row(*(Text(cell) for cell in cells))  # names and notes are user data, not markup
    return table
