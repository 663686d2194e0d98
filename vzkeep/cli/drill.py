"""``vzkeep drill``: automated restore rehearsals into scratch VMIDs, results for the exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from proxmoxer.core import ResourceException

from vzkeep.backups import collect, pve_message
from vzkeep.cli import output
from vzkeep.connection import ConnectionOptions, connect, with_connection
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
from vzkeep.errors import ExitStatus, FindingError, UsageError
from vzkeep.restore import RestoreError
from vzkeep.verify import ResultStore, default_results_path


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
) -> None:
    """Rehearse restores: each guest's newest backup into a scratch VMID, started, timed, destroyed.

    The scratch guest gets new MAC addresses and every network link down (link_down=1) before it is
    started, so nothing conflicts with production; the original guest is never touched. Scratch
    guests left by an interrupted drill (pending in the results store, or tagged vzkeep-drill) are
    destroyed first. Results feed the exporter (vzkeep_drill_last_success_timestamp_seconds,
    vzkeep_drill_duration_seconds, vzkeep_drill_last_status) and the Drill* alerts.

    Exit codes: 0 every drill succeeded, 1 a drill failed, 2 usage (nothing to drill, bad range).

    Examples:

        vzkeep drill --env prod

        vzkeep drill --guest postgres --node pve2 --storage local-lvm

        vzkeep drill --env lab --sample 2 --scratch 9500-9599 --json
    """
    scratch_range = parse_range(scratch)
    store = DrillResultStore(results)
    api = connect(conn)
    report = output.Reporter(as_json=as_json)
    say = report.progress

    try:
        store.pending()  # a damaged store is a usage error before anything is done
        removed = clean_leftovers(api, store, scratch_range, say)
        inventory = collect(api)
    except ValueError as exc:
        raise UsageError(str(exc), "pass --results FILE or set VZKEEP_STATE_DIR to a healthy store") from None
    except ResourceException as exc:
        raise FindingError(f"cannot prepare the drill: {pve_message(exc)}",
                           "check that PVE is reachable and the token may restore (VM.Allocate, Datastore.*)"
                           ) from None
    except RestoreError as exc:
        raise FindingError(f"cannot prepare the drill: {exc}", exc.hint) from None
    targets = drill_targets(inventory, env, guest, sample)
    if not targets:
        raise UsageError(f"nothing to drill: no existing guest with a readable backup matches (env={env}, "
                         f"guest={guest})", "see the guests and their backups with: vzkeep backups list")
    outcomes = _run_all(api, inventory, targets, scratch_range, store, DrillOptions(scratch_range, node, storage),
                        say)
    report.result_json({"ok": all(r.ok for r in outcomes), "removed_leftovers": removed,
                        "drills": [r.to_json() for r in outcomes]})
    for r in outcomes:
        report.result(f"{'ok  ' if r.ok else 'FAIL'} {r.env or '-':<12} {r.vmid:>6} {r.name or '?':<20} "
                      f"scratch {r.scratch_vmid} on {r.node or '-'}: {r.message}")
    raise typer.Exit(ExitStatus.OK if all(r.ok for r in outcomes) else ExitStatus.FINDING)


def _run_all(api, inventory, targets, scratch_range, store, options, say) -> list[DrillResult]:  # type: ignore[no-untyped-def]
    verify_store = ResultStore(default_results_path())
    outcomes = []
    taken: set[int] = set()
    for backup in targets:
        scratch_vmid = free_scratch_vmid(inventory, scratch_range, taken)
        if scratch_vmid is None:
            raise UsageError(f"--scratch {scratch_range[0]}-{scratch_range[1]}: no free VMID left in the range",
                             "give a wider --scratch range, or fewer guests (--sample N)")
        taken.add(scratch_vmid)
        outcomes.append(run_drill(api, inventory, backup, scratch_vmid, store, options, verify_store, say))
    return outcomes
