"""``vzkeep sandbox``: run an emulated PVE cluster on 127.0.0.1 and tell stories with it.

A sandbox keeps everything in its directory (default ``.sandbox``, ``--dir``): the cluster, the archives,
the task logs, its certificate and ``sandbox.json`` (endpoint, fingerprint, tokens; mode 0600). The other
commands talk to a running sandbox through its ``/_sandbox/`` control API.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vzkeep.cli import output
from vzkeep.cli.common import OldDirOpt, sub_app
from vzkeep.errors import UsageError
from vzkeep.sandbox.client import control
from vzkeep.sandbox.control import parse_duration
from vzkeep.sandbox.faults import KINDS
from vzkeep.sandbox.seed import parse_size

app = sub_app("An emulated Proxmox VE cluster on 127.0.0.1 (`serve`), and the knobs to drive it.")
node_app = sub_app("Add a node; power a node off or on; lose one for good.")
guest_app = sub_app("Add, delete, lock guests; read a guest's disk digest.")
app.add_typer(node_app, name="node")
app.add_typer(guest_app, name="guest")


def _out() -> Console:
    return output.console(soft_wrap=True)  # long tokens and URLs must stay on one line (copy-paste)


DEFAULT_DIR = Path(".sandbox")
DEFAULT_SANDBOX_JSON = DEFAULT_DIR / "sandbox.json"
SandboxFileOpt = Annotated[Path, typer.Option(
    "--sandbox", envvar="VZKEEP_SANDBOX", help="the running sandbox's sandbox.json")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the reply as JSON (for scripts)")]


@app.command()
def serve(
    directory: Annotated[Path, typer.Option(
        "--dir", help="the sandbox's directory: cluster, archives, logs (created if missing)")] = DEFAULT_DIR,
    old_dir: OldDirOpt = None,
    seed: Annotated[Path | None, typer.Option("--seed", help="seed YAML for a new sandbox")] = None,
    from_stacks: Annotated[bool, typer.Option(
        "--from-stacks", help="seed a new sandbox from Pulumi.<env>.yaml in --stacks-dir")] = False,
    stacks_dir: Annotated[Path, typer.Option("--stacks-dir", help="where the stack files are")] = Path("."),
    host: Annotated[str, typer.Option("--host", help="listen address (loopback only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTPS port")] = 8006,
    speed: Annotated[float | None, typer.Option("--speed", help="run the clock N times faster")] = None,
    stepped: Annotated[bool, typer.Option("--stepped", help="the clock moves only with `advance`")] = False,
    auth_delay: Annotated[float, typer.Option(
        "--auth-delay", help="seconds to wait before a 401, as PVE does (3); 0 = answer at once")] = 0.0,
    pve_version: Annotated[str | None, typer.Option(
        "--pve-version", help="the PVE a new sandbox plays: 9 (9.1.3, the default) or 8 (8.4.0); "
        "overrides the seed's pve_version")] = None,
) -> None:
    """Start a sandbox and serve the PVE API until Ctrl-C.

    A new directory is seeded (default seed, --seed FILE, or --from-stacks); an existing one
    is reopened as it was left (the seed is then ignored).

    Examples:

        vzkeep sandbox serve --dir .sandbox --stepped
        vzkeep sandbox serve --from-stacks --speed 600 --port 8443
        vzkeep sandbox serve --dir .sandbox-pve8 --pve-version 8
    """
    from vzkeep.sandbox.launch import launch

    directory = old_dir or directory

    if seed and from_stacks:
        raise UsageError("--seed and --from-stacks are alternatives: give one of them")
    if speed is not None and stepped:
        raise UsageError("--speed and --stepped are alternatives: an accelerated clock or a stepped one")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"--host {host}: the sandbox only listens on the loopback interface (127.0.0.1)",
                         "use --host 127.0.0.1 (the default), localhost or ::1")
    running = launch(directory, seed=seed, stacks_root=stacks_dir if from_stacks else None, host=host,
                     port=port, speed=speed, stepped=stepped, auth_failure_delay=auth_delay,
                     pve_version=pve_version)  # LaunchError: exit 2
    _print_banner(running.info, running.created, directory)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _out().print("stopping sandbox")
    finally:
        running.stop()



@app.command()
def apply(
    stack: Annotated[str, typer.Option("--stack", help="the stack to apply: Pulumi.<stack>.yaml in --stacks-dir")],
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
    stacks_dir: Annotated[Path | None, typer.Option(
        "--stacks-dir", help="where the stack files are (default: the project root)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; change nothing")] = False,
    advance: Annotated[bool, typer.Option(
        "--advance", help="on a stepped sandbox, move its clock while PVE tasks run (else they never end)")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds to wait for one PVE task")] = 300.0,
    unprotect: Annotated[list[str] | None, typer.Option(
        "--unprotect", help="allow deleting or replacing this protected resource (as `pulumi state unprotect`); "
                            "repeatable")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Do to the sandbox what `pulumi up` of a stack would do to the cluster, through the PVE API.

    The real program runs under Pulumi's mocks, and each resource it declares becomes the HTTP requests
    pulumi-proxmoxve (bpg's provider) sends: pools, storages, backup jobs, the state container, users,
    roles, ACLs, tokens. Files the stack delivers land in the sandbox's directory; the state
    bucket goes to a local SeaweedFS; anything else is listed as not applied, with the reason. The
    stack's endpoint and token are replaced by the sandbox's, unset secrets by throwaway values.

    Like Pulumi, it keeps what it applied (in <dir>/apply/<stack>.json) and changes only what differs:
    a second apply of the same stack changes nothing. It stops before any change when the stack does
    not fit the cluster or would delete a protected resource, and at the first resource PVE rejects.

    Examples:

        vzkeep sandbox apply --stack prod
        vzkeep sandbox apply --stack monitoring --dry-run --json
        vzkeep sandbox apply --stack prod --unprotect prod-offsite-nfs
    """
    from vzkeep.apply.engine import ApplyFailed, ApplyOptions, apply_stack

    report = output.Reporter(as_json=as_json)
    options = ApplyOptions(stack=stack, sandbox=sandbox, root=stacks_dir, dry_run=dry_run, advance=advance,
                           timeout=timeout, unprotect=frozenset(unprotect or ()), progress=report.progress)
    try:
        result = apply_stack(options)
    except ApplyFailed as exc:
        _show_apply(exc.result, report)  # what was done before the failure, then the error (exit 1)
        raise
    except KeyboardInterrupt:
        from vzkeep.errors import Interrupted

        raise Interrupted("interrupted: what was applied is kept in the sandbox's apply state",
                          "run the same apply again to complete it") from None
    _show_apply(result, report)


