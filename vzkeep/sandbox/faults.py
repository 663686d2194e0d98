"""Armed faults: "the next N restores break midway", "the next N config updates time out".

A fault is armed through ``POST /_sandbox/faults`` (``vzkeep sandbox fault KIND --count N``) and
consumed by the operation it targets, one per call, until its count is used up. Only the emulated
failure is ours; what PVE logs and leaves behind is PVE's (see ``restore.fail_midway`` and
``api/config_update.py``). Faults live in the running sandbox's memory: a restart disarms them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

# kind -> what it does (shown by `vzkeep sandbox fault --help` and GET /_sandbox/faults)
KINDS = {
    "restore-midway": "restores (qmrestore / pct restore) fail while extracting, after PVE created the guest",
    "config-update": "PUT …/config fails: the guest's config lock cannot be taken (got timeout)",
}


@dataclass
class Fault:
    kind: str
    remaining: int
    # restore-midway: PVE's cleanup after the failure works (True) or cannot write /etc/pve (False),
    # e.g. the node lost quorum midway, so the half-made guest keeps ``lock: create``.
    cleanup: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.remaining, "cleanup": int(self.cleanup)}


class Faults:
    def __init__(self) -> None:
        self._armed: dict[str, Fault] = {}
        self._lock = threading.Lock()

    def arm(self, kind: str, count: int, cleanup: bool = True) -> Fault:
        """Arm ``kind`` for the next ``count`` operations (0 disarms); replaces what was armed."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; allowed: {', '.join(KINDS)}")
        if count < 0:
            raise ValueError(f"count {count}: must be 0 (disarm) or more")
        fault = Fault(kind, count, cleanup)
        with self._lock:
            if count:
                self._armed[kind] = fault
            else:
                self._armed.pop(kind, None)
        return fault

    def take(self, kind: str) -> Fault | None:
        """Consume one occurrence of ``kind``; None when it is not armed."""
        with self._lock:
            fault = self._armed.get(kind)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._armed[kind]
            return Fault(fault.kind, 1, fault.cleanup)

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._armed[k].to_json() for k in sorted(self._armed)]
