"""A running sandbox for tests: ``with running_sandbox(tmp_path) as sb: sb.api().nodes.get()``.

The server runs in a thread of the test process on 127.0.0.1, on a port the system picks when it binds
(port 0; ``sandbox.json`` says which), with a stepped clock (time moves only with ``sb.advance``), so tests
are fast and deterministic. Each test module builds the sandbox its scenario needs with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzkeep.connection import ConnectionOptions, connect, connect_client
from vzkeep.pve.privileges import EXPORTER_ROLE_NAME, EXPORTER_ROLE_PRIVILEGES
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.launch import Running, launch
from vzkeep.sandbox.server import SandboxApp


@dataclass
class RunningSandbox:
    running: Running

    @property
    def directory(self) -> Path:
        return self.running.directory

    @property
    def sandbox_json(self) -> Path:
        return self.directory / "sandbox.json"

    @property
    def info(self) -> dict[str, Any]:
        return json.loads(self.sandbox_json.read_text())

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def host(self) -> str:
        return self.info["host"]

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def fingerprint(self) -> str:
        return self.info["fingerprint"]

    def _token(self, role: str) -> str:
        t = self.info["tokens"][role]
        return f"{t['user']}!{t['token_name']}={t['token_value']}"

    @property
    def admin_token(self) -> str:
        """``root@pam!vzkeep=<secret>``, as a --token-file holds it."""
        return self._token("admin")

    @property
    def auditor_token(self) -> str:
        return self._token("auditor")

    @property
    def sandbox(self) -> Sandbox:
        return self.running.sandbox

    @property
    def app(self) -> SandboxApp:
        return self.running.server.app

    def api(self, read_only: bool = False) -> Any:
        """A proxmoxer client (admin token, or the auditor's with ``read_only``), fingerprint pinned."""
        return connect(ConnectionOptions(sandbox=self.sandbox_json, read_only=read_only))

    def client(self, read_only: bool = False) -> Any:
        """vzkeep's typed PVE client (``vzkeep.pve.client.PveClient``), as the runtime commands use it."""
        return connect_client(ConnectionOptions(sandbox=self.sandbox_json, read_only=read_only))

    def advance(self, seconds: float) -> list[str]:
        return self.sandbox.advance(seconds)

    def grant_exporter_role(self) -> None:
        """Give the auditor (PVEAuditor on /) the exporter's least-privilege role too, as docs/exporter.md's
        ``pveum role add`` and ``pveum acl modify / --users … --tokens …`` do: without it PVE lists no backup
        volume to it (pve-storage ``src/PVE/Storage.pm`` ``check_volume_access``). User and privilege-separated
        token both get the role, the way an admin sets up a monitoring identity."""
        auditor = self.info["tokens"]["auditor"]
        self.app.call("POST", "/access/roles", {"roleid": EXPORTER_ROLE_NAME,
                                                "privs": ",".join(sorted(EXPORTER_ROLE_PRIVILEGES))})
        self.app.call("PUT", "/access/acl", {"path": "/", "roles": EXPORTER_ROLE_NAME, "users": auditor["user"],
                                             "tokens": f"{auditor['user']}!{auditor['token_name']}"})


@contextmanager
def running_sandbox(tmp_path: Path, seed: Path | str | None = None, stepped: bool = True,
                    stacks_root: Path | None = None, start_epoch: int | None = None) -> Iterator[RunningSandbox]:
    """Start a sandbox in ``tmp_path/sandbox`` (default seed unless ``seed``/``stacks_root``; its clock at
    ``start_epoch``, default now), stop it after."""
    directory = Path(tmp_path) / "sandbox"
    running = launch(directory, seed=Path(seed) if seed else None, stacks_root=stacks_root, port=0,
                     stepped=stepped, speed=None, start_epoch=start_epoch)
    try:
        yield RunningSandbox(running)
    finally:
        running.stop()
