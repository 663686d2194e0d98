"""Stopping the helper processes vzkeep starts (Prometheus, Alertmanager, SeaweedFS, ...)."""

from __future__ import annotations

import subprocess
from typing import Any

GRACE_SECONDS = 10.0


def stop_process(process: subprocess.Popen[Any], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds; reaped either way, so no zombie
    stays behind and its ports and files are free when this returns."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
