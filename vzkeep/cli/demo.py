"""`vzkeep demo`: the main job on the embedded default (the three stack files), in a sandbox."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vzkeep.cli import output
from vzkeep.cli.common import OldDirOpt, parse_instant
from vzkeep.config import project_root
from vzkeep.demo import DEFAULT_DAYS, DemoResult, run_demo
from vzkeep.errors import UsageError
from vzkeep.sandbox.engine import CLUSTER_FILE
from vzkeep.sandbox.server import CONNECTION_FILE


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    days: Annotated[int, typer.Option(min=1, max=60, help="Simulated days to let pass.")] = DEFAULT_DAYS,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Keep the sandbox's directory here (default: a temp dir).")] = None,
    old_dir: OldDirOpt = None,
    root: Annotated[Path | None, typer.Option(help="Directory holding the stack files.")] = None,
    start: Annotated[str | None, typer.Option(
        help="When the simulated days begin: ISO 8601 (2026-10-21T12:00Z) or epoch seconds; a time without an "
             "offset is in this machine's zone. Default: so that they end now. The same start gives the same "
             "week.")] = None,
) -> None:
    """Watch the whole strategy work on an emulated cluster: one simulated week, in seconds.

    Starts a sandbox (an emulated PVE cluster on 127.0.0.1) seeded from the stack files, lets the
    days pass (jobs fire on their schedules, vzdump writes real archives, retention prunes; on the
    last night without an offsite copy, prod's postgres is left locked and its backup fails as on PVE:
    "VM is locked (backup)"), then prints per environment what PVE now holds, and what the exporter
    publishes for Prometheus.

    Examples:

        vzkeep demo

        vzkeep demo --start 2026-10-21T12:00Z   # a week across the end of summer time

        vzkeep demo --days 30 --dir .sandbox   # keep the sandbox, then `vzkeep sandbox serve --dir .sandbox`
    """
    console = output.console()
    root = root or project_root()
    with tempfile.TemporaryDirectory(prefix="vzkeep-demo-") as tmp:
        directory = old_dir or directory or Path(tmp) / "sandbox"
        if (directory / CLUSTER_FILE).exists() or (directory / CONNECTION_FILE).exists():
            raise UsageError(f"--dir {directory} already holds a sandbox; the demo needs a fresh directory",
                             "leave --dir out (a temporary directory is used) or name a new directory")
        console.print(output.styled(("vzkeep demo", "bold"),
                                    f": sandbox seeded from the stacks in {root}; {days} simulated days"))
        first = None if start is None else parse_instant(start, "--start")
        result = run_demo(directory, root, days=days, start=first, progress=lambda msg: console.print(f"  {msg}"))
        _print_report(console, result)


def _print_report(console: Console, result: DemoResult) -> None:
    first = output.format_time(result.started_at, "UTC", seconds=False)
    last = output.format_time(result.ended_at, "UTC", seconds=False)
    output.heading(console, "What the cluster holds now")
    console.print(f"simulated {first} → {last}: {result.tasks} vzdump task(s), in {result.wall_seconds:.1f} s")
    table = Table("env", "guests", "archives (storage)", "size", "pruned", "failures")
    for env in result.environments.values():
        archives = ", ".join(f"{n} ({s})" for s, n in sorted(env.archives.items())) or "-"
        size = output.human_size(sum(env.bytes.values()))
        table.add_row(env.env, str(len(env.guests)), archives, size, str(env.pruned), "\n".join(env.failures) or "none")
    console.print(table)
    output.heading(console, output.styled(("What the exporter publishes", "bold"), " (vzkeep exporter --once)"))
    snap = result.snapshot
    console.print(f"vzkeep_up {int(snap.up)}; guests {len(snap.guests)}; jobs {len(snap.jobs)}; "
                  f"storages {len(snap.storages)}")
    newest = {}
    for item in snap.archives:
        if item.vmid not in newest or item.last_ctime > newest[item.vmid].last_ctime:
            newest[item.vmid] = item
    attempts = {a.vmid: a for a in snap.attempts}
    guests = Table("env", "vmid", "name", "covered", "last success", "size", "last status")
    for guest in sorted(snap.guests, key=lambda g: (g.env, g.vmid)):
        archive = newest.get(guest.vmid)
        attempt = attempts.get(guest.vmid)
        status = "-" if attempt is None else ("ok" if attempt.ok else "FAILED")
        age = "never" if archive is None else f"{(result.ended_at - archive.last_ctime) / 3600:.0f} h ago"
        guests.add_row(guest.env, str(guest.vmid), guest.name, "yes" if snap.covered.get(guest.vmid) else "NO",
                       age, output.human_size(archive.last_size) if archive else "-", status)
    console.print(guests)
    for storage in snap.storages:
        if storage.size:
            console.print(f"storage {storage.storage} on {storage.node}: {100 * storage.used / storage.size:.1f}% used")
    output.heading(console, output.styled(("Alerts the generated rules raise now", "bold"), " (a real Prometheus)"))
    if isinstance(result.alerts, str):
        console.print(f"not evaluated: {result.alerts}")
        return
    for alert in sorted(result.alerts, key=lambda a: (a.state, a.name)):
        where = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k in ("env", "vmid", "severity"))
        console.print(Text.assemble((alert.state, "red" if alert.state == "firing" else "yellow"),
                                    f" {alert.name} ({where}): {alert.summary}"))
    if not result.alerts:
        console.print("none")