def _show_apply(result: Any, report: output.Reporter) -> None:
    """The report: one JSON document on stdout with --json, else one line per resource and the totals."""
    data = result.to_json()
    report.result_json(data)
    if report.as_json:
        return
    verb = "would be " if result.dry_run else ""
    for sub in data["substituted"]:
        report.progress(f"  {sub['key']}: {sub['by']}")
    signs = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "read": ">", "not-applied": "?",
             "skipped": "!", "failed": "x"}
    changes = ("create", "update", "replace", "delete")
    for event in result.events:
        if event.op in signs:
            what = f"{verb}{event.op}d" if event.op in changes else event.op
            detail = f" ({event.detail})" if event.detail else ""
            report.result(f"  {signs[event.op]} {event.name}  {event.description}  {what}{detail}")
    report.result(f"{result.stack}: {len(data['created'])} {verb}created, {len(data['updated'])} {verb}updated, "
                  f"{len(data['replaced'])} {verb}replaced, {len(data['deleted'])} {verb}deleted, "
                  f"{len(data['unchanged'])} unchanged, {len(data['not_applied'])} not applied")
    for key, value in data["outputs"].items():
        report.result(f"  output {key} = {value if isinstance(value, str) else json.dumps(value)}")


def _print_banner(info: dict[str, Any], created: bool, directory: Path) -> None:
    admin = info["tokens"]["admin"]
    token = f"{admin['user']}!{admin['token_name']}={admin['token_value']}"
    _out().print(output.styled(("vzkeep sandbox", "bold"), f" {'created' if created else 'reopened'} in {directory}"))
    _out().print(f"  endpoint     {info['url']} (PVE {info.get('pve_version', '?')})")
    _out().print(f"  fingerprint  {info['fingerprint']}")
    _out().print(f"  admin token  {token}")
    _out().print(f"  connection   {directory / 'sandbox.json'} (mode 0600; auditor token inside)")
    _out().print(
        f"  try          python -c \"from proxmoxer import ProxmoxAPI; print(ProxmoxAPI('{info['host']}', "
        f"port={info['port']}, user='{admin['user']}', token_name='{admin['token_name']}', "
        f"token_value='{admin['token_value']}', verify_ssl=False).cluster.resources.get(type='vm'))\""
    )
    _out().print("  Ctrl-C stops it; its directory stays for the next `serve`.")


