"""`vzkeep exporter`: Prometheus metrics about backups, polled from the PVE API in the background."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from vzkeep.cli import output
from vzkeep.connection import ConnectionOptions, connect, resolve, with_connection
from vzkeep.errors import ExitStatus, FindingError, UsageError
from vzkeep.exporter.server import DEFAULT_INTERVAL_SECONDS, DEFAULT_LISTEN, Exporter, parse_listen

MIN_INTERVAL_SECONDS = 1.0
log = logging.getLogger("vzkeep.exporter")


def register(app: typer.Typer) -> None:
    app.command("exporter")(exporter)


@dataclass(frozen=True)
class Settings(ConnectionOptions):
    """Every option of the command (the connection options, then the exporter's own); a --config file
    holds the same keys (dashes or underscores)."""

    listen: str = DEFAULT_LISTEN
    interval: float = DEFAULT_INTERVAL_SECONDS
    verify_results: Path | None = None
    drill_results: Path | None = None
    state_backend: str | None = None

    @property
    def connection(self) -> ConnectionOptions:
        return ConnectionOptions(**{f.name: getattr(self, f.name) for f in fields(ConnectionOptions)})


_PATH_KEYS = {"token_file", "sandbox", "verify_results", "drill_results"}
_BOOL_KEYS = {"insecure", "read_only"}
_KEYS = [f.name for f in fields(Settings) if f.name != "timeout"]  # the HTTP timeout is not an exporter option


def load_config(path: Path) -> dict[str, Any]:
    """Read a --config YAML file; every problem is collected and reported at once (exit 2)."""
    from vzkeep.yamlfile import YamlFileError, load_yaml

    try:
        data = load_yaml(path).data or {}  # YAML 1.2 as the stack files, bounded, no aliases
    except YamlFileError as exc:
        raise UsageError(f"--config {exc.message}", "fix the file, or leave --config out") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of options (e.g. `interval: 60`), "
                         f"got {type(data).__name__}")
    values: dict[str, Any] = {}
    problems = []
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        problem = _config_problem(key, value)
        if problem:
            problems.append(f"  At '{raw_key}': {problem}")
            continue
        values[key] = (path.parent / Path(value)) if key in _PATH_KEYS else value
    if problems:
        allowed = ", ".join(k.replace("_", "-") for k in _KEYS)
        raise UsageError(f"{path} is not a valid exporter config ({len(problems)} problem(s)):",
                         f"allowed keys: {allowed}", notes=problems)
    return values


def _config_problem(key: str, value: Any) -> str | None:
    if key not in _KEYS:
        return "unknown key"
    if key in _BOOL_KEYS and not isinstance(value, bool):
        return f"{value!r} is not true or false"
    if key == "interval" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"{value!r} is not a number of seconds"
    if key not in _BOOL_KEYS and key != "interval" and not isinstance(value, str):
        return f"{value!r} is not a string"
    return None


def merge(config: dict[str, Any], flags: dict[str, Any]) -> Settings:
    """Flags (and VZKEEP_* variables) win over the config file, which wins over the defaults."""
    settings = replace(Settings(), **config)
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    return replace(settings, **given)


def check(settings: Settings) -> None:
    if settings.interval < MIN_INTERVAL_SECONDS:
        raise UsageError(f"--interval {settings.interval:g}: must be at least {MIN_INTERVAL_SECONDS:g} second(s)",
                         f"the default is {DEFAULT_INTERVAL_SECONDS:g}")
    try:
        parse_listen(settings.listen)
        resolve(settings.connection)
    except ValueError as exc:  # parse_listen's error is a ValueError; the connection's is a UsageError too
        raise UsageError(str(exc)) from None
    if settings.verify_results is not None and settings.verify_results.is_dir():
        raise UsageError(f"--verify-results {settings.verify_results}: is a directory; give the results file",
                         "`vzkeep verify` writes verify.json")


ListenOpt = Annotated[str | None, typer.Option(
    "--listen", help=f"HOST:PORT to serve /metrics and the status page / on; IPv6 in brackets, e.g. "
    f"'[::1]:9868' [default: {DEFAULT_LISTEN}]", show_default=False)]
IntervalOpt = Annotated[float | None, typer.Option(
    "--interval", help=f"seconds between two polls of PVE [default: {DEFAULT_INTERVAL_SECONDS:g}]",
    show_default=False)]
OnceOpt = Annotated[bool, typer.Option(
    "--once", help="poll once, print the metrics on stdout and exit (1 if the poll failed)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="with --once: print the snapshot as JSON instead")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML file with the same keys as the options (token-file, listen, interval, ...)")]
VerifyResultsOpt = Annotated[Path | None, typer.Option(
    "--verify-results", help="results file of `vzkeep verify` (publishes vzkeep_backup_verify_ok)")]
DrillResultsOpt = Annotated[Path | None, typer.Option(
    "--drill-results", help="results file of `vzkeep drill` (publishes vzkeep_drill_* metrics)")]
StateBackendOpt = Annotated[str | None, typer.Option(
    "--state-backend", help="Pulumi state backend URL (s3://...); publishes vzkeep_state_* metrics")]


@with_connection
def exporter(
    conn: ConnectionOptions,
    listen: ListenOpt = None,
    interval: IntervalOpt = None,
    once: OnceOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    verify_results: VerifyResultsOpt = None,
    drill_results: DrillResultsOpt = None,
    state_backend: StateBackendOpt = None,
) -> None:
    """Serve Prometheus metrics about backups (last success, size, status per guest, jobs, storage) and a
    status page.

    Polls the PVE API in the background every --interval seconds and serves the last result on
    http://--listen/metrics (and a page for people on http://--listen/), so a scrape never waits on PVE.
    The token needs the role of docs/exporter.md (PVEAuditor is not enough: PVE shows backups only to
    Datastore.AllocateSpace + VM.Backup); a missing privilege is logged with the pveum command that grants
    it and published as vzkeep_missing_privilege. The number of API calls per poll depends on nodes and
    storages, not on guests. If PVE is unreachable, vzkeep_up drops to 0 and the last good data stays,
    marked by vzkeep_poll_timestamp_seconds.

    Exit codes: 0 ok (or stopped by a signal), 1 with --once when the poll failed, 2 bad options or config.

    Examples:

        vzkeep exporter --endpoint https://pve1.home.arpa:8006 --token-file /etc/vzkeep/token \\
            --fingerprint AA:BB:... --listen 0.0.0.0:9868

        vzkeep exporter --config /etc/vzkeep/exporter.yml

        vzkeep exporter --sandbox STATE/sandbox.json --read-only --once | grep vzkeep_backup_last_status
    """
    flags = {f.name: getattr(conn, f.name) for f in fields(ConnectionOptions) if f.name != "timeout"}
    flags.update(listen=listen, interval=interval, verify_results=verify_results, drill_results=drill_results,
                 state_backend=state_backend)
    settings = merge(load_config(config) if config else {}, flags)
    check(settings)
    poller = _poller(settings)
    if once:
        _print_once(poller, as_json)
    _serve(poller, settings)


def _poller(settings: Settings) -> Any:
    from vzkeep.exporter.api import proxmoxer_get
    from vzkeep.exporter.poller import Poller
    from vzkeep.exporter.results import state_reader_for

    state_reader = None
    if settings.state_backend:
        from vzkeep.state.backend import BackendURLError

        try:
            state_reader = state_reader_for(settings.state_backend)
        except BackendURLError as exc:
            raise UsageError(f"--state-backend: {exc}", exc.hint) from None
    try:
        api = connect(settings.connection)
        target = resolve(settings.connection)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Poller(proxmoxer_get(api), verify_results=settings.verify_results,
                  drill_results=settings.drill_results, state_reader=state_reader,
                  authid=f"{target.user}!{target.token_name}")


def _print_once(poller: Any, as_json: bool) -> None:
    from vzkeep.exporter.metrics import render
    from vzkeep.exporter.snapshot import snapshot_to_json

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    snapshot = poller.poll()
    if as_json:  # the exporter's own JSON, laid out like every other --json
        output.emit_json(json.loads(snapshot_to_json(snapshot)))
    else:
        sys.stdout.write(render(snapshot).decode())
    if not snapshot.up:
        raise FindingError(f"the poll failed in: {', '.join(snapshot.failed_parts)} (details above)",
                           "vzkeep_up is 0: check the endpoint, the token and the node's status")
    raise typer.Exit(ExitStatus.OK)


def _serve(poller: Any, settings: Settings) -> None:
    from vzkeep.exporter.server import return_large_buffers_to_the_system

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return_large_buffers_to_the_system()
    try:
        server = Exporter(poller, settings.listen, settings.interval)
    except OSError as exc:
        raise UsageError(f"--listen {settings.listen}: cannot listen there ({exc.strerror})",
                         "is another exporter running? Pick another port, e.g. --listen 127.0.0.1:9869") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    target = resolve(settings.connection)  # its repr never shows the token secret
    log.info("serving %s (status page %s), polling %r every %gs", server.url, server.page_url, target,
             settings.interval)
    with server:
        stop.wait()
    log.info("stopped")
