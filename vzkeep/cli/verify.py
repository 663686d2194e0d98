"""`vzkeep verify`: check vzdump archives end to end in one streaming pass, and remember the results."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from vzkeep.cli import output
from vzkeep.errors import ExitStatus, UsageError
from vzkeep.pve import archive, localtime
from vzkeep.verify import (
    DEFAULT_STORAGE_CFG,
    ResultStore,
    StorageConfigError,
    VerifyResult,
    default_results_path,
    find_archives,
    load_storages,
    verify_many,
    volids_for,
)

PROGRESS_MIN_BYTES = 64 << 20  # smaller archives verify in well under a second


def register(app: typer.Typer) -> None:
    app.command("verify", help=_reflow(verify_cmd.__doc__ or ""))(verify_cmd)


def _reflow(doc: str) -> str:
    """Join each prose paragraph of a docstring into one line, so the terminal wraps it; keep examples."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if p.startswith("    ") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs
    )


def verify_cmd(
    archives: Annotated[
        list[Path] | None,
        typer.Argument(help="Archive files (vzdump-*.vma[.zst|.gz|.lzo], vzdump-*.tar[...])."),
    ] = None,
    directory: Annotated[
        list[Path] | None, typer.Option("--dir", help="Verify every backup in this directory (repeatable).")
    ] = None,
    storage: Annotated[
        list[str] | None,
        typer.Option("--storage", help="Verify every backup of this PVE storage: <path>/dump (repeatable)."),
    ] = None,
    storage_cfg: Annotated[
        Path, typer.Option("--storage-cfg", help="PVE storage config used to resolve --storage.")
    ] = Path(DEFAULT_STORAGE_CFG),
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Results store (JSON). Default: $VZKEEP_STATE_DIR/verify.json, "
            "else /var/lib/vzkeep/verify.json.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-read archives even if unchanged since their last check.")
    ] = False,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of the node that wrote the archives (default: this one's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")] = False,
) -> None:
    """Verify vzdump archives: compression checksums, VMA or tar structure, name/time, SHA-256, one pass.

    Each archive is read once. Its SHA-256 is computed from the same bytes that feed the node's
    decompressor (zstd, gzip, lzop: their checksums catch any flipped byte); the decompressed stream is
    checked as VMA (header and extent MD5s, uuid, block counts, device sizes, every cluster present, the
    VM config present) or as a CT tar (pct.conf first, every header valid, nothing truncated); the header
    time is compared with the time in the file name. A plain .vma/.tar has no data checksum: only its
    structure can be checked, and the recorded SHA-256 catches later silent changes (with --force).

    Results are stored per archive, so an unchanged archive (same size, mtime, inode) is not read again;
    the exporter publishes them as vzkeep_backup_verified_timestamp_seconds and vzkeep_backup_verify_ok.
    Needs only Python 3 and the node's zstd/gzip/lzop: run it on the node or on the NAS.

    Exit codes: 0 every archive is sound, 1 corruption found (each problem named with where), 2 usage.

    Examples:

        vzkeep verify /var/lib/vz/dump/vzdump-qemu-100-2026_01_05-02_00_03.vma.zst

        vzkeep verify --storage backup-prod

        vzkeep verify --dir /mnt/pve/offsite-prod/dump --force --json | jq '.summary'
    """
    _check_tz(tz)
    storages_cfg = _load_storage_cfg(storage_cfg, required=bool(storage))
    paths = _collect_paths(archives or [], directory or [], storage or [], storages_cfg)
    if not paths:
        raise UsageError("nothing to verify: give ARCHIVE files, --dir DIR or --storage ID",
                         "see 'vzkeep verify --help' for examples")
    store = _open_store(results)
    report = output.Reporter(as_json=as_json)
    console = output.console(soft_wrap=True)
    progress = _progress_bar(report)
    for scanned in _scanned_dirs(directory or [], storage or [], storages_cfg):
        store.forget_missing(scanned)  # archives pruned since the last run
    try:
        outcome = _run(paths, store, force, tz, volids_for(paths, storages_cfg), progress, console, as_json)
    finally:  # DecompressError (a missing zstd/gzip/lzop) is a usage error: the handler says which tool
        if progress is not None:
            progress.stop()
    if as_json:
        output.emit_json(_document(outcome))
    else:
        _print_summary(console, outcome)
    raise typer.Exit(ExitStatus.OK if all(r.ok for r in outcome) else ExitStatus.FINDING)