# -- talking to a running sandbox -------------------------------------------------------------------


def _control(sandbox: Path, method: str, path: str, **params: Any) -> Any:
    """One ``/_sandbox/`` call; a ControlError exits 2 (bad request) or 1 (sandbox failure) with PVE's message."""
    return control(sandbox, method, path, **params)


def _show(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        output.emit_json(data)
    else:
        _out().print(text)


@app.command()
def advance(
    duration: Annotated[str, typer.Argument(help="how far: 90s, 30m, 12h, 1d, 2w, or '1d 6h'")],
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
    as_json: JsonOpt = False,
) -> None:
    """Move the clock forward; scheduled jobs run on the way, as pvescheduler would.

    Examples:

        vzkeep sandbox advance 1d
        vzkeep sandbox advance "6d 12h" --json
    """
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = _control(sandbox, "POST", "/advance", seconds=seconds)
    started = len(data.get("tasks") or [])
    when = output.format_time(data["now"], "UTC")
    _show(data, as_json, f"clock now {when}; {started} task(s) started")


@app.command()
def status(sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON, as_json: JsonOpt = False) -> None:
    """Clock, nodes, storages (used/capacity) and jobs of a running sandbox.

    Example: vzkeep sandbox status --json
    """
    data = _control(sandbox, "GET", "/status")
    if as_json:
        output.emit_json(data)
        return
    when = output.format_time(data["now"], "UTC")
    _out().print(output.styled((data["cluster"], "bold"), f"  clock {when} ({data['clock']})  guests "
                               f"{data['guests']}  jobs {', '.join(data['jobs']) or '-'}"))
    _out().print("nodes: " + ", ".join(f"{n['node']} ({'up' if n['online'] else 'DOWN'})" for n in data["nodes"]))
    table = Table("storage", "type", "used", "total", "used %")
    for s in data["storages"]:
        pct = f"{100 * s['used'] / s['total']:.1f}" if s["total"] else "-"
        where = s["storage"] + (f" ({s['node']})" if s.get("node") else "")  # a local storage: one row per node
        table.add_row(where, s["type"], output.human_size(s["used"]), output.human_size(s["total"]), pct)
    _out().print(table)
    for fault in data.get("faults", []):
        _out().print(f"fault armed: {fault['kind']} x{fault['count']}" + ("" if fault["cleanup"] else " (no cleanup)"))


@node_app.command("add")
def node_add(
    node: Annotated[str, typer.Argument(help="the new node's name, e.g. pve3")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the node")] = "Europe/Paris",
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
    as_json: JsonOpt = False,
) -> None:
    """A fresh node joins the cluster, up and empty (what installing PVE and `pvecm add` do).

    Storages without a node restriction, and shared ones (the NAS), are visible from it; local storages
    of other nodes are not. Use it to replace a lost node.

    Examples:

        vzkeep sandbox node add pve3
        vzkeep sandbox node add pve2 --timezone Europe/Berlin --json
    """
    data = _control(sandbox, "POST", "/nodes", name=node, timezone=timezone)
    _show(data, as_json, f"node {node} added ({data['timezone']}); it sees: {', '.join(data['storages']) or '-'}")


@node_app.command("down")
def node_down(node: str, sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON) -> None:
    """Power a node off: its guests stop, its jobs do not run, its API calls fail (595).

    Example: vzkeep sandbox node down pve2
    """
    _control(sandbox, "POST", f"/nodes/{node}/down")
    _out().print(f"node {node} is down")


@node_app.command("up")
def node_up(node: str, sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON) -> None:
    """Power a node on again (the scheduler restarts: missed runs are dropped unless repeat-missed).

    Example: vzkeep sandbox node up pve2
    """
    _control(sandbox, "POST", f"/nodes/{node}/up")
    _out().print(f"node {node} is up")


@node_app.command("lose")
def node_lose(node: str, sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON, as_json: JsonOpt = False) -> None:
    """Lose a node for good, with its disk: it goes down, its guests and the backups on its local
    storages are gone; shared storages (the NAS) keep everything. Restore from offsite, then add a
    fresh node (`node add`, the same name works).

    Example: vzkeep sandbox node lose pve1
    """
    data = _control(sandbox, "POST", f"/nodes/{node}/lose")
    _show(data, as_json, f"node {node} is lost: guests {', '.join(map(str, data['guests'])) or '-'}, "
                         f"local storages {', '.join(data['storages']) or '-'} gone with it")


@app.command()
def capacity(
    storage: str, size: Annotated[str, typer.Argument(help="new capacity, e.g. 5GiB; 0 = unlimited")],
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
) -> None:
    """Set a storage's capacity; writes beyond it fail with ENOSPC like a full disk.

    Example: vzkeep sandbox capacity backup-prod 2GiB
    """
    try:
        size_bytes = parse_size(size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = _control(sandbox, "POST", f"/storage/{storage}/capacity", bytes=size_bytes)
    _out().print(f"{storage}: capacity {output.human_size(data['total'])}, used {output.human_size(data['used'])}")


@app.command()
def fill(
    storage: str,
    percent: Annotated[float | None, typer.Option("--percent", help="fill up to this share of capacity")] = None,
    size: Annotated[str | None, typer.Option("--bytes", help="occupy this much more, e.g. 1GiB")] = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="whose copy of a local storage that several nodes list")] = None,
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
) -> None:
    """Occupy space on a storage (a filler file outside dump/), to test the 80% alert or ENOSPC.

    Examples:

        vzkeep sandbox fill backup-prod --percent 85
        vzkeep sandbox fill backup-prod --bytes 500MiB
    """
    if (percent is None) == (size is None):
        raise UsageError("give exactly one of --percent P or --bytes SIZE")
    try:
        size_bytes = parse_size(size) if size is not None else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = _control(sandbox, "POST", f"/storage/{storage}/fill", percent=percent, bytes=size_bytes, node=node)
    _out().print(f"{storage}: used {output.human_size(data['used'])} of {output.human_size(data['total'])}")


@app.command()
def corrupt(
    volid: Annotated[str, typer.Argument(help="the archive, e.g. backup-prod:backup/vzdump-qemu-101-….vma.zst")],
    how: Annotated[str, typer.Option("--how", help="flip (bytes), truncate, or zero (a block)")] = "flip",
    offset: Annotated[int | None, typer.Option("--offset", help="where, in bytes (default: mid-file)")] = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="whose copy, for a local storage that several nodes list")] = None,
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
) -> None:
    """Damage an archive the way disks do; verify and restore must notice.

    Example: vzkeep sandbox corrupt backup-prod:backup/vzdump-qemu-101-2026_01_02-02_00_00.vma.zst --how flip
    """
    if how not in ("flip", "truncate", "zero"):
        raise UsageError(f"--how {how!r}: use flip, truncate or zero")
    _control(sandbox, "POST", "/corrupt", volid=volid, how=how, offset=offset, node=node)
    _out().print(f"{volid}: corrupted ({how})")


