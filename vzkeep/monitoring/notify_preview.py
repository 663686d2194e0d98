"""Where a firing alert goes: a throwaway Alertmanager running the generated ``alertmanager.yml``.

The demo points the config's Telegram receiver (``api_url``) at ``vzkeep.monitoring.telegram_stub`` and
lets a real Prometheus send its alerts here, so the message a failure delivers is the one Alertmanager's
own template engine renders. Needs the Alertmanager binary (Debian package ``prometheus-alertmanager``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from vzkeep.atomic import write_private
from vzkeep.net import free_port
from vzkeep.processes import stop_process

# Debian installs it as prometheus-alertmanager; upstream's tarball as alertmanager.
BINARIES = ("prometheus-alertmanager", "alertmanager")


class AlertmanagerMissing(RuntimeError):
    """No Alertmanager binary is installed."""


class AlertmanagerPreview:
    """Alertmanager on a free 127.0.0.1 port for as long as the `with` lasts; `address` is host:port."""

    def __init__(self, config_text: str, *, ready_timeout: float = 20.0) -> None:
        binary = next((found for name in BINARIES if (found := shutil.which(name))), None)
        if binary is None:
            raise AlertmanagerMissing("install the `prometheus-alertmanager` package to see the Telegram message "
                                      "a failure delivers")
        self._binary = binary
        self._config_text = config_text  # holds the bot token: written 0600, never shown
        self._ready_timeout = ready_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="vzkeep-alertmanager-")
        self._process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def __enter__(self) -> AlertmanagerPreview:
        root = Path(self._tmp.name)
        write_private(root / "alertmanager.yml", self._config_text)
        self.address = f"127.0.0.1:{free_port()}"
        # --cluster.listen-address= (empty) turns gossip off: it would otherwise bind 0.0.0.0:9094.
        self._process = subprocess.Popen(
            [self._binary, f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'data'}",
             f"--web.listen-address={self.address}", "--cluster.listen-address="],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        self._tmp.cleanup()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Alertmanager exited with {self._process.returncode} at start")
            try:
                with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"Alertmanager was not ready within {self._ready_timeout:.0f} s")
