"""`vzkeep verify`: check vzdump archives end to end in one streaming pass, and remember the results."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from vzkeep.cli import output
from vzkeep.cli.common import zone_option
from vzkeep.connection import ConnectionOptions, with_connection
from vzkeep.errors import ExitStatus, Interrupted, UsageError, WaitTimeout
from vzkeep.pve import archive
from vzkeep.verify import (
    DEFAULT_STORAGE_CFG,
    ResultStore,
    Storage,
    StorageConfigError,
    Target,
    VerifyResult,
    default_results_path,
    find_archives,
    load_storages,
    verify_targets,
    volids_for,
)
from vzkeep.verify.storages import ClusterView, local_cluster_name, local_zone, on_pve_node

PROGRESS_MIN_BYTES = 64 << 20  # smaller archives verify in well under a second
DEFAULT_TIMEOUT = 4 * 3600.0  # a full storage over a slow NAS takes hours; the run must still end
NAMED_MAX = 5  # archives named in a timeout's message; the rest are counted


def register(app: typer.Typer) -> None:
    app.command("verify", help=_reflow(verify_cmd.__doc__ or ""))(verify_cmd)


def _reflow(doc: str) -> str:
    """Join each prose paragraph of a docstring into one line, so the terminal wraps it; keep examples."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if p.startswith("    ") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs
    )


@with_connection
def verify_cmd(
    conn: ConnectionOptions,
    archives: Annotated[
        list[Path] | None,
        typer.Argument(help="Archive files (vzdump-*.vma[.zst|.gz|.lzo], vzdump-*.tar[...])."),
    ] = None,
    directory: Annotated[
        list[Path] | None, typer.Option("--dir", help="Verify every backup in this directory (repeatable).")
    ] = None,
    storage: Annotated[
        list[str] | None,
        typer.Option("--storage", help="Verify every backup of this PVE storage (repeatable): found through "
                                       "the PVE API when connected, else in the node's storage.cfg."),
    ] = None,
    storage_cfg: Annotated[
        Path, typer.Option("--storage-cfg", help="PVE storage config used to resolve --storage offline.")
    ] = Path(DEFAULT_STORAGE_CFG),
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Results store (SQLite). Default: $VZKEEP_STATE_DIR/verify/<cluster>.sqlite (else under "
            "/var/lib/vzkeep), <cluster> being the cluster's name, or host-<this host> offline.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-read archives even if unchanged since their last check.")
    ] = False,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of the node that wrote the archives (default: asked from the "
                                  "cluster, or this node's own; unknown: the name/time check is not made)."),
    ] = None,
    stack: Annotated[Path | None, typer.Option(
        "--stack", help="A stack file (Pulumi.<stack>.yaml): the zone its nodes are set to and its backup "
                        "storage, used when the cluster cannot tell.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1.0, show_default=False, metavar="SECONDS",
        help=f"stop after SECONDS (default: {DEFAULT_TIMEOUT:g}, {DEFAULT_TIMEOUT / 3600:g} h), saying which "
             "archives were verified and which were not")] = DEFAULT_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")] = False,
) -> None:
    """Verify vzdump archives: compression checksums, VMA or tar structure, name/time, SHA-256, one pass.

    Each archive is read once. Its SHA-256 is computed from the same bytes that feed the decompressor
    (zstd, gzip, lzop: their checksums catch any flipped byte); the decompressed stream is checked as VMA
    (header and extent MD5s, uuid, block counts, device sizes, every cluster present, the VM config
    present) or as a CT tar (pct.conf first, every header valid, nothing truncated); the header time is
    compared with the time in the file name, read in the zone of the node that wrote it. A plain
    .vma/.tar has no data checksum: only its structure can be checked, and the recorded SHA-256 catches
    later silent changes (with --force).

    Connected to the cluster (--sandbox, or --endpoint and --token-file), the nodes' zones and the
    storages come from the PVE API, and every archive on a storage is recorded with its volid (also when
    given by --dir or path). On a node, storage.cfg and the node's zone are read instead. When the zone
    is unknown, the name/time check is reported as not checked: it never makes an archive corrupt.

    Results are stored per cluster and bound to the bytes checked (size, mtime, inode, SHA-256, zone):
    an unchanged archive is not read again, a changed or vanished one is no longer verified. The exporter
    publishes them as vzkeep_backup_verified_timestamp_seconds and vzkeep_backup_verify_ok.

    Exit codes: 0 every archive is sound, 1 corruption found (each problem named with where), 2 usage,
    3 stopped by --timeout (verified ones kept), 130 interrupted (verified ones kept).

    Examples:

        vzkeep verify /var/lib/vz/dump/vzdump-qemu-100-2026_01_05-02_00_03.vma.zst

        vzkeep verify --storage backup-prod

        vzkeep verify --storage backup-prod --sandbox .sandbox/sandbox.json

        vzkeep verify --dir /mnt/pve/offsite-prod/dump --force --json | jq '.summary'
    """
    _check_tz(tz)
    if not (archives or directory or storage):
        raise UsageError("nothing to verify: give ARCHIVE files, --dir DIR or --storage ID",
                         "see 'vzkeep verify --help' for examples")
    outcome: list[VerifyResult] = []
    plan: _Plan | None = None
    progress = None
    try:
        with _deadline(timeout):  # the questions to the cluster count too: an unreachable API must not hang
            plan = _plan(conn, archives or [], directory or [], storage or [], storage_cfg, tz,
                         _stack_hints(stack))
            store = _open_store(results or default_results_path(plan.cluster))
            report = output.Reporter(as_json=as_json)
            for note in plan.unreadable:
                report.warn(note)
            console = output.console(soft_wrap=True)
            for scanned in plan.scanned:
                store.forget_missing(scanned)  # archives pruned since the last run
            progress = _progress_bar(report)
            _run(plan, store, force, progress, console, as_json, outcome)
    except _TimedOut:
        raise WaitTimeout(*_stopped(f"stopped after --timeout {timeout:g} s", plan, outcome)) from None
    except KeyboardInterrupt:
        raise Interrupted(*_stopped("interrupted (Ctrl-C)", plan, outcome)) from None
    finally:  # DecompressError (a missing zstd/gzip/lzop) is a usage error: the handler says which tool
        if progress is not None:
            progress.stop()
    if as_json:
        output.emit_json(_document(outcome, plan, store))
    else:
        _print_summary(console, outcome, store)
    raise typer.Exit(ExitStatus.OK if all(r.ok for r in outcome) else ExitStatus.FINDING)


