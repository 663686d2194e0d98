"""A PVE API that serves prebuilt JSON, to measure exporters without measuring a PVE (or the sandbox).

The answers are ``tests/helpers/fake_pve.py``'s (PVE's shapes, a cluster of two nodes, three pools with one nightly
job each, ``archives`` backups per guest). Every answer is encoded once; the server (HTTPS, HTTP/1.1
keep-alive, one write per response) only looks it up and counts requests per path.

    python bench/fake_pve_server.py --guests 5000 --archives 30 --out DIR     # writes DIR/pve.json, serves
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import ssl
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.fake_pve import TOKEN, build
from vzkeep.sandbox.tls import ThreadingTLSServer

# --- the server ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = re.sub(r"^/api2/json/", "", url.path)
        self.server.count(path)
        kind = re.search(r"(?:^|&)type=(\w+)", url.query)
        body = self.server.encoded.get(f"{path}?type={kind.group(1)}" if kind else path)
        if self.server.churn and path in self.server.changed:
            # Every other answer differs (one backup's size): what the exporter sees after each backup run.
            body = self.server.changed[path] if self.server.counts[path] % 2 else body
        since = re.search(r"(?:^|&)since=(\d+)", url.query)
        if body is not None and since and path.endswith("/tasks"):
            # PVE lists only tasks started at or after `since` (pve-manager PVE/API2/Tasks.pm node_tasks).
            tasks = [t for t in self.server.answers[path] if t["starttime"] >= int(since.group(1))]
            body = json.dumps({"data": tasks}, separators=(",", ":")).encode()
        if body is None:
            status, reason, body = 501, "Method not implemented", b'{"data":null}'
        else:
            status, reason = 200, "OK"
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.wfile.write(head + body)


class _Server(ThreadingTLSServer):
    def __init__(self, answers: dict[str, Any], context: ssl.SSLContext) -> None:
        self.answers = answers
        self.encoded = {p: json.dumps({"data": a}, separators=(",", ":")).encode() for p, a in answers.items()}
        self.churn = False
        self.changed = {p: json.dumps({"data": [{**a[0], "size": a[0]["size"] + 1}, *a[1:]]},
                                      separators=(",", ":")).encode()
                        for p, a in answers.items() if p.endswith("/content") and a}
        self.context = context
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def count(self, path: str) -> None:
        with self.lock:
            self.counts[path] += 1



def serve(out: Path, guests: int, archives: int, now: int) -> None:
    """Write ``out/pve.json`` (the connection file) and serve until stdin closes; ``count PATH`` on stdin
    prints how often PATH was requested, ``total`` all requests, ``churn on`` makes every storage listing
    change from one request to the next."""
    from vzkeep.sandbox.tls import ensure_certificate, server_context

    out.mkdir(parents=True, exist_ok=True)
    cert, key, fingerprint = ensure_certificate(out, "pve1")
    server = _Server(build(guests, archives, now), server_context(cert, key))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    info = {"host": "127.0.0.1", "port": server.server_address[1], "fingerprint": fingerprint,
            "url": f"https://127.0.0.1:{server.server_address[1]}/api2/json",
            "tokens": {"auditor": TOKEN, "admin": TOKEN}}
    path = out / "pve.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    print("ready", flush=True)
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        with server.lock:
            if word == "count":
                print(server.counts[arg], flush=True)
            elif word == "total":
                print(sum(server.counts.values()), flush=True)
            elif word == "reset":
                server.counts.clear()
                print("ok", flush=True)
            elif word == "churn":
                server.churn = arg == "on"
                print("ok", flush=True)
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=5000)
    parser.add_argument("--archives", type=int, default=30)
    parser.add_argument("--now", type=int, default=calendar.timegm((2026, 11, 22, 12, 0, 0)))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    serve(args.out, args.guests, args.archives, args.now)


if __name__ == "__main__":
    main()
