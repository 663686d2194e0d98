"""``vzkeep backups list``: every backup archive of the cluster, including those of deleted guests."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from vzkeep.backups import Backup, all_verify_results, collect, select
from vzkeep.cli import output
from vzkeep.cli.common import sub_app
from vzkeep.connection import ConnectionOptions, connect_client, with_connection
from vzkeep.errors import UsageError
from vzkeep.pve.client import PveApiError, PveClient, PveUnreachable
from vzkeep.verify import VerifyResult

app = sub_app("Backup archives across every storage and node.")


def stamp(backup: Backup) -> str:
    """The backup time as the node wrote it in the file name (PVE's vzdump names archives in the node's
    zone), with the node's UTC offset then (``2026-11-24 02:00:00 +0100``); in UTC when the name gives none."""
    local, offset = backup.local_stamp(), backup.utc_offset()
    if local is None or offset is None:
        return output.format_time(backup.ctime, "UTC")
    return f"{local.replace(tzinfo=timezone(timedelta(seconds=offset))):%Y-%m-%d %H:%M:%S %z}"


@app.command("list")
@with_connection
def list_backups(
    conn: ConnectionOptions,
    env: Annotated[str | None, typer.Option("--env", help="only this environment (pool)")] = None,
    guest: Annotated[str | None, typer.Option("--guest", help="only this guest: name or VMID")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="only this storage")] = None,
    results: Annotated[Path | None, typer.Option(
        "--results", help="verify results store (default: the cluster's, $VZKEEP_STATE_DIR/verify/<cluster>.sqlite)"
    )] = None,
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
        client = connect_client(conn)
        verify_results, damaged = _verify_results(client, results)
        inventory = collect(client, verify_results)
    except (PveApiError, PveUnreachable) as exc:
        raise UsageError(f"cannot read the cluster: {exc}",
                         "check that the token may read /storage and /nodes (PVEAuditor on /)") from None
    if damaged:
        inventory.warnings.insert(0, damaged)
        if as_json:  # said on stderr too: a script's log must show it, not only its JSON
            output.Reporter(as_json=True).warn(damaged)
    chosen = select(inventory.backups, env=env, guest=guest, storage=storage)
    if as_json:
        output.emit_json({"backups": [b.to_json() for b in chosen], "warnings": inventory.warnings})
        return
    report = output.Reporter()
    for warning in inventory.warnings:
        report.warn(warning)
    if not chosen:
        report.result("no backups match")
        return
    report.result(_table(chosen))


def _verify_results(client: PveClient, results: Path | None) -> tuple[dict[str, VerifyResult], str | None]:
    """The cluster's verify results, and a warning when the store cannot be read: a damaged store is said
    once, loudly, and every backup then shows as not verified rather than the listing failing."""
    from vzkeep.verify import ClusterView, default_results_path

    path = results or default_results_path(ClusterView(client).cluster_name())
    try:
        return all_verify_results(path), None
    except (OSError, ValueError) as exc:
        return {}, f"verify results not read, so VERIFIED shows - for every backup: {exc}"


def _table(backups: list[Backup]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("VMID", "NAME", "ENV", "TIME", "SIZE", "STORAGE", "PROT", "VERIFIED", "GUEST", "VOLID"):
        table.add_column(column, justify="right" if column in ("VMID", "SIZE") else "left")
    for b in backups:
        verified = b.verify_state()
        if verified == "corrupt" and b.verification is not None and b.verification.problems:
            verified = f"corrupt: {b.verification.problems[0]}"
        cells = (str(b.vmid), b.name or "?", b.env or "-", stamp(b), output.human_size(b.size), b.storage,
                 "yes" if b.protected else "", verified, "exists" if b.guest_exists else "gone", b.volid)
        table.add_row(*(Text(cell) for cell in cells))  # names and notes are user data, not markup
    return table
