"""The exporter process: a polling thread and an HTTP server that serves the last snapshot.

A scrape never waits on PVE: the poll thread replaces ``Poller.snapshot`` (one reference, swapped whole) and
the HTTP handler only formats it. A failed poll (outage, bad answer) is already folded into the snapshot by
the poller (``vzkeep_up 0``, errors counted, last good data and its ``vzkeep_poll_timestamp_seconds`` kept);
this loop additionally survives anything the poller might still raise.

Default listen address: ``127.0.0.1:9868``, vzkeep's own port (prometheus-pve-exporter uses 9221). Loopback
by default so a fresh install exposes nothing; listen on ``0.0.0.0:9868`` for a Prometheus on another host.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from vzkeep.exporter.collect import Poller
from vzkeep.exporter.metrics import render
from vzkeep.monitoring import EXPORTER_PORT

DEFAULT_LISTEN = f"127.0.0.1:{EXPORTER_PORT}"
DEFAULT_INTERVAL_SECONDS = 60.0
log = logging.getLogger("vzkeep.exporter")

INDEX = b"""<html><head><title>vzkeep exporter</title></head><body>
<h1>vzkeep exporter</h1><p>Backup metrics of a Proxmox VE cluster: <a href="/metrics">/metrics</a></p>
</body></html>
"""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9868`` for IPv6) → (host, port); ValueError says what is allowed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN} or 0.0.0.0:9868")
    return host, int(port)


class PollLoop:
    """Polls every ``interval`` seconds in a daemon thread until ``stop``; the first poll starts at once."""

    def __init__(self, poller: Poller, interval: float) -> None:
        self.poller = poller
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vzkeep-poll", daemon=True)
        self.polls = 0

    def start(self) -> PollLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poller.poll()
            except Exception:  # the poller handles PVE errors itself; this is the last line of defence
                log.exception("poll crashed; keeping the last snapshot and polling again")
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per scrape is noise in a journal

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, render(self.server.poller.snapshot))
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", INDEX)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], poller: Poller) -> None:
        self.poller = poller
        super().__init__(address, _Handler)


class Exporter:
    """Poll loop plus HTTP server; ``url`` is the metrics URL once started."""

    def __init__(self, poller: Poller, listen: str = DEFAULT_LISTEN,
                 interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        host, port = parse_listen(listen)
        self.poller = poller
        self.httpd = MetricsServer((host, port), poller)
        self.loop = PollLoop(poller, interval)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vzkeep-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> Exporter:
        self._thread.start()
        self.loop.start()
        return self

    def stop(self) -> None:
        self.loop.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Exporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
