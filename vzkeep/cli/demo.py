"""`vzkeep demo`: the main job on the embedded default (the three stack files), in a sandbox."""

from __future__ import annotations

import html
import re
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
from vzkeep.demo import DEFAULT_DAYS, DemoResult, EnvironmentReport, run_demo
from vzkeep.errors import UsageError
from vzkeep.monitoring.alert_preview import Alert
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
    """Watch the whole strategy work on an emulated cluster: one simulated week, in under a minute.

    Starts a sandbox (an emulated PVE cluster on 127.0.0.1) with what exists before `pulumi up`, applies
    the three stacks to it (vzkeep sandbox apply), and lets the nights pass: jobs fire on their
    schedules, vzdump writes real archives, retention prunes. On the last night that makes no weekly
    offsite copy, prod's postgres (VM 101) is left locked and its backup fails as on PVE: "VM is locked
    (backup)". Then, per environment and in this order: the backups and the pruning (or, where
    retention has nothing to prune yet, the first archive it will prune), the failure in PVE's words,
    the alert the generated rules raise in a real Prometheus and the Telegram message a real
    Alertmanager delivers to a local Telegram stub, verify of every archive, the restore of VM 101
    from its last good backup with the disk digest compared, a restore drill per environment with its
    RTO, the offsite copies, and a closing table. Prometheus and Alertmanager are used when installed
    (Debian packages prometheus, prometheus-alertmanager); without them the demo says so and goes on.

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


STEPS = ("1. Backups made, retention pruning", "2. The injected failure", "3. The alert and its Telegram message",
         "4. Verify: every archive of the week read back", "5. Restore of the failed guest",
         "6. Restore drills", "7. Offsite copies", "8. Where things stand")


def _print_report(console: Console, result: DemoResult) -> None:
    for step, show in zip(STEPS, (_backups, _failure, _alert, _verify, _restore, _drills, _offsite, _closing),
                          strict=True):
        output.heading(console, step)
        show(console, result)


def _tz(result: DemoResult, env: str) -> str:
    return result.timezones.get(env, "UTC")


def _backups(console: Console, result: DemoResult) -> None:
    first = output.format_time(result.started_at, _tz(result, "prod"), seconds=False, weekday=True)
    last = output.format_time(result.ended_at, _tz(result, "prod"), seconds=False, weekday=True)
    console.print(f"simulated {first} → {last} (the nodes' zone, {_tz(result, 'prod')}): {result.days} nights, "
                  f"{result.tasks} vzdump task(s)")
    table = Table("env", "guests", "archives now (storage)", "size", "retention (prune-backups)", "pruned")
    for env in result.environments.values():
        archives = ", ".join(f"{n} ({s})" for s, n in sorted(env.archives.items())) or "-"
        size = output.human_size(sum(env.bytes.values()))
        table.add_row(env.env, str(len(env.guests)), archives, size, env.retention or "-", _pruned(result, env))
    console.print(table)


def _pruned(result: DemoResult, env: EnvironmentReport) -> str:
    if env.pruned:
        return f"{env.pruned} archive(s) this week"
    if env.next_prune is None:
        return "none"
    when = output.format_time(env.next_prune.after_run, env.next_prune.timezone, seconds=False, weekday=True)
    return f"none yet: the first to go is {env.next_prune.volid}, after the backup of {when}"


def _failure(console: Console, result: DemoResult) -> None:
    failures = [(env.env, f) for env in result.environments.values() for f in env.failures]
    for env, failure in failures:
        console.print(f"{env}: {failure}  (PVE's vzdump task log)")
    if not failures:
        console.print("none")


def _alert(console: Console, result: DemoResult) -> None:
    _alerts(console, result.alerts)
    if result.telegram:
        console.print("Telegram message delivered (Alertmanager → local Telegram Bot API stub), as the phone "
                      "shows it:")
        for line in _as_shown(result.telegram).splitlines():
            console.print(f"  │ {line}")
    else:
        console.print(f"no Telegram message shown: {result.telegram_missing}")


def _alerts(console: Console, alerts: list[Alert] | str) -> None:
    if isinstance(alerts, str):
        console.print(f"alerts not evaluated: {alerts}")
        return
    for alert in sorted(alerts, key=lambda a: (a.state, a.name, a.labels.get("env", ""))):
        where = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k in ("env", "vmid", "severity"))
        console.print(Text.assemble((alert.state, "red" if alert.state == "firing" else "yellow"),
                                    f" {alert.name} ({where}): {alert.summary}"))
    if not alerts:
        console.print("no alert")


def _as_shown(text: str) -> str:
    """The HTML message (parse_mode HTML) without its tags, as Telegram renders it."""
    return html.unescape(re.sub(r"</?[a-z]+>", "", text)).strip()


def _verify(console: Console, result: DemoResult) -> None:
    summary = result.verify
    if summary is None:
        console.print("not run")
        return
    console.print(f"{summary.ok} of {summary.archives} archive(s) OK (decompressed, structure checked, SHA-256 "
                  "recorded; the exporter publishes when each was verified)")
    for problem in summary.problems:
        console.print(f"  CORRUPT {problem}")


def _restore(console: Console, result: DemoResult) -> None:
    r = result.restore
    if r is None:
        console.print("not run")
        return
    backup = output.format_time(r.backup_ctime, _tz(result, "prod"), seconds=False, weekday=True)
    console.print(f"restored {r.volid} (backup of {backup}) as VM {r.vmid} on node {r.node}, beside the "
                  f"original, in {r.seconds:.1f} s")
    same = "equal" if r.archive_digest == r.restored_digest else "DIFFERENT"
    console.print(f"disk SHA-256 inside the archive: {r.archive_digest}")
    console.print(f"disk SHA-256 of the restored VM: {r.restored_digest}  → {same}")
    console.print(f"then VM {r.vmid} was removed: in real life, swap it in or keep the original")


def _drills(console: Console, result: DemoResult) -> None:
    if isinstance(result.alerts, list):
        stale = _drill_stale(result.alerts)
        if stale:
            console.print(f"before: DrillStale pending in {', '.join(stale)}: no drill had ever run there (the "
                          "rule waits its 'for' before firing)")
    for env, drill in sorted(result.drills.items()):
        verdict = "ok" if drill.ok else "FAILED"
        console.print(f"{env}: {drill.name} ({drill.vmid}) from {drill.volid} into scratch VMID "
                      f"{drill.scratch_vmid}: {verdict}, RTO {drill.duration_seconds:.1f} s "
                      f"(restore + start on the sandbox's scaled disks), scratch guest destroyed")
    if isinstance(result.alerts_after, list):
        stale_after = _drill_stale(result.alerts_after)
        console.print("after: DrillStale " + (f"still pending in {', '.join(stale_after)}" if stale_after else
                                             "satisfied in every environment (each has a successful drill)"))
        console.print("alerts now (BackupFailed fires until a backup of the guest succeeds: tonight's, or "
                      "`vzdump 101` on its node now):")
        _alerts(console, result.alerts_after)


def _drill_stale(alerts: list[Alert]) -> list[str]:
    """The environments where DrillStale is pending or firing."""
    return sorted({a.labels.get("env", "?") for a in alerts if a.name == "DrillStale"})


def _offsite(console: Console, result: DemoResult) -> None:
    for o in result.offsite:
        where = ("shared NAS storage, seen by " + ", ".join(o.nodes) + ": the copies survive the loss of a node"
                 if o.shared else "node-local storage")
        console.print(f"{o.env}: {len(o.copies)} guest(s) copied to {o.storage} ({where})")
        if o.copies:
            newest = output.format_time(max(o.copies.values()), _tz(result, o.env), seconds=False, weekday=True)
            console.print(f"  newest copy {newest}; guests {', '.join(str(v) for v in sorted(o.copies))}")
    if not result.offsite:
        console.print("no environment has an offsite storage")


def _closing(console: Console, result: DemoResult) -> None:
    table = Table("env", "guests", "covered", "last backup (stalest guest)", "failures", "verified", "offsite",
                  "drill RTO", "alerts firing")
    for row in closing_rows(result):
        table.add_row(*row)
    console.print(table)
    now = output.format_time(result.ended_at, _tz(result, "prod"), seconds=False)
    console.print(f"(ages on the cluster's clock, {now}; the demo took {result.wall_seconds:.1f} s)")


def closing_rows(result: DemoResult) -> list[tuple[str, ...]]:
    """One row per environment: what a homelab admin checks first."""
    snap = result.snapshot_after or result.snapshot
    firing = [a for a in result.alerts_after if a.state == "firing"] if isinstance(result.alerts_after, list) else []
    by_env = result.verify.by_env if result.verify else {}
    verified = {env: f"{ok}/{total} OK" for env, (ok, total) in by_env.items()}
    offsite = {o.env: o for o in result.offsite}
    rows = []
    for env in result.environments.values():
        guests = [g for g in snap.guests if g.env == env.env]
        covered = sum(1 for g in guests if snap.covered.get(g.vmid))
        newest_of = {g.vmid: max((a.last_ctime for a in snap.archives if a.vmid == g.vmid), default=0)
                     for g in guests}
        newest = min(newest_of.values(), default=0)
        age = output.format_age(result.ended_at - newest) + " ago" if newest else "never"
        names = sorted({a.name for a in firing if a.labels.get("env") == env.env})
        drill = result.drills.get(env.env)
        o = offsite.get(env.env)
        rows.append((env.env, str(len(guests)), f"{covered}/{len(guests)}", age, str(len(env.failures)),
                     verified.get(env.env, "-"), f"{len(o.copies)}/{len(guests)}" if o else "-",
                     f"{drill.duration_seconds:.1f} s" if drill and drill.ok else "-", ", ".join(names) or "none"))
    return rows
