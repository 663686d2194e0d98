"""The sandbox over HTTPS, as bpg's client reaches a cluster: token header, form bodies, JSON replies.

The certificate is pinned by the fingerprint in ``sandbox.json`` (the sandbox's is self-signed), the
token is the sandbox's admin token (``PVEAPIToken=user@realm!name=value``, bpg
``proxmox/api/token_auth.go``), and every request asks for JSON (``Accept: application/json``,
bpg ``proxmox/api/client.go``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from vzkeep.apply.http import PveHttpError, PveRequest
from vzkeep.connection import FingerprintAdapter
from vzkeep.errors import UsageError

REQUEST_TIMEOUT = 120.0  # seconds for one HTTP exchange; waits on tasks are bounded separately


@dataclass(frozen=True)
class SandboxInfo:
    """What ``sandbox.json`` says about a running sandbox; ``directory`` is where it keeps its files."""

    url: str
    host: str
    port: int
    fingerprint: str
    token: str  # user@realm!name=value: what `proxmoxve:apiToken` holds
    directory: Path
    path: Path

    @classmethod
    def read(cls, sandbox_json: Path) -> SandboxInfo:
        try:
            info = json.loads(Path(sandbox_json).read_text())
            admin = info["tokens"]["admin"]
            return cls(url=f"https://{info['host']}:{info['port']}/", host=info["host"], port=int(info["port"]),
                       fingerprint=info["fingerprint"],
                       token=f"{admin['user']}!{admin['token_name']}={admin['token_value']}",
                       directory=Path(sandbox_json).resolve().parent, path=Path(sandbox_json))
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"--sandbox {sandbox_json}: no sandbox connection file there",
                             hint="start one with `vzkeep sandbox serve --dir DIR` (it writes DIR/sandbox.json)"
                             ) from None


class SandboxTransport:
    """Sends ``PveRequest``s to the sandbox; one HTTPS session per thread (steps run in parallel)."""

    def __init__(self, info: SandboxInfo) -> None:
        self.info = info
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.mount("https://", FingerprintAdapter(self.info.fingerprint))
            session.headers["Authorization"] = f"PVEAPIToken={self.info.token}"
            session.headers["Accept"] = "application/json"
        return session

    def send(self, request: PveRequest) -> Any:
        url = f"https://{self.info.host}:{self.info.port}/api2/json/{request.target()}"
        body = request.body()
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        try:
            reply = self._session().request(request.method, url, data=body, headers=headers, verify=False,
                                            timeout=REQUEST_TIMEOUT)
        except requests.ConnectionError:
            raise UsageError(f"the sandbox at {self.info.host}:{self.info.port} does not answer",
                             hint="is `vzkeep sandbox serve` running?") from None
        if not 200 <= reply.status_code < 300:
            raise PveHttpError(reply.status_code, reply.reason or "", _json(reply) or {})
        payload = _json(reply)
        return payload.get("data") if isinstance(payload, dict) else None

    def control(self, method: str, path: str, **params: Any) -> Any:
        """A ``/_sandbox/`` control call (clock, status): not PVE, used only to move a stepped clock."""
        url = f"https://{self.info.host}:{self.info.port}/_sandbox{path}"
        reply = self._session().request(method, url, data=params or None, verify=False, timeout=REQUEST_TIMEOUT)
        if reply.status_code != 200:
            raise PveHttpError(reply.status_code, reply.reason or "", _json(reply) or {})
        return reply.json()["data"]


def _json(reply: requests.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None