@guest_app.command("add")
def guest_add(
    vmid: int,
    name: Annotated[str, typer.Option("--name", help="guest name")],
    node: Annotated[str, typer.Option("--node", help="node it runs on")],
    kind: Annotated[str, typer.Option("--type", help="qemu or lxc")] = "qemu",
    pool: Annotated[str | None, typer.Option("--pool", help="pool (= environment)")] = None,
    disk: Annotated[str, typer.Option("--disk", help="virtual disk size")] = "8GiB",
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
) -> None:
    """Add a guest; in a pool, the environment's job covers it from its next run.

    Example: vzkeep sandbox guest add 105 --name immich --type qemu --node pve2 --pool prod --disk 64GiB
    """
    try:
        disk_gb = parse_size(disk) / 1024**3
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _control(sandbox, "POST", "/guests", vmid=vmid, name=name, type=kind, node=node, pool=pool, disk_gb=disk_gb)
    _out().print(f"guest {vmid} ({name}) added on {node}" + (f" in pool {pool}" if pool else ""))


@guest_app.command("delete")
def guest_delete(vmid: int, sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON) -> None:
    """Make a guest vanish (its backups stay): the job then fails with "unable to find VM" if it names it.

    Example: vzkeep sandbox guest delete 104
    """
    _control(sandbox, "DELETE", f"/guests/{vmid}")
    _out().print(f"guest {vmid} deleted")


