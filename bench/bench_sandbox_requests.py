"""The sandbox's request floor: keep-alive latency of ``GET /version`` and ``GET /cluster/resources``
(1,000 guests, schema validation on), as ratios to an anchor measured in the same run.

The anchor is the least an HTTPS server on this machine can do: a ``http.server`` on the same
certificate, answering a fixed JSON body in one write with ``TCP_NODELAY``. The target for ``/version``
is a median of at most 2 ms (Nagle and delayed ACK used to add ~44 ms to every request).

    .venv/bin/python bench/bench_sandbox_requests.py [--calls 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vzkeep.net import free_port
from vzkeep.sandbox.launch import launch
from vzkeep.sandbox.tls import ensure_certificate, server_context

VERSION_TARGET_MS = 2.0
GUESTS = 1000
NODES = 5


def write_seed(path: Path) -> Path:
    lines = ["cluster: bench", "nodes:"] + [f"  - {{name: pve{i + 1}}}" for i in range(NODES)]
    lines += ["storages:", "  - {id: backup-bench, type: dir, capacity: 500GiB}", "pools:", "  - {id: bench}",
              "guests:"]
    for n in range(GUESTS):
        kind = "qemu" if n % 3 else "lxc"
        lines.append(f"  - {{vmid: {1000 + n}, name: g{n}, type: {kind}, node: pve{n % NODES + 1}, pool: bench}}")
    path.write_text("\n".join(lines) + "\n")
    return path


class _Anchor(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = json.dumps({"data": {"version": "x", "release": "x", "repoid": "x"}}).encode()

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n")
        self.wfile.write(head.encode() + self.body)


class _AnchorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(("127.0.0.1", 0), _Anchor)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.context.wrap_socket(sock, server_side=True), address


def median_ms(host: str, port: int, path: str, calls: int, headers: dict[str, str]) -> float:
    """Median milliseconds of ``calls`` keep-alive GETs on one connection (after one warm-up request)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=30)
    samples = []
    for i in range(calls + 1):
        began = time.perf_counter()
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 200, (reply.status, reply.reason)
        if i:
            samples.append((time.perf_counter() - began) * 1000)
    conn.close()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vzkeep-bench-") as tmp:
        running = launch(Path(tmp) / "state", seed=write_seed(Path(tmp) / "seed.yaml"), port=free_port(),
                         stepped=True)
        try:
            info = running.info
            token = info["tokens"]["admin"]
            auth = {"Authorization": f"PVEAPIToken={token['user']}!{token['token_name']}={token['token_value']}"}
            cert, key, _ = ensure_certificate(Path(tmp) / "state", "pve1")
            anchor = _AnchorServer(server_context(cert, key))
            threading.Thread(target=anchor.serve_forever, daemon=True).start()
            anchor_ms = median_ms("127.0.0.1", anchor.server_address[1], "/", args.calls, {})
            version_ms = median_ms(info["host"], info["port"], "/api2/json/version", args.calls, auth)
            resources_ms = median_ms(info["host"], info["port"], "/api2/json/cluster/resources", args.calls // 5, auth)
            anchor.shutdown()
        finally:
            running.stop()
    print(f"anchor (http.server, one write, TCP_NODELAY): {anchor_ms:.3f} ms median")
    print(f"GET /version:                {version_ms:.3f} ms median, {version_ms / anchor_ms:.1f}x anchor "
          f"(target <= {VERSION_TARGET_MS} ms) {'OK' if version_ms <= VERSION_TARGET_MS else 'MISSED'}")
    print(f"GET /cluster/resources ({GUESTS} guests): {resources_ms:.3f} ms median, "
          f"{resources_ms / anchor_ms:.1f}x anchor")


if __name__ == "__main__":
    main()
