"""``vzkeep drill``: automated restore rehearsals into scratch VMIDs, results for the exporter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from vzkeep.backups import Backup, Inventory, collect
from vzkeep.cli import output
from vzkeep.cli.waits import AdvanceOpt, make_wait, timeout_option
from vzkeep.connection import ConnectionOptions, connect_client, with_connection
from vzkeep.drill import (
    DEFAULT_SCRATCH,
    DrillOptions,
    DrillResult,
    DrillResultStore,
    clean_leftovers,
    drill_targets,
    free_scratch_vmid,
    run_drill,
)
from vzkeep.errors import ExitStatus, FindingError, UsageError, VzkeepError
from vzkeep.follow import Wait
from vzkeep.pve.client import PveClient
from vzkeep.verify import ResultStore, cluster_results_path

DEFAULT_TIMEOUT = 3600.0  # per guest: restore, isolate, start, until running


def register(app: typer.Typer) -> None:
    app.command("drill")(drill_cmd)


def parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()) or not 100 <= int(low) <= int(high):
        raise UsageError(f"--scratch {text!r}: expected FIRST-LAST VMIDs, e.g. 9000-9099 (FIRST >= 100, FIRST <= LAST)",
                         "pick a range no guest uses, e.g. --scratch 9000-9099")
    return int(low), int(high)


@with_connection
def drill_cmd(
    conn: ConnectionOptions,
    env: Annotated[str | None, typer.Option("--env", "--stack", help="only guests of this environment")] = None,
    guest: Annotated[str | None, typer.Option("--guest", "--vmid", help="only this guest: name or VMID")] = None,
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="drill N randomly chosen guests")] = None,
    node: Annotated[str | None, typer.Option("--node", help="restore the scratch guests on this node")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="target storage of the scratch disks")] = None,
    scratch: Annotated[str, typer.Option("--scratch", help="VMID range for scratch guests")] = (
        f"{DEFAULT_SCRATCH[0]}-{DEFAULT_SCRATCH[1]}"),
    results: Annotated[Path | None, typer.Option(
        "--results", help="drill results store (default $VZKEEP_STATE_DIR/drills.json)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document for scripts")] = False,
    timeout: Annotated[float, timeout_option(DEFAULT_TIMEOUT, "for each guest's drill")] = DEFAULT_TIMEOUT,
    advance: AdvanceOpt = False,
) -> None:
    """Rehearse restores: each guest's newest backup into a scratch VMID, started, timed, destroyed.

    The scratch guest gets new MAC addresses and every network link down (link_down=1) before it is
    started, so nothing conflicts with production; the original guest is never touched. Scratch
    guests left by an interrupted drill (pending in the results store, or tagged vzkeep-drill) are
    destroyed first. Results feed the exporter (vzkeep_drill_last_success_timestamp_seconds,
    vzkeep_drill_duration_seconds, vzkeep_drill_last_status) and the Drill* alerts.

    Every wait ends: when a guest's drill reaches --timeout, or on Ctrl-C, the drill stops, records the
    failure and names the PVE task still running (with how to follow or stop it); its scratch guest is
    removed by the next run. On a sandbox whose clock is stepped, --advance moves the clock while waiting.

    Exit codes: 0 every drill succeeded, 1 a drill failed, 2 usage (nothing to drill, bad range), 3 a wait
    ended before PVE's task (timeout, stepped sandbox), 130 interrupted.

    Examples:

        vzkeep drill --env prod

        vzkeep drill --guest postgres --node pve2 --storage local-lvm

        vzkeep drill --env lab --sample 2 --scratch 9500-9599 --json

        vzkeep drill --env lab --sandbox .sandbox/sandbox.json --advance
    """
    scratch_range = parse_range(scratch)
    store = DrillResultStore(results)
    report = output.Reporter(as_json=as_json)
    say = report.progress

    outcomes: list[DrillResult] = []
    try:
        wait = make_wait(conn, timeout, advance, say)
        client = connect_client(conn)
        removed, inventory = _prepare(client, store, scratch_range, wait, say)
        targets = drill_targets(inventory, env, guest, sample)
        if not targets:
            raise UsageError(f"nothing to drill: no existing guest with a readable backup matches (env={env}, "
                             f"guest={guest})", "see the guests and their backups with: vzkeep backups list")
        _run_all(client, inventory, targets, scratch_range, store, DrillOptions(scratch_range, node, storage),
                 wait, say, outcomes)
    except VzkeepError as exc:
        _stop(report, exc, outcomes)
    except KeyboardInterrupt:
        _stop(report, VzkeepError("interrupted (Ctrl-C); a scratch guest left behind is removed by the next drill",
                                  status=ExitStatus.INTERRUPTED), outcomes)
    report.result_json({"ok": all(r.ok for r in outcomes), "removed_leftovers": removed,
                        "drills": [r.to_json() for r in outcomes]})
    _print(report, outcomes)
    raise typer.Exit(ExitStatus.OK if all(r.ok for r in outcomes) else ExitStatus.FINDING)


def _prepare(client: PveClient, store: DrillResultStore, scratch_range: tuple[int, int], wait: Wait,
             say: Callable[[str], None]) -> tuple[list[int], Inventory]:
    try:
        store.pending()  # a damaged store is a usage error before anything is done
    except ValueError as exc:
        raise UsageError(str(exc), "pass --results FILE or set VZKEEP_STATE_DIR to a healthy store") from None
    try:
        removed = clean_leftovers(client, store, scratch_range, wait, say)
        return removed, collect(client)
    except VzkeepError as exc:
        if exc.status in (ExitStatus.TIMEOUT, ExitStatus.INTERRUPTED):
            raise
        raise FindingError(f"cannot prepare the drill: {exc}", exc.hint or
                           "check that PVE is reachable and the token may restore (VM.Allocate, Datastore.*)"
                           ) from None


def _run_all(client: PveClient, inventory: Inventory, targets: list[Backup], scratch_range: tuple[int, int],
             store: DrillResultStore, options: DrillOptions, wait: Wait, say: Callable[[str], None],
             outcomes: list[DrillResult]) -> None:
    verify_store = ResultStore(cluster_results_path(client))
    taken: set[int] = set()
    for backup in targets:
        scratch_vmid = free_scratch_vmid(inventory, scratch_range, taken)
        if scratch_vmid is None:
            raise UsageError(f"--scratch {scratch_range[0]}-{scratch_range[1]}: no free VMID left in the range",
                             "give a wider --scratch range, or fewer guests (--sample N)")
        taken.add(scratch_vmid)
        # Each guest's drill gets the whole --timeout: one bound per rehearsal, not for the whole run.
        outcomes.append(run_drill(client, inventory, backup, scratch_vmid, store, wait.bounded(wait.timeout),
                                  options, verify_store, say))


def _print(report: output.Reporter, outcomes: list[DrillResult]) -> None:
    for r in outcomes:
        report.result(f"{'ok  ' if r.ok else 'FAIL'} {r.env or '-':<12} {r.vmid:>6} {r.name or '?':<20} "
                      f"scratch {r.scratch_vmid} on {r.node or '-'}: {r.message}")


def _stop(report: output.Reporter, exc: VzkeepError, outcomes: list[DrillResult]) -> None:
    """The drill run ends early: report what ran, then hand the error (its task, its hint) to the CLI's handler."""
    task = getattr(exc, "task", None)
    report.result_json({"ok": False, "error": exc.message, "hint": exc.hint,
                        "task": {"upid": task.upid, "node": task.node, "what": task.what} if task else None,
                        "drills": [r.to_json() for r in outcomes]})
    _print(report, outcomes)
    raise exc