# -- inputs ------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    cluster: str | None
    clock: Callable[[], float] = time.time  # dates the results: the cluster's clock when connected
    targets: list[Target] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)  # directories listed whole: forget what left them
    unreadable: list[str] = field(default_factory=list)  # listed by PVE, not readable from here


def _check_tz(tz: str | None) -> None:
    zone_option(tz, hint="use the IANA zone of the node that wrote the archives, e.g. Europe/Paris")


@dataclass(frozen=True)
class _StackHints:
    """What a stack file says that verify can use: its nodes' zone and its backup storage (a dir storage)."""

    zone: str | None = None
    storages: dict[str, Storage] = field(default_factory=dict)


def _stack_hints(stack: Path | None) -> _StackHints:
    if stack is None:
        return _StackHints()
    from vzkeep.config import load_stack_file  # pydantic: only for --stack

    settings = load_stack_file(stack)  # ConfigError: exit 2, naming the file and the key
    storage = Storage(settings.storage_id, "dir", {"path": settings.storage_path})
    return _StackHints(settings.environment.timezone, {storage.id: storage})


def _plan(conn: ConnectionOptions, files: list[Path], directories: list[Path], storage_ids: list[str],
          storage_cfg: Path, tz: str | None, hints: _StackHints) -> _Plan:
    paths = _given_paths(files, directories)
    if conn.sandbox or conn.endpoint:
        return _plan_connected(conn, paths, directories, storage_ids, tz, hints)
    return _plan_offline(paths, directories, storage_ids, storage_cfg, tz, hints)


def _plan_connected(conn: ConnectionOptions, paths: list[str], directories: list[Path], storage_ids: list[str],
                    tz: str | None, hints: _StackHints) -> _Plan:
    from vzkeep.connection import connect_client
    from vzkeep.pve.client import PveApiError, PveUnreachable

    try:
        view = ClusterView(connect_client(conn))
        plan = _Plan(view.cluster_name(), view.clock(), scanned=[str(d) for d in directories])
        located = view.locate(paths) if paths else {}
        common = None if tz or len(located) == len(paths) else view.common_zone()
        for path in paths:
            hit = located.get(path)
            zone = tz or (view.zone(hit.node) if hit else common) or hints.zone
            plan.targets.append(Target(path, hit.volid if hit else None, zone))
        for storage_id in storage_ids:
            _add_storage(plan, view, storage_id, tz or None, hints.zone)
    except (PveApiError, PveUnreachable) as exc:
        raise UsageError(f"cannot read the cluster: {exc}",
                         "check the connection options; the token needs Datastore.Audit on the storages "
                         "(PVEAuditor on /)") from None
    return _dedupe(plan)


