"""``vzkeep restore GUEST``: one guest back from its backup, checked first, followed to the end."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from vzkeep.backups import Inventory, collect
from vzkeep.cli import output
from vzkeep.cli.waits import AdvanceOpt, make_wait, timeout_option
from vzkeep.connection import ConnectionOptions, connect_client, with_connection
from vzkeep.errors import ExitStatus, Interrupted, VzkeepError
from vzkeep.follow import Wait
from vzkeep.pve.client import PveClient
from vzkeep.restore import (
    Precheck,
    RestoreOptions,
    RestorePlan,
    execute,
    next_good_backup,
    plan_restore,
    precheck,
    progress_percent,
    start_and_wait,
)
from vzkeep.verify import ResultStore, cluster_results_path

DEFAULT_TIMEOUT = 6 * 3600.0  # a restore of a large guest from a NAS takes hours; it must still end


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)


class Reporter(output.Reporter):
    """Human lines on stderr (progress, steps), or one JSON document on stdout at the end."""

    def __init__(self, as_json: bool) -> None:
        super().__init__(as_json=as_json)
        self.doc: dict[str, Any] = {"ok": False}

    def say(self, text: str) -> None:
        self.progress(text)

    def finish(self, status: int, error: str | None = None, hint: str | None = None) -> NoReturn:
        """End the command: with an error, raise it (``restore_cmd`` records it with ``fail``); else the
        JSON document (with --json) and the exit status."""
        if error is not None:
            raise VzkeepError(error, hint, status=ExitStatus(status))
        self.result_json(self.doc)
        raise typer.Exit(int(status))

    def fail(self, exc: VzkeepError) -> NoReturn:
        """Record the error (and the task it left running) in the JSON document, then raise it to the handler."""
        task = getattr(exc, "task", None)
        if task is not None:
            self.doc["task"] = {"upid": task.upid, "node": task.node, "what": task.what}
        self.doc.update(getattr(exc, "details", {}))
        self.doc["error"] = exc.message
        if exc.hint:
            self.doc["hint"] = exc.hint
        self.result_json(self.doc)
        raise exc


@with_connection
def restore_cmd(
    conn: ConnectionOptions,
    guest: Annotated[str, typer.Argument(help="the guest to restore: VMID or name (also of a deleted guest)")],
    source: Annotated[str, typer.Option(
        "--from", help="latest, a time (newest backup at or before it: 2026-01-05, '2026-01-05 02:00') or a "
                       "volume ID")] = "latest",
    node: Annotated[str | None, typer.Option("--node", help="restore on this node (must see the storage)")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="target storage for the disks")] = None,
    vmid: Annotated[int | None, typer.Option("--vmid", help="restore as this new VMID, beside the original")] = None,
    start: Annotated[bool, typer.Option("--start", help="start the guest and wait until it runs")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace an existing guest (asks first)")] = False,
    unique: Annotated[bool, typer.Option("--unique", help="new MAC addresses (for a copy beside the original)")
                      ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the calls it would make, change nothing")
                       ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="answer yes to confirmations (for scripts)")] = False,
    results: Annotated[Path | None, typer.Option(
        "--results", help="verify results store (default: the cluster's, $VZKEEP_STATE_DIR/verify/<cluster>.sqlite)"
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout for scripts")] = False,
    timeout: Annotated[float, timeout_option(DEFAULT_TIMEOUT, "in all (restore, and start with --start)")
                       ] = DEFAULT_TIMEOUT,
    advance: AdvanceOpt = False,
) -> None:
    """Restore a VM or container from its newest backup (or the one --from names).

    Finds the guest's backups on every storage, checks the archive first when this machine can read
    it (on the node, on a NAS mount, in the sandbox), then asks PVE to restore on a node that sees the
    storage and follows PVE's task until it ends. A corrupt archive stops everything before PVE writes
    anything, and the next older good backup is offered. An existing guest is never replaced unless
    --force is given AND confirmed (--yes; without a terminal and without --yes it refuses). If PVE
    fails, its message is shown and a half-made guest it left behind is removed.

    Every wait ends: after --timeout, or on Ctrl-C, the command stops and names the PVE task still
    running, with the commands to follow it (vzkeep task follow UPID) or stop it. Lost connections while
    following the task are retried. On a sandbox whose clock is stepped, a task ends only when the clock
    moves: --advance moves it while waiting; without it the command says so within seconds.

    Exit codes: 0 restored, 1 corrupt archive or PVE failure, 2 refused (usage, unknown guest, VMID in
    use, node cannot see the storage, confirmation needed), 3 the wait ended before PVE's task (timeout,
    stepped sandbox), 130 interrupted.

    Examples:

        vzkeep restore postgres

        vzkeep restore 101 --from 2026-01-05 --node pve2 --start

        vzkeep restore 101 --vmid 9101 --unique --dry-run

        vzkeep restore 101 --force --yes --json

        vzkeep restore 101 --vmid 5101 --sandbox .sandbox/sandbox.json --advance
    """
    out = Reporter(as_json)
    try:
        _run(out, conn, RestoreOptions(guest, source, node, storage, vmid, force, unique), start, dry_run, yes,
             results, timeout, advance)
    except VzkeepError as exc:  # refusals, PVE's failures, and waits that ended (they name the task)
        out.fail(exc)
    except KeyboardInterrupt:
        after = "upid" in out.doc  # execute() turns a Ctrl-C while PVE works into TaskInterrupted
        out.fail(Interrupted("interrupted (Ctrl-C) " + (
            f"after PVE's restore task {out.doc['upid']} ended" if after else
            "before PVE was asked to restore: nothing changed")))


def _run(out: Reporter, conn: ConnectionOptions, options: RestoreOptions, start: bool, dry_run: bool, yes: bool,
         results: Path | None, timeout: float, advance: bool) -> None:
    began = time.monotonic()
    wait = make_wait(conn, timeout, advance, out.say)
    client = connect_client(conn)
    store = ResultStore(results or cluster_results_path(client))
    inventory = _read_cluster(client)
    plan = plan_restore(inventory, options)
    _describe(out, plan)
    if dry_run:
        _dry_run(out, plan, start)
    _confirm_overwrite(out, plan, yes)
    check = precheck(client, plan.backup, plan.node, store)
    out.doc["precheck"] = check.to_json()
    out.say(check.summary)
    if not check.ok:
        _stop_on_corruption(out, client, inventory, plan, check, store, options.guest)
    _restore(out, client, plan, start, began, wait)


def _read_cluster(client: PveClient) -> Inventory:
    try:
        return collect(client)
    except VzkeepError as exc:
        raise VzkeepError(f"cannot read the cluster: {exc}", exc.hint, status=ExitStatus.USAGE) from None


def _describe(out: Reporter, plan: RestorePlan) -> None:
    b = plan.backup
    out.doc.update(vmid=plan.vmid, type=plan.guest_type, node=plan.node, volid=b.volid, storage=b.storage,
                   backup_ctime=b.ctime, params=plan.params)
    target = f" as VMID {plan.vmid}" if plan.vmid != b.vmid else ""
    out.say(f"restore {b.name or b.vmid} (vmid {b.vmid}){target} from {b.volid} on node {plan.node}")


def _dry_run(out: Reporter, plan: RestorePlan, start: bool) -> None:
    calls = [f"GET /nodes/{plan.node}/storage/{plan.backup.storage}/content/{plan.backup.volid} (archive path)",
             "verify the archive here when that path is readable (stop if it is corrupt)"]
    if plan.existing is not None:
        calls.insert(0, f"confirm: replace {plan.label} ({plan.existing.get('name', '?')}) on node {plan.node}")
    calls += plan.api_calls(start)
    out.doc.update(ok=True, dry_run=True, calls=calls)
    out.say("dry run: nothing changed; the calls would be:")
    for call in calls:
        out.result(f"  {call}")
    out.finish(ExitStatus.OK)


def _confirm_overwrite(out: Reporter, plan: RestorePlan, yes: bool) -> None:
    if plan.existing is None or yes:
        return
    question = (f"Replace {plan.label} ({plan.existing.get('name', '?')}) on node {plan.node} with "
                f"{plan.backup.volid}? Its current disks will be lost")
    if not sys.stdin.isatty():
        out.finish(ExitStatus.USAGE, f"refusing to replace {plan.label} without confirmation, and there is no "
                                     "terminal to ask: re-run with --yes")
    if not typer.confirm(question, default=False):
        out.finish(ExitStatus.USAGE, "not confirmed: nothing was changed")


def _stop_on_corruption(out: Reporter, client: PveClient, inventory: Inventory, plan: RestorePlan, check: Precheck,
                        store: ResultStore, guest: str) -> None:
    for problem in check.problems:
        out.say(f"  {problem}")
    found = next_good_backup(client, inventory, plan, store)
    message = (f"{plan.backup.volid} is corrupt ({'; '.join(check.problems)}); PVE was not asked to restore "
               "anything")
    if found is None:
        message += "; no older good backup of this guest was found"
    else:
        older, older_check = found
        out.doc["next_good"] = {"volid": older.volid, "precheck": older_check.to_json()}
        checked = "passed the pre-check" if older_check.ran else "could not be checked from here"
        message += (f". The next older backup {older.volid} {checked}: vzkeep restore {guest} "
                    f"--from {older.volid}")
    out.finish(ExitStatus.FINDING, message)


def _restore(out: Reporter, client: PveClient, plan: RestorePlan, start: bool, began: float, wait: Wait) -> None:
    progress = _progress(out)
    try:
        result = execute(client, plan, wait, on_line=_line_sink(out, progress))
    except VzkeepError as exc:
        _stop(progress)
        details = getattr(exc, "details", {})
        for line in details.get("log_tail", []) if not out.as_json else []:
            out.say(f"  pve: {line}")
        cleanup = details.get("cleanup")
        if cleanup:
            exc.message += f"; {cleanup}"
        raise  # restore_cmd records it in the JSON document and hands it to the CLI's handler
    _stop(progress)
    out.doc.update(upid=result.upid, exitstatus=result.exitstatus, task_seconds=round(result.wall_seconds, 3))
    out.say(f"PVE task {result.upid} ended: {result.exitstatus}")
    if start:
        waited = start_and_wait(client, plan.node, plan.guest_type, plan.vmid, wait)
        out.doc["start_seconds"] = round(waited, 3)
        out.say(f"{plan.label} is running")
    elapsed = time.monotonic() - began
    out.doc.update(ok=True, started=start, elapsed_seconds=round(elapsed, 3))
    out.say(f"restored {plan.label} on node {plan.node} in {elapsed:.1f} s")
    out.finish(ExitStatus.OK)


def _progress(out: Reporter) -> Progress | None:
    if out.as_json or not sys.stderr.isatty():
        return None
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=out.err, transient=True)
    progress.add_task("PVE restore task", total=100)
    progress.start()
    return progress


def _line_sink(out: Reporter, progress: Progress | None):  # type: ignore[no-untyped-def]
    def sink(line: str) -> None:
        if progress is None:
            out.say(f"  pve: {line}")
            return
        task_id = progress.task_ids[0]
        percent = progress_percent(line)
        progress.update(task_id, description=line[:60], **({"completed": percent} if percent is not None else {}))

    return sink


def _stop(progress: Progress | None) -> None:
    if progress is not None:
        progress.stop()

