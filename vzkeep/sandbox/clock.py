"""The sandbox's clock: real time, accelerated (``--speed N``) or stepped (moves only when told).

Every mode is "an anchor plus elapsed wall time times a factor": real time is factor 1, stepped
is factor 0. ``advance`` always jumps forward, in every mode, so a scenario can skip a week even
while the clock is running. The simulated time is persisted in ``Cluster.clock_epoch`` by the
engine; a reopened sandbox resumes from there (time does not pass while it is stopped, which keeps
restarts deterministic — the scheduler then applies PVE's restart rules, pve-manager PVE/Jobs.pm).
"""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self, start_epoch: float | None = None, speed: float | None = None, stepped: bool = False):
        if speed is not None and speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self.stepped = stepped
        self.speed = 0.0 if stepped else (1.0 if speed is None else float(speed))
        self._lock = threading.Lock()
        self._anchor_sim = time.time() if start_epoch is None else float(start_epoch)
        self._anchor_wall = time.monotonic()

    @property
    def mode(self) -> str:
        if self.stepped:
            return "stepped"
        return "real" if self.speed == 1.0 else f"speed x{self.speed:g}"

    def now(self) -> float:
        with self._lock:
            return self._anchor_sim + (time.monotonic() - self._anchor_wall) * self.speed

    def time(self) -> int:
        """Whole seconds, as PVE stamps tasks and archives."""
        return int(self.now())

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds} s")
        with self._lock:
            self._anchor_sim += seconds
            return self._anchor_sim + (time.monotonic() - self._anchor_wall) * self.speed

    def set(self, epoch: float) -> None:
        """Move to ``epoch`` if it is in the future; never moves backwards."""
        now = self.now()
        if epoch > now:
            self.advance(epoch - now)