def _add_storage(plan: _Plan, view: ClusterView, storage_id: str, tz: str | None, fallback: str | None) -> None:
    config = view.storage(storage_id)
    places = view.places(storage_id, config)
    if not any(place.volumes for place in places):
        # which backups a token is shown is PVE's check_volume_access (pve-storage PVE/Storage.pm)
        plan.unreadable.append(f"--storage {storage_id}: PVE lists no backup there: an empty storage, or a token "
                               "not allowed to see its backups (try the admin token, or see the exporter's role "
                               "in docs/exporter.md)")
    for place in places:
        if place.dump_dir is None:
            continue  # PVE lists no backup there
        plan.scanned.append(place.dump_dir)
        zone = tz or view.zone(place.node) or fallback
        for name, size in sorted(place.volumes.items()):
            path = os.path.join(place.dump_dir, name)
            try:
                readable = os.path.getsize(path) == size
            except OSError:
                readable = False
            if readable:
                plan.targets.append(Target(path, f"{storage_id}:backup/{name}", zone))
            else:
                plan.unreadable.append(f"{storage_id}:backup/{name} (node {place.node}) is not readable here "
                                       f"at {path}: run vzkeep verify on that node or where it is mounted")


def _plan_offline(paths: list[str], directories: list[Path], storage_ids: list[str], storage_cfg: Path,
                  tz: str | None, hints: _StackHints) -> _Plan:
    storages = {**hints.storages, **_load_storage_cfg(storage_cfg, required=bool(storage_ids) and not hints.storages)}
    on_node = storage_cfg == Path(DEFAULT_STORAGE_CFG) and on_pve_node()
    zone = tz or (local_zone() if on_node else None) or hints.zone
    plan = _Plan(local_cluster_name() if on_node else None, scanned=[str(d) for d in directories])
    for storage_id in storage_ids:
        dump = _storage_dump_dir(storage_id, storages)
        plan.scanned.append(str(dump))
        paths += find_archives(dump)
    volids = volids_for(paths, storages)
    plan.targets = [Target(p, volids.get(p), zone) for p in paths]
    return _dedupe(plan)


def _dedupe(plan: _Plan) -> _Plan:
    seen: dict[str, Target] = {}
    for target in plan.targets:
        if target.path not in seen or (target.volid and not seen[target.path].volid):
            seen[target.path] = target
    plan.targets = list(seen.values())  # each once, in the order given
    return plan


def _load_storage_cfg(path: Path, *, required: bool) -> dict:
    """Storages by id; without --storage a missing storage.cfg only means no volids are recorded."""
    if not required and not path.exists():
        return {}
    try:
        return load_storages(path)
    except StorageConfigError:
        if required:
            raise
        return {}


def _given_paths(files: list[Path], directories: list[Path]) -> list[str]:
    paths: list[str] = []
    for file in files:
        if not file.is_file():
            raise UsageError(f"{file}: no such file (give a path to a vzdump archive)")
        try:
            archive.parse(file.name)
        except ValueError:
            raise UsageError(
                f"{file}: not a vzdump archive name; expected vzdump-<qemu|lxc>-<vmid>-<YYYY_MM_DD-HH_MM_SS>"
                ".<vma|tar>[.zst|.gz|.lzo]", "PVE names every backup this way; rename a copied archive back"
            ) from None
        paths.append(os.path.abspath(file))
    for directory in directories:
        if not directory.is_dir():
            raise UsageError(f"--dir {directory}: no such directory")
        paths += find_archives(directory)
    return paths


def _storage_dump_dir(storage_id: str, storages: dict) -> Path:
    if storage_id not in storages:
        known = ", ".join(sorted(storages)) or "none"
        raise UsageError(f"--storage {storage_id}: no such storage in the storage config (storages: {known})",
                         "connect to the cluster (--sandbox, or --endpoint and --token-file) to find it through "
                         "the PVE API")
    dump = storages[storage_id].dump_dir()  # StorageConfigError: exit 2, naming the storage
    if not dump.is_dir():
        raise UsageError(f"--storage {storage_id}: its backup directory {dump} does not exist",
                         "is the storage mounted?")
    return dump


