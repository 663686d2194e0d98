"""Something a test keeps doing while its commands run: a daemon thread calling ``tick`` every ``interval``
seconds from the start of a ``with`` block to its end."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Self


class Background(ABC):
    """Subclasses define ``tick``; ``with Sub(...) as it:`` runs it every ``interval`` seconds, the first time
    one interval after the start, and stops (and joins) at the end of the block."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abstractmethod
    def tick(self) -> None:
        """What to do every ``interval`` seconds."""

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
