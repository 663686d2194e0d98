"""Start a sandbox from its directory: reopen it, or create it from a seed, then serve it.

Used by ``vzkeep sandbox serve``, the test fixture and the demo. A new sandbox gets its seed's
backup jobs through ``POST /cluster/backup`` (in-process) before the server listens, so a busy
port never leaves a half-seeded state behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzkeep.errors import UsageError
from vzkeep.sandbox.engine import CLUSTER_FILE, Sandbox
from vzkeep.sandbox.seed import DEFAULT_SEED, Seed, SeedError, create_jobs, from_stacks, load_seed
from vzkeep.sandbox.server import CONNECTION_FILE, SandboxError, SandboxServer, make_app, serve_app

SEEDING_FILE = ".seeding"  # present while a new sandbox is being seeded


class LaunchError(UsageError):
    """Why the sandbox could not start, phrased for the user (bad seed, busy port, bad state)."""


@dataclass
class Running:
    server: SandboxServer
    sandbox: Sandbox
    directory: Path
    created: bool

    @property
    def info(self) -> dict[str, Any]:
        import json

        return json.loads((self.directory / CONNECTION_FILE).read_text())

    def stop(self) -> None:
        self.sandbox.interrupt()  # a long `advance` stops at its next event instead of holding the lock
        self.sandbox.stop_ticker()
        self.server.stop()
        self.sandbox.save()


def _seed(directory: Path, seed: Path | None, stacks_root: Path | None) -> Seed:
    if stacks_root is not None:
        from vzkeep.config import ConfigError

        try:
            return from_stacks(stacks_root, directory)
        except ConfigError as exc:
            raise LaunchError(str(exc)) from None
    return load_seed(seed or DEFAULT_SEED, directory)


def _requested_version(pve_version: str | None) -> str | None:
    """``--pve-version`` as a major version (9, 8), or a clear error."""
    if pve_version is None:
        return None
    from vzkeep.sandbox.api.versions import UnknownVersion, get

    try:
        return get(pve_version).major
    except UnknownVersion as exc:
        raise LaunchError(f"--pve-version: {exc}") from None


def open_or_create(directory: Path, seed: Path | None = None, stacks_root: Path | None = None,
                   speed: float | None = None, stepped: bool = False,
                   start_epoch: float | None = None, pve_version: str | None = None) -> tuple[Sandbox, bool]:
    """The sandbox of ``directory``: reopened if it exists (seed ignored), else created and seeded,
    its clock starting at ``start_epoch`` (default now). ``pve_version`` (9 or 8) overrides the seed's;
    a sandbox keeps the version it was created with.

    Seeding is all or nothing: a marker file exists while it runs, and a start that finds it (the
    previous one failed or was killed midway) seeds again from scratch."""
    wanted = _requested_version(pve_version)
    marker = directory / SEEDING_FILE
    if (directory / CLUSTER_FILE).exists() and not marker.exists():
        sandbox = Sandbox.open(directory, speed=speed, stepped=stepped)
        if wanted is not None and wanted != sandbox.cluster.pve_version:
            raise LaunchError(f"{directory} holds a PVE {sandbox.cluster.pve_version} sandbox; it cannot become "
                              f"PVE {wanted}: start a new one with another --dir")
        return sandbox, False
    try:
        plan = _seed(directory, seed, stacks_root)
    except SeedError as exc:
        raise LaunchError(str(exc)) from None
    if wanted is not None:
        plan.cluster.pve_version = wanted
    if start_epoch is not None:
        plan.cluster.clock_epoch = start_epoch
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("seeding\n")
    sandbox = Sandbox.create(directory, plan.cluster, speed=speed, stepped=stepped)
    try:
        create_jobs(make_app(sandbox, directory), plan)
    except SeedError as exc:
        (directory / CLUSTER_FILE).unlink(missing_ok=True)  # the next start seeds again from scratch
        raise LaunchError(str(exc)) from None
    marker.unlink()
    return sandbox, True


def launch(directory: Path, seed: Path | None = None, stacks_root: Path | None = None, host: str = "127.0.0.1",
           port: int = 8006, speed: float | None = None, stepped: bool = False,
           auth_failure_delay: float = 0.0, start_epoch: float | None = None,
           pve_version: str | None = None) -> Running:
    """Open or create the sandbox and serve it; with a running clock, the scheduler ticks every second."""
    directory = Path(directory)
    sandbox, created = open_or_create(directory, seed, stacks_root, speed, stepped, start_epoch, pve_version)
    try:
        server = serve_app(make_app(sandbox, directory), directory, host, port, auth_failure_delay)
    except SandboxError as exc:
        raise LaunchError(str(exc)) from None
    if not stepped:
        sandbox.start_ticker()
    return Running(server, sandbox, directory, created)