def _open_store(path: Path) -> ResultStore:
    store = ResultStore(path)
    try:
        store.check_writable()
    except (OSError, ValueError) as exc:
        raise UsageError(f"results store {store.path}: {exc}",
                         "pass --results FILE or set VZKEEP_STATE_DIR") from None
    return store


# -- running -----------------------------------------------------------------------------------------------


class _TimedOut(BaseException):
    """Raised in the main thread by the --timeout alarm; a BaseException so no check mistakes it for a
    finding about the archive being read."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: Any) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _stopped(why: str, plan: _Plan | None, done: list[VerifyResult]) -> tuple[str, str]:
    hint = "run the same command again: verified archives are not read again unless they changed"
    if plan is None:
        return (f"{why} while finding the archives (asking the cluster or listing directories): nothing was "
                "verified"), "check that the cluster answers (vzkeep backups list with the same options)"
    finished = {r.path for r in done}
    left = [t.path for t in plan.targets if t.path not in finished]
    corrupt = sum(not r.ok for r in done)
    named = ", ".join(os.path.basename(p) for p in left[:NAMED_MAX])
    more = f" and {len(left) - NAMED_MAX} more" if len(left) > NAMED_MAX else ""
    message = (f"{why}: {len(done)} of {len(plan.targets)} archive(s) verified ({corrupt} corrupt, results "
               f"saved); not verified: {named}{more}")
    return message, hint


def _progress_bar(report: output.Reporter) -> Progress | None:
    return report.progress_bar(
        "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())


def _run(plan: _Plan, store: ResultStore, force: bool, progress: Progress | None, console: Console,
         as_json: bool, outcome: list[VerifyResult]) -> None:
    def progress_for(path: str, size: int) -> Callable[[int], None] | None:
        if progress is None or size < PROGRESS_MIN_BYTES:
            return None
        progress.start()
        task = progress.add_task(os.path.basename(path), total=size)
        return lambda n: progress.advance(task, n)

    def show(result: VerifyResult) -> None:
        outcome.append(result)
        if not as_json:
            _print_result(console, result)

    verify_targets(plan.targets, store, force=force, progress_for=progress_for, on_result=show, clock=plan.clock)


# -- output ------------------------------------------------------------------------------------------------


def _print_result(console: Console, result: VerifyResult) -> None:
    status = Text("OK     ", style="green") if result.ok else Text("CORRUPT", style="bold red")
    detail = f"{output.human_size(result.size)}  sha256 {result.sha256[:16]}"
    if result.cached:
        detail += f"  (unchanged since verified {output.format_time(result.verified_at, seconds=False)})"
    console.print(Text.assemble(status, " ", result.volid or result.path, f"  {detail}"))
    for problem in result.problems:
        console.print(Text(f"  - {problem}"))


def _print_summary(console: Console, results: list[VerifyResult], store: ResultStore) -> None:
    corrupt = sum(not r.ok for r in results)
    cached = sum(r.cached for r in results)
    line = f"{len(results)} archive(s): {len(results) - corrupt} OK, {corrupt} corrupt"
    if cached:
        line += f" ({cached} unchanged since their last check; --force re-reads them)"
    console.print(line, style="bold red" if corrupt else "green")
    unchecked = sum(bool(r.notes) for r in results if r.ok)
    if unchecked:
        console.print(Text(f"{unchecked} archive(s): name/time not checked, the node's time zone is unknown "
                           "(connect with --sandbox or --endpoint, use --storage, or give --tz)"))
    console.print(Text(f"results: {store.path}"), style="dim")


def _document(results: list[VerifyResult], plan: _Plan, store: ResultStore) -> dict[str, object]:
    corrupt = sum(not r.ok for r in results)
    return {
        "archives": [{**r.to_json(), "cached": r.cached} for r in results],
        "not_readable": plan.unreadable,
        "results_store": str(store.path),
        "time_not_checked": sum(bool(r.notes) for r in results if r.ok),
        "summary": {
            "total": len(results),
            "ok": len(results) - corrupt,
            "corrupt": corrupt,
            "cached": sum(r.cached for r in results),
        },
    }
