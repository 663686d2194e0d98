"""PVE task identifiers (UPIDs), encoded and decoded exactly as pve-common does.

pve-common ``src/PVE/UPID.pm``::

    UPID:<node>:<pid %08X>:<pstart %08X>:<starttime %08X>:<type>:<id>:<user>:

``pstart`` may grow to 9 hex digits (``%08X`` is a minimum width), which is why the decode regex
accepts 8 or 9 there. The task log lives in the sub-directory named after the last hex digit of
the start time, so logs spread over 16 directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Verbatim from pve-common UPID.pm decode_upid.
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)
# What each free-text field may hold, so encode never produces a UPID that decode rejects.
_NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_FIELD_RE = re.compile(r"^[^:\s/]*$")


@dataclass(frozen=True)
class Upid:
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str  # "user@realm" or "user@realm!tokenid" for API tokens

    @property
    def text(self) -> str:
        return encode_upid(self.node, self.pid, self.pstart, self.starttime, self.type, self.id, self.user)

    @property
    def log_subdir(self) -> str:
        """``/var/log/pve/tasks/<X>/``: X is the last hex digit of the start time."""
        return f"{self.starttime:08X}"[-1]

    def user_and_token(self) -> tuple[str, str | None]:
        """Task APIs show a token's tasks as ``user`` + ``tokenid`` (pve-manager ``PVE/API2/Tasks.pm``)."""
        user, sep, token = self.user.partition("!")
        return user, (token if sep else None)


def encode_upid(node: str, pid: int, pstart: int, starttime: int, type: str, id: str, user: str) -> str:
    """Build a UPID string; raise ValueError for a field PVE's own decoder would reject."""
    if not _NODE_RE.match(node):
        raise ValueError(f"invalid node name {node!r} for a UPID")
    if not type or not _FIELD_RE.match(type):
        raise ValueError(f"invalid task type {type!r} for a UPID")
    if not _FIELD_RE.match(id):
        raise ValueError(f"invalid task id {id!r} for a UPID")
    if not user or not _FIELD_RE.match(user):
        raise ValueError(f"invalid user {user!r} for a UPID")
    if not (0 <= pid <= 0xFFFFFFFF and 0 <= pstart <= 0xFFFFFFFFF and 0 <= starttime <= 0xFFFFFFFF):
        raise ValueError("pid, pstart and starttime must fit the UPID's hex fields")
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:"


def decode_upid(text: str) -> Upid:
    """Parse a UPID; ValueError with PVE's text ``unable to parse worker upid '...'`` otherwise."""
    m = UPID_RE.match(text)
    if not m:
        raise ValueError(f"unable to parse worker upid '{text}'")
    return Upid(
        node=m.group(1),
        pid=int(m.group(3), 16),
        pstart=int(m.group(4), 16),
        starttime=int(m.group(5), 16),
        type=m.group(6),
        id=m.group(7),
        user=m.group(8),
    )
