"""The applied state of one stack on one sandbox: what Pulumi's checkpoint would hold after ``pulumi up``.

One JSON file per stack in the sandbox's directory (``<dir>/apply/<stack>.json``), replaced
atomically and readable by its owner only (0600): it holds the resources' outputs, among them secrets
such as a created token's value, and the throwaway secrets generated for the stack. During an apply
each step is appended to a log beside it (``<stack>.log``, one JSON line per record) instead of
rewriting the whole file: before a call that changes the cluster the step is noted as *pending* (as
Pulumi's ``pending_operations``), after it its result. Loading replays the log onto the file; the
end of an apply folds it in. An apply killed midway leaves the pending note, and the next apply
looks at the cluster to finish that step. A line cut short by the kill is the last one and is
ignored: it was written before its call was made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.errors import UsageError

FORMAT = 1
APPLY_DIR = "apply"


@dataclass
class ResourceState:
    """One managed resource: how the program declared it and what the provider answered."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""  # the provider reference (urn::id): a delete needs its settings


@dataclass
class Pending:
    """A step that had started changing the cluster when the apply stopped."""

    urn: str
    op: str  # create | update | delete
    type: str
    name: str
    id: str  # the PVE id the step acts on (known before the call for every PVE kind)
    inputs: dict[str, Any]


@dataclass
class StackState:
    stack: str
    resources: dict[str, ResourceState] = field(default_factory=dict)  # urn -> state, in creation order
    pending: dict[str, Pending] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # config key -> throwaway value, stable across applies

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "stack": self.stack,
                "resources": [asdict(r) for r in self.resources.values()],
                "pending": [asdict(p) for p in self.pending.values()], "secrets": self.secrets}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        return cls(stack=data["stack"],
                   resources={r["urn"]: ResourceState(**r) for r in data.get("resources", [])},
                   pending={p["urn"]: Pending(**p) for p in data.get("pending", [])},
                   secrets=dict(data.get("secrets", {})))


class StateFile:
    """``<sandbox dir>/apply/<stack>.json`` and its log of the steps since it was last written."""

    def __init__(self, directory: Path, stack: str) -> None:
        self.dir = Path(directory) / APPLY_DIR
        self.path = self.dir / f"{stack}.json"
        self.log = self.dir / f"{stack}.log"
        self.stack = stack

    def load(self) -> StackState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            state = StackState(self.stack)
        except (OSError, ValueError) as err:
            raise UsageError(f"{self.path}: the applied state cannot be read ({err})",
                             hint="restore it, or remove it to start from an empty state") from None
        else:
            if data.get("format") != FORMAT or data.get("stack") != self.stack:
                raise UsageError(f"{self.path}: not an applied state of stack {self.stack!r} (format {FORMAT})")
            state = StackState.from_json(data)
        for record in self._records():
            _replay(state, record)
        return state

    def save(self, state: StackState) -> None:
        """Write the whole state, then drop the log it now contains."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(state.to_json(), separators=(",", ":")) + "\n", mode=0o600)
        self.log.unlink(missing_ok=True)

    def record(self, kind: str, item: ResourceState | Pending | str) -> None:
        """Append one step record (``pending``, ``done``, ``deleted``, ``cleared``) to the log."""
        payload = {"record": kind, "item": item if isinstance(item, str) else asdict(item)}
        line = (json.dumps(payload, separators=(",", ":")) + "\n").encode()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _records(self) -> list[dict[str, Any]]:
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break  # cut short by a kill while it was written: its call never started
                raise UsageError(f"{self.log} line {number}: not a step record") from None
        return records

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One apply of a stack at a time (as Pulumi's backend lock); a second one is refused at once."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.dir / f".{self.stack}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another `sandbox apply` of stack {self.stack!r} is running on this sandbox",
                                 hint="wait for it to end") from None
            yield
        finally:
            os.close(fd)


def _replay(state: StackState, record: dict[str, Any]) -> None:
    kind, item = record["record"], record["item"]
    if kind == "pending":
        state.pending[item["urn"]] = Pending(**item)
    elif kind == "done":
        state.resources[item["urn"]] = ResourceState(**item)
        state.pending.pop(item["urn"], None)
    elif kind == "deleted":
        state.resources.pop(item, None)
        state.pending.pop(item, None)
    elif kind == "cleared":
        state.pending.pop(item, None)
