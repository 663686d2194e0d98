"""``vzkeep task follow|stop UPID``: pick up a PVE task a command stopped waiting for, or stop it.

When ``vzkeep restore`` or ``vzkeep drill`` stops waiting (``--timeout``, Ctrl-C, a stepped sandbox), PVE's
task goes on; these commands reach it through the same connection options, on a real cluster and on
the sandbox alike. The node is read from the UPID itself (pve-common ``src/PVE/UPID.pm``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from vzkeep.cli import output
from vzkeep.cli.common import sub_app
from vzkeep.cli.waits import AdvanceOpt, make_wait, timeout_option
from vzkeep.connection import ConnectionOptions, connect_client, with_connection
from vzkeep.errors import ExitStatus, UsageError
from vzkeep.follow import Task, follow_task
from vzkeep.pve.upid import decode_upid

DEFAULT_TIMEOUT = 6 * 3600.0

app = sub_app("Follow or stop a PVE task (by its UPID) that a vzkeep command stopped waiting for.")

UpidArg = Annotated[str, typer.Argument(help="the task's UPID, as the command that started it printed it",
                                        show_default=False)]


def _task(upid: str) -> Task:
    try:
        info = decode_upid(upid.strip())
    except ValueError as exc:
        raise UsageError(f"{upid!r} is not a PVE task id (UPID:<node>:<pid>:<pstart>:<start>:<type>:<id>:<user>:)",
                         str(exc)) from None
    return Task(info.node, upid.strip(), f"{info.type} {info.id}".strip())


@app.command("follow")
@with_connection
def follow_cmd(
    conn: ConnectionOptions,
    upid: UpidArg,
    timeout: Annotated[float, timeout_option(DEFAULT_TIMEOUT, "for the task to end")] = DEFAULT_TIMEOUT,
    advance: AdvanceOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document at the end, for scripts")] = False,
) -> None:
    """Print a task's log as PVE writes it and wait until it ends; exit 0 if it ended OK, 1 if not.

    Examples:

        vzkeep task follow 'UPID:pve1:0002A3F1:00C1B2A3:67A1B2C3:qmrestore:101:root@pam!vzkeep:'

        vzkeep task follow "$UPID" --sandbox .sandbox/sandbox.json --advance
    """
    report = output.Reporter(as_json=as_json)
    task = _task(upid)
    wait = make_wait(conn, timeout, advance, report.err.print)  # notes about the wait: stderr, even with --json
    exitstatus, lines = follow_task(connect_client(conn), task, wait,
                                    None if as_json else report.result)
    ok = exitstatus == "OK" or exitstatus.startswith("WARNINGS")
    report.result_json({"upid": task.upid, "node": task.node, "exitstatus": exitstatus, "ok": ok, "log": lines})
    raise typer.Exit(ExitStatus.OK if ok else ExitStatus.FINDING)


@app.command("stop")
@with_connection
def stop_cmd(conn: ConnectionOptions, upid: UpidArg) -> None:
    """Ask PVE to stop a running task: DELETE /nodes/NODE/tasks/UPID (pve-manager PVE/API2/Tasks.pm stop_task).

    PVE stops the worker; the task then ends with an error status (follow it to see it end).

    Examples:

        vzkeep task stop 'UPID:pve1:0002A3F1:00C1B2A3:67A1B2C3:qmrestore:101:root@pam!vzkeep:'
    """
    task = _task(upid)
    connect_client(conn).delete(f"nodes/{task.node}/tasks/{task.upid}")
    output.console().print(f"asked PVE to stop task {task.upid} on node {task.node}")
