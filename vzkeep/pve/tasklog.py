"""vzdump task logs: what each guest's backup did, in PVE's own words (pve-manager ``PVE/VZDump.pm``,
as ``GET /nodes/{node}/tasks/{upid}/log`` returns them).

The task log has no timestamps of its own; vzdump prints a per-guest local-time stamp. A multi-guest
job task (empty task id) is the only place a guest's failure is recorded, so the exporter and the
demo read outcomes from here.
"""

from __future__ import annotations

import calendar
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

# Lines of pve-manager PVE/VZDump.pm; the task log itself has no timestamps, only
# the local-time stamps vzdump prints per guest.
_JOB_START = re.compile(r"^INFO: starting new backup job: (vzdump\b.*)$")
_GUEST_START = re.compile(r"^INFO: Starting Backup of VM (\d+) \((?:qemu|lxc)\)")
_GUEST_FAILED = re.compile(r"^ERROR: Backup of VM (\d+) failed - (.*)$")
_GUEST_DONE = re.compile(r"^INFO: Finished Backup of VM (\d+) \(")
_GUEST_STAMP = re.compile(r"^INFO: (?:Backup finished|Failed) at (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$")
# Time zone offsets are whole quarter hours (UTC+5:45 is the oddest in use).
_OFFSET_STEP = 900


@dataclass(frozen=True)
class GuestOutcome:
    vmid: int
    ok: bool
    local_end: int | None  # naive local time of "Backup finished at" / "Failed at", as if it were UTC
    error: str | None = None


@dataclass(frozen=True)
class TaskLog:
    """What a vzdump task log says: its parameters and each guest's outcome, in log order."""

    params: Mapping[str, Any]
    outcomes: tuple[GuestOutcome, ...]


def parse_task_log(lines: Iterable[str]) -> TaskLog:
    params: dict[str, Any] = {}
    outcomes: dict[int, GuestOutcome] = {}
    current: int | None = None
    for line in lines:
        if match := _JOB_START.match(line):
            params = parse_command_line(match.group(1))
        elif match := _GUEST_START.match(line):
            current = int(match.group(1))
            outcomes[current] = GuestOutcome(current, False, None, "backup did not finish")
        elif match := _GUEST_FAILED.match(line):
            current = int(match.group(1))
            outcomes[current] = GuestOutcome(current, False, None, match.group(2))
        elif match := _GUEST_DONE.match(line):
            current = int(match.group(1))
            outcomes[current] = GuestOutcome(current, True, None)
        elif (match := _GUEST_STAMP.match(line)) and current in outcomes:
            stamp = calendar.timegm((*(int(g) for g in match.groups()), 0, 0, 0))
            outcomes[current] = replace(outcomes[current], local_end=stamp)
    return TaskLog(params, tuple(outcomes.values()))


def parse_command_line(text: str) -> dict[str, Any]:
    """``vzdump 100 101 --pool prod --storage backup-prod`` → ``{"vmid": "100,101", "pool": "prod", ...}``
    (``PVE::VZDump::Common::command_line`` writes positional VMIDs, then ``--key value`` pairs)."""
    try:
        words = shlex.split(text)[1:]
    except ValueError:
        return {}
    params: dict[str, Any] = {}
    vmids = []
    key: str | None = None
    for word in words:
        if word.startswith("--"):
            key = word[2:]
            params[key] = "1"  # a flag without value (not written by PVE, but harmless)
        elif key is not None:
            params[key] = word
            key = None
        else:
            vmids.append(word)
    if vmids:
        params["vmid"] = ",".join(vmids)
    return params


def local_offset(outcomes: Iterable[GuestOutcome], endtime: int) -> int | None:
    """The node's UTC offset, from the last guest's local end stamp and the task's end time.

    The task ends right after its last guest (only the job summary and the notification follow), so the
    difference, rounded to a quarter hour, is the offset; this spares a per-node time zone call.
    """
    stamps = [o.local_end for o in outcomes if o.local_end is not None]
    if not stamps:
        return None
    return round((stamps[-1] - endtime) / _OFFSET_STEP) * _OFFSET_STEP


def status_ok(status: str | None) -> bool:
    """``OK`` and ``WARNINGS: N`` are success; anything else is an error (pve-common ``status_is_error``)."""
    return status == "OK" or (status or "").startswith("WARNINGS")