@guest_app.command("lock")
def guest_lock(
    vmid: int,
    lock: Annotated[str, typer.Option("--lock", help="lock name, e.g. backup, snapshot; '' unlocks")] = "backup",
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
) -> None:
    """Lock a guest, so the next backup fails with "VM is locked (backup)".

    Examples:

        vzkeep sandbox guest lock 101
        vzkeep sandbox guest lock 101 --lock ''
    """
    data = _control(sandbox, "POST", f"/guests/{vmid}/lock", lock=lock)
    _out().print(f"guest {vmid}: lock {data['lock'] or 'none'}")


@guest_app.command("digest")
def guest_digest(vmid: int, sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON, as_json: JsonOpt = False) -> None:
    """SHA-256 of a guest's disk content: compare before backup and after restore.

    Example: vzkeep sandbox guest digest 101
    """
    data = _control(sandbox, "GET", f"/guests/{vmid}/digest")
    _show(data, as_json, f"{vmid} {data['digest']}")


@app.command()
def fault(
    kind: Annotated[str, typer.Argument(help="; ".join(f"{k}: {v}" for k, v in KINDS.items()))],
    count: Annotated[int, typer.Option("--count", min=0, help="how many operations fail (0 disarms)")] = 1,
    cleanup: Annotated[bool, typer.Option(
        "--cleanup/--no-cleanup", help="restore-midway: --no-cleanup = PVE cannot clean up after the failure "
        "(/etc/pve read-only), so the half-made guest keeps `lock: create`")] = True,
    sandbox: SandboxFileOpt = DEFAULT_SANDBOX_JSON,
    as_json: JsonOpt = False,
) -> None:
    """Arm a fault: the next COUNT operations of that kind fail the way PVE fails.

    restore-midway: the restore task breaks while extracting (`TASK ERROR: command '… | vma extract …'
    failed: exit code 133`); a new VM is left as an empty unlocked config, a CT is removed, as PVE does.
    config-update: `PUT …/config` (qm set / pct set) fails with "can't lock file … - got timeout".

    Examples:

        vzkeep sandbox fault restore-midway --count 1
        vzkeep sandbox fault restore-midway --no-cleanup
        vzkeep sandbox fault config-update --count 0     # disarm
    """
    if kind not in KINDS:
        raise UsageError(f"fault {kind!r}: allowed are {', '.join(KINDS)}")
    data = _control(sandbox, "POST", "/faults", kind=kind, count=count, cleanup=int(cleanup))
    text = (f"fault {kind}: the next {count} operation(s) fail" + ("" if cleanup else " (no cleanup)")
            if count else f"fault {kind}: disarmed")
    _show(data, as_json, text)
