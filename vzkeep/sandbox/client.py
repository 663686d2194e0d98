"""Talking to a running sandbox from outside: its connection file and the `/_sandbox/` control API.

Used by `vzkeep sandbox ...` commands, the demo and scripts; the PVE API itself is reached with
`vzkeep.connection.connect`, like a real cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from vzkeep.errors import ExitStatus, UsageError, VzkeepError
from vzkeep.fingerprint import FingerprintAdapter


class ControlError(VzkeepError):
    """A control call failed; `usage` is True when the request itself was wrong (400/401/403)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message, status=ExitStatus.USAGE if usage else ExitStatus.FINDING)
        self.usage = usage


def read_info(sandbox_json: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(sandbox_json).read_text())
    except (OSError, ValueError):
        raise ControlError(f"--sandbox {sandbox_json}: no sandbox connection file there; start one with "
                           "`vzkeep sandbox serve --dir DIR` (it writes DIR/sandbox.json)", usage=True) from None


def control(sandbox_json: Path, method: str, path: str, **params: Any) -> Any:
    """One `/_sandbox/` call with the admin token, the certificate pinned by its fingerprint."""
    info = read_info(sandbox_json)
    token = info["tokens"]["admin"]
    session = requests.Session()
    session.mount("https://", FingerprintAdapter(info["fingerprint"]))
    session.headers["Authorization"] = f"PVEAPIToken={token['user']}!{token['token_name']}={token['token_value']}"
    url = f"https://{info['host']}:{info['port']}/_sandbox{path}"
    clean = {k: v for k, v in params.items() if v is not None}
    try:
        reply = session.request(method, url, params=clean if method in ("GET", "DELETE") else None,
                                data=clean if method in ("POST", "PUT") else None, verify=False, timeout=600)
    except requests.ConnectionError:
        raise ControlError(f"the sandbox at {info['host']}:{info['port']} does not answer; "
                           "is `vzkeep sandbox serve` running?") from None
    if reply.status_code != 200:
        body = reply.json() if reply.content else {}
        detail = "; ".join(f"{k}: {v}" for k, v in (body.get("errors") or {}).items())
        raise ControlError(f"{reply.status_code} {(body.get('message') or reply.reason).strip()} {detail}".strip(),
                           usage=reply.status_code in (400, 401, 403))
    return reply.json()["data"]


class SandboxClock:
    """The sandbox's clock, through its control API (``/_sandbox/status``, ``/_sandbox/advance``)."""

    def __init__(self, sandbox_json: Path) -> None:
        self.sandbox_json = sandbox_json

    def stepped(self) -> bool:
        try:
            return control(self.sandbox_json, "GET", "/status").get("clock") == "stepped"
        except ControlError:
            return False  # its PVE API then fails too, and says why

    def now(self) -> float:
        try:
            return float(control(self.sandbox_json, "GET", "/status")["now"])
        except (ControlError, KeyError, TypeError, ValueError):
            return float("nan")  # unknown: never equal to itself, so never taken for a clock standing still

    def advance(self, seconds: float) -> None:
        try:
            control(self.sandbox_json, "POST", "/advance", seconds=seconds)
        except ControlError as exc:
            raise UsageError(f"cannot move the sandbox's clock: {exc}") from None
