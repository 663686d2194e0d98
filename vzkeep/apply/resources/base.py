"""What every resource kind of ``sandbox apply`` is: create, read, update, delete as the provider does them.

A kind maps one provider resource (by its SDK type token) to calls: PVE API requests for
pulumi-proxmoxve (each module cites the bpg files it follows), or a local stand-in for resources
that are not PVE's. Inputs arrive as the Python SDK sends them (camelCase names, secrets already
unwrapped, whole numbers as ints); outputs are what the resource's Pulumi state holds afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.apply.http import Form, PveHttpError, PveRequest, Transport, path_escape
from vzkeep.errors import WaitTimeout

Inputs = Mapping[str, Any]


@dataclass
class Applied:
    """A resource as it exists after a step: its provider id and its outputs."""

    id: str
    outputs: dict[str, Any]


class ProviderError(Exception):
    """A step that failed, worded as the provider reports it (``summary: detail``)."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(": ".join(part for part in (summary, detail) if part))
        self.summary = summary
        self.detail = detail


class NotApplied(Exception):
    """The resource has no stand-in here; the message says why (listed, never an error)."""


@dataclass
class TaskWait:
    """How long to wait for a PVE task, and whether to move a stepped sandbox clock meanwhile.

    bpg waits for every task by polling ``GET /nodes/{node}/tasks/{upid}/status`` once a second
    until it is ``stopped`` (bpg ``proxmox/nodes/tasks/tasks.go`` ``WaitForTask``); a sandbox whose
    clock only moves on ``advance`` would never finish one, so ``advance`` steps it a second per poll.
    """

    timeout: float = 300.0
    poll: float = 0.2
    advance: Callable[[float], None] | None = None


class Api:
    """PVE as bpg's client sees it: one call at a time, tasks awaited, the version asked once."""

    def __init__(self, transport: Transport, wait: TaskWait | None = None) -> None:
        self.transport = transport
        self.wait = wait or TaskWait()
        self.sent: list[PveRequest] = []
        self._version: str | None = None

    def call(self, method: str, path: str, form: Form = ()) -> Any:
        request = PveRequest(method, path, form)
        self.sent.append(request)
        return self.transport.send(request)

    def version(self) -> str:
        """``GET /version`` (bpg ``proxmox/version/version.go``); bpg assumes 8.0.0 when it cannot ask."""
        if self._version is None:
            try:
                self._version = str((self.call("GET", "version") or {}).get("version") or "8.0.0")
            except PveHttpError:
                self._version = "8.0.0"  # bpg proxmox/version/capabilities.go MinimumProxmoxVersion
        return self._version

    def version_at_least(self, wanted: tuple[int, ...]) -> bool:
        parts = []
        for piece in self.version().split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            parts.append(int(digits or 0))
        return tuple(parts) >= wanted

    def wait_task(self, upid: str, what: str) -> None:
        """bpg ``WaitForTask``: poll the status until ``stopped``; an exit status other than ``OK`` fails the
        step with the task log's error lines (bpg ``taskFailedResult``). The path is built from the UPID's
        node, both path-escaped (bpg ``proxmox/nodes/tasks/client.go`` ``baseTaskPath``)."""
        deadline = time.monotonic() + self.wait.timeout
        base = f"nodes/{path_escape(upid.split(':')[1])}/tasks/{path_escape(upid)}"
        path = f"{base}/status"
        while True:
            status = self.call("GET", path) or {}
            if status.get("status") != "running":
                break
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{what}: task {upid} still running after {self.wait.timeout:g}s",
                                  hint="the sandbox's clock may be stepped: run again with --advance, "
                                       "or `vzkeep sandbox advance 1m` in another shell")
            if self.wait.advance is not None:
                self.wait.advance(1)
            else:
                time.sleep(self.wait.poll)
        exit_status = str(status.get("exitstatus", ""))
        if exit_status == "OK" or (exit_status.startswith("WARNINGS: ") and "ERROR" not in exit_status):
            return
        lines = [entry.get("t", "") for entry in self.call("GET", f"{base}/log") or []]
        errors = [line.removeprefix("TASK ERROR: ") for line in lines if line.startswith("TASK ERROR: ")]
        detail = "; ".join(errors) or f"task {upid!r} failed to complete with exit code: {exit_status}"
        raise ProviderError(what, detail)


@dataclass
class Context:
    """Where a step acts: the sandbox's PVE, and the local stand-ins for what is not PVE's."""

    pve: Api
    files_root: Path  # delivered files land under <files_root>/<host>/<path>
    services: dict[str, Any] = field(default_factory=dict)  # lazily started stand-ins (the S3 server)
    provider: dict[str, Any] = field(default_factory=dict)  # the current step's provider inputs


@dataclass
class ClusterView:
    """What the pre-flight read of the cluster found (each list fetched once, on first use)."""

    api: Api
    _cache: dict[str, Any] = field(default_factory=dict)

    def _get(self, key: str, path: str) -> Any:
        if key not in self._cache:
            self._cache[key] = self.api.call("GET", path) or []
        return self._cache[key]

    def nodes(self) -> list[str]:
        return sorted(str(n["node"]) for n in self._get("nodes", "nodes"))

    def guests(self) -> dict[int, dict[str, Any]]:
        return {int(g["vmid"]): g for g in self._get("guests", "cluster/resources?type=vm")}

    def storages(self) -> dict[str, dict[str, Any]]:
        return {str(s["storage"]): s for s in self._get("storages", "storage")}

    def pools(self) -> set[str]:
        return {str(p["poolid"]) for p in self._get("pools", "pools")}

    def jobs(self) -> set[str]:
        return {str(j["id"]) for j in self._get("jobs", "cluster/backup")}

    def users(self) -> set[str]:
        return {str(u["userid"]) for u in self._get("users", "access/users")}

    def roles(self) -> set[str]:
        return {str(r["roleid"]) for r in self._get("roles", "access/roles")}

    def tokens(self, userid: str) -> set[str]:
        try:
            return {str(t["tokenid"]) for t in self._get(f"tokens:{userid}", f"access/users/{userid}/token")}
        except PveHttpError as err:
            if err.does_not_exist:
                return set()
            raise


@dataclass
class Declared:
    """What the stack declares next to a resource: pre-flight counts it as present (it will be created first)."""

    pools: set[str] = field(default_factory=set)
    storages: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)


class ResourceKind:
    """One resource type of a provider; subclasses set the class attributes and the four operations."""

    tokens: tuple[str, ...] = ()
    title = "resource"
    source = ""  # the provider files this module follows
    replace_on: frozenset[str] = frozenset()  # inputs whose change replaces the resource (ForceNew)

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("resourceId", ""))

    def describe(self, inputs: Inputs) -> str:
        return f"{self.title} '{self.pve_id(inputs)}'"

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        """Record what this resource will provide, for the other resources' pre-flight."""

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        """Problems that would make a create fail, found by reading only (PVE's words where PVE has them)."""
        return []

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        raise NotImplementedError

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        """The resource as it is now, or None when it is gone."""
        raise NotImplementedError

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        raise NotImplementedError

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        raise NotImplementedError


def fail(summary: str, err: PveHttpError, context: str = "") -> ProviderError:
    """A ``ProviderError`` carrying PVE's answer as bpg wraps it (``<context>: received an HTTP …``)."""
    return ProviderError(summary, f"{context}: {err}" if context else str(err))