# -- inputs ------------------------------------------------------------------------------------------------


def _check_tz(tz: str | None) -> None:
    if tz is None:
        return
    try:
        localtime.LocalClock(tz)
    except ValueError as exc:
        raise UsageError(f"--tz: {exc}", "use the IANA zone of the node that wrote the archives, e.g. "
                         "Europe/Paris") from None


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


def _collect_paths(
    files: list[Path], directories: list[Path], storage_ids: list[str], storages: dict
) -> list[str]:
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
    for storage_id in storage_ids:
        paths += _storage_archives(storage_id, storages)
    return list(dict.fromkeys(paths))  # each once, in the order given


def _scanned_dirs(directories: list[Path], storage_ids: list[str], storages: dict) -> list[Path]:
    return [*directories, *(storages[s].dump_dir() for s in storage_ids)]


def _storage_archives(storage_id: str, storages: dict) -> list[str]:
    if storage_id not in storages:
        known = ", ".join(sorted(storages)) or "none"
        raise UsageError(f"--storage {storage_id}: no such storage in the storage config (storages: {known})")
    dump = storages[storage_id].dump_dir()  # StorageConfigError: exit 2, naming the storage
    if not dump.is_dir():
        raise UsageError(f"--storage {storage_id}: its backup directory {dump} does not exist",
                         "is the storage mounted?")
    return find_archives(dump)


def _open_store(path: Path | None) -> ResultStore:
    store = ResultStore(path or default_results_path())
    try:
        store.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(store.path.parent, os.W_OK):
            raise PermissionError(f"{store.path.parent} is not writable")
        store.load()
    except (OSError, ValueError) as exc:
        raise UsageError(f"results store {store.path}: {exc}",
                         "pass --results FILE or set VZKEEP_STATE_DIR") from None
    return store


# -- running -----------------------------------------------------------------------------------------------


def _progress_bar(report: output.Reporter) -> Progress | None:
    return report.progress_bar(
        "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())


def _run(
    paths: list[str],
    store: ResultStore,
    force: bool,
    tz: str | None,
    volids: dict[str, str],
    progress: Progress | None,
    console: Console,
    as_json: bool,
) -> list[VerifyResult]:
    def progress_for(path: str, size: int) -> Callable[[int], None] | None:
        if progress is None or size < PROGRESS_MIN_BYTES:
            return None
        progress.start()
        task = progress.add_task(os.path.basename(path), total=size)
        return lambda n: progress.advance(task, n)

    def show(result: VerifyResult) -> None:
        if not as_json:
            _print_result(console, result)

    return verify_many(
        paths, store, force=force, tz=tz, volids=volids, progress_for=progress_for, on_result=show
    )


# -- output ------------------------------------------------------------------------------------------------


def _print_result(console: Console, result: VerifyResult) -> None:
    status = Text("OK     ", style="green") if result.ok else Text("CORRUPT", style="bold red")
    detail = f"{output.human_size(result.size)}  sha256 {result.sha256[:16]}"
    if result.cached:
        detail += f"  (unchanged since verified {output.format_time(result.verified_at, seconds=False)})"
    console.print(Text.assemble(status, " ", f"{result.path}  {detail}"))
    for problem in result.problems:
        console.print(f"  - {problem}")


def _print_summary(console: Console, results: list[VerifyResult]) -> None:
    corrupt = sum(not r.ok for r in results)
    cached = sum(r.cached for r in results)
    line = f"{len(results)} archive(s): {len(results) - corrupt} OK, {corrupt} corrupt"
    if cached:
        line += f" ({cached} unchanged since their last check; --force re-reads them)"
    console.print(line, style="bold red" if corrupt else "green")


def _document(results: list[VerifyResult]) -> dict[str, object]:
    corrupt = sum(not r.ok for r in results)
    return {
        "archives": [{**r.to_json(), "cached": r.cached} for r in results],
        "summary": {
            "total": len(results),
            "ok": len(results) - corrupt,
            "corrupt": corrupt,
            "cached": sum(r.cached for r in results),
        },
    }

