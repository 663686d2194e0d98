"""The process's time zone in tests: what a PVE node's local zone is to the code that reads it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator


@contextlib.contextmanager
def process_tz(zone: str) -> Iterator[None]:
    """Set TZ for this process (what a PVE node's local zone is), restoring it afterwards."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
