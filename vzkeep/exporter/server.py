"""The exporter process: a polling thread and an HTTP server that serves the last snapshot.

A scrape never waits on PVE: the poll thread replaces ``Poller.snapshot`` (one reference, swapped whole) and
formats it once for Prometheus (``Exposition.warm``); the HTTP handler serves bytes from memory. A failed
poll (outage, bad answer) is already folded into the snapshot by the poller (``vzkeep_up 0``, errors
counted, last good data and its ``vzkeep_poll_timestamp_seconds`` kept); this loop additionally survives
anything the poller might still raise.

Paths: ``/metrics`` (GET, HEAD; gzip and OpenMetrics negotiated as prometheus_client does), ``/`` (the
status page). Each response goes out in one write on a socket with ``TCP_NODELAY``: headers and body in
separate segments would wait for the peer's delayed ACK (~40 ms on Linux).

Default listen address: ``127.0.0.1:9868``, vzkeep's own port (prometheus-pve-exporter uses 9221). Loopback
by default so a fresh install exposes nothing; ``0.0.0.0:9868`` or ``[::]:9868`` for a Prometheus elsewhere.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vzkeep.exporter import status_page
from vzkeep.exporter.exposition import Exposition
from vzkeep.exporter.poller import Poller
from vzkeep.exporter.snapshot import Snapshot
from vzkeep.monitoring import EXPORTER_PORT

DEFAULT_LISTEN = f"127.0.0.1:{EXPORTER_PORT}"
DEFAULT_INTERVAL_SECONDS = 60.0
log = logging.getLogger("vzkeep.exporter")


# glibc's mallopt(3) M_MMAP_THRESHOLD: allocations from this size up get their own mapping, returned to the system
# when freed. Set explicitly, it also stops glibc from raising the threshold after each large free, which would
# otherwise let every later storage listing (megabytes, once per poll) grow the heap for good.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_buffers_to_the_system() -> bool:
    """Make large buffers (a poll's answers) go back to the system when freed; False where it cannot (no glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl, macOS): the exporter works, its memory just stays higher
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9868`` for IPv6; port 0 picks a free one) → (host, port); ValueError says what is
    allowed."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536 or (":" in host and not bracketed):
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}, 0.0.0.0:9868 or "
                         "[::1]:9868 (an IPv6 address goes in brackets)")
    return host, int(port)


class PollLoop:
    """Polls every ``interval`` seconds in a daemon thread until ``stop``; the first poll starts at once.

    After each poll ``after_poll(snapshot)`` runs in the same thread (the exposition formats it there).
    """

    def __init__(self, poller: Poller, interval: float, after_poll: Any = None) -> None:
        self.poller = poller
        self.interval = interval
        self.after_poll = after_poll
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
                snapshot = self.poller.poll()
                if self.after_poll is not None:
                    self.after_poll(snapshot)
            except Exception:  # the poller handles PVE errors itself; this is the last line of defence
                log.exception("poll crashed; keeping the last snapshot and polling again")
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    server_version = "vzkeep-exporter"
    server: MetricsServer

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per scrape is noise in a journal

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def do_OPTIONS(self) -> None:
        self._send(200, b"", [("Allow", "OPTIONS, GET, HEAD")], head=True)

    def _respond(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        snapshot = self.server.poller.snapshot
        if path == "/metrics":
            content_type, zipped, body = self.server.exposition.body(
                snapshot, self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
            headers = [("Content-Type", content_type)] + ([("Content-Encoding", "gzip")] if zipped else [])
            self._send(200, body, headers, head)
        elif path in ("/", "/index.html"):
            self._send(200, self.server.page(snapshot), [("Content-Type", "text/html; charset=utf-8"),
                                                         ("Cache-Control", "no-store")], head)
        elif path == "/favicon.ico":
            self._send(204, b"", [], head)
        else:
            self._send(404, b"not found: the metrics are at /metrics, the status page at /\n",
                       [("Content-Type", "text/plain; charset=utf-8")], head)

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]], head: bool) -> None:
        reason = self.responses.get(status, ("",))[0]
        lines = [f"{self.protocol_version} {status} {reason}", f"Server: {self.server_version}",
                 f"Date: {formatdate(usegmt=True)}", *(f"{k}: {v}" for k, v in headers),
                 f"Content-Length: {len(body)}"]
        if self.close_connection:
            lines.append("Connection: close")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)
        self.wfile.write(payload)  # one write: headers and body in the same segment


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], poller: Poller, refresh_seconds: float = 60.0) -> None:
        self.poller = poller
        self.exposition = Exposition()
        self.refresh_seconds = refresh_seconds
        self._page: tuple[Snapshot, bytes] | None = None
        self.address_family = _family(address[0], address[1])
        super().__init__(address, _Handler)

    def page(self, snapshot: Snapshot) -> bytes:
        """The status page of this snapshot, rendered once."""
        cached = self._page
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, status_page.render(snapshot, self.refresh_seconds))
            self._page = cached
        return cached[1]


def _family(host: str, port: int) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address or a name that resolves to one first, else AF_INET."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]


class Exporter:
    """Poll loop plus HTTP server; ``url`` is the metrics URL once started."""

    def __init__(self, poller: Poller, listen: str = DEFAULT_LISTEN,
                 interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        host, port = parse_listen(listen)
        self.poller = poller
        self.httpd = MetricsServer((host, port), poller, refresh_seconds=interval)
        self.loop = PollLoop(poller, interval, after_poll=self.httpd.exposition.warm)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vzkeep-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    @property
    def page_url(self) -> str:
        return f"http://{self.address}/"

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
