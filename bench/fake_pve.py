"""A PVE API that serves prebuilt JSON, to measure exporters without measuring a PVE (or the sandbox).

The answers have PVE's shapes (pve-manager ``PVE/API2/Cluster.pm`` resources, ``PVE/API2/Tasks.pm``,
pve-storage ``PVE/API2/Storage/Content.pm``) for a cluster of two nodes, three pools with one nightly job
each, and ``archives`` backups per guest on shared storages. Every answer is encoded once; the server
(HTTPS, HTTP/1.1 keep-alive, one write per response) only looks it up and counts requests per path.

    python bench/fake_pve.py --guests 5000 --archives 30 --out DIR     # writes DIR/pve.json, serves
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

NODES = ("pve1", "pve2")
POOLS = ("prod", "lab", "monitoring")
DAY = 86400
HISTORY_DAYS = 8
TZ_OFFSET = 3600  # the nodes' zone: Europe/Paris in winter
TOKEN = {"user": "monitoring@pve", "token_name": "exporter", "token_value": "00000000-0000-4000-8000-000000000000"}
PRIVILEGES = ("Sys.Audit", "VM.Audit", "Pool.Audit", "Datastore.Audit", "Datastore.AllocateSpace", "VM.Backup")


def _stamp(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + TZ_OFFSET))


def _volid(storage: str, kind: str, vmid: int, t: int) -> str:
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(t + TZ_OFFSET))
    return f"{storage}:backup/vzdump-{kind}-{vmid}-{stamp}.tar.zst"


def build(guests: int, archives: int, now: int) -> dict[str, Any]:
    """Every answer, keyed by API path (without /api2/json and without the query)."""
    night = now - now % DAY + 2 * 3600 - TZ_OFFSET  # 02:00 local of today
    if night > now:
        night -= DAY
    members = [(100 + i, POOLS[i % 3], NODES[i % 2], "lxc" if i % 2 else "qemu") for i in range(guests)]
    resources: list[dict[str, Any]] = []
    for vmid, pool, node, kind in members:
        resources.append({
            "id": f"{kind}/{vmid}", "type": kind, "vmid": vmid, "name": f"guest-{vmid}", "node": node, "pool": pool,
            "status": "running", "template": 0, "maxmem": 2 << 30, "mem": 1 << 30, "maxcpu": 2, "cpu": 0.01,
            "maxdisk": 8 << 30, "disk": 0, "uptime": 86400, "netin": 1, "netout": 1, "diskread": 1,
            "diskwrite": 1,
        })
    for node in NODES:
        resources.append({"id": f"node/{node}", "type": "node", "node": node, "status": "online", "level": "",
                          "maxcpu": 8, "cpu": 0.1, "maxmem": 64 << 30, "mem": 8 << 30, "uptime": 86400})
        for pool in POOLS:
            resources.append({"id": f"storage/{node}/backup-{pool}", "type": "storage", "storage": f"backup-{pool}",
                              "node": node, "status": "available", "content": "backup", "shared": 1,
                              "plugintype": "nfs", "maxdisk": 10 << 40, "disk": 2 << 40})
    for pool in POOLS:
        resources.append({"id": f"/pool/{pool}", "type": "pool", "pool": pool})
    answers: dict[str, Any] = {
        "cluster/resources": resources,
        "cluster/backup": [
            {"id": f"vzkeep-{pool}", "type": "vzdump", "enabled": 1, "schedule": "02:00", "pool": pool,
             "storage": f"backup-{pool}", "mode": "snapshot", "compress": "zstd", "next-run": night + DAY}
            for pool in POOLS
        ],
        "cluster/backup-info/not-backed-up": [],
        "cluster/status": [{"type": "cluster", "name": "homelab", "id": "cluster", "nodes": 2, "quorate": 1,
                            "version": 2}]
        + [{"type": "node", "name": n, "id": f"node/{n}", "online": 1, "local": int(n == "pve1"), "nodeid": i,
            "level": "", "ip": "127.0.0.1"} for i, n in enumerate(NODES, 1)],
        "version": {"version": "9.1.3", "release": "9.1", "repoid": "abcdef01"},
        "cluster/config/qdevice": {},
        "access/permissions": {p: {priv: 1 for priv in PRIVILEGES}
                               for p in ("/", "/nodes", "/pool", "/storage", "/vms", "/access")},
    }
    for node in NODES:
        answers[f"nodes/{node}/time"] = {"time": now, "localtime": now + TZ_OFFSET, "timezone": "Europe/Paris"}
        answers[f"nodes/{node}/subscription"] = {"status": "notfound", "level": ""}
        answers[f"nodes/{node}/replication"] = []
        for kind in ("qemu", "lxc"):
            answers[f"nodes/{node}/{kind}"] = [{"vmid": v, "name": f"guest-{v}", "status": "running"}
                                               for v, _, n, k in members if n == node and k == kind]
            for v, _, n, k in members:
                if n == node and k == kind:
                    answers[f"nodes/{node}/{kind}/{v}/config"] = {"name": f"guest-{v}", "onboot": 1, "memory": 2048}
        tasks = []
        for day in range(HISTORY_DAYS):
            start = night - day * DAY
            for pool in POOLS:
                upid = f"UPID:{node}:0000{day:02d}{POOLS.index(pool)}0:00000000:{start:08X}:vzdump::root@pam:"
                guests_here = [(v, k) for v, p, n, k in members if p == pool and n == node]
                end = start + 5 * len(guests_here)
                tasks.append({"upid": upid, "node": node, "pid": 1, "pstart": 1, "starttime": start, "type": "vzdump",
                              "id": "", "user": "root@pam", "endtime": end, "status": "OK"})
                answers[f"nodes/{node}/tasks/{upid}/log"] = _task_log(pool, guests_here, start)
        answers[f"nodes/{node}/tasks"] = sorted(tasks, key=lambda t: -t["starttime"])
    # GET /cluster/resources?type=vm|storage|node (pve-manager PVE/API2/Cluster.pm resources)
    for kind, types in (("vm", ("qemu", "lxc")), ("storage", ("storage",)), ("node", ("node",))):
        answers[f"cluster/resources?type={kind}"] = [r for r in resources if r["type"] in types]
    for pool in POOLS:
        content = []
        for vmid, p, _node, kind in members:
            if p != pool:
                continue
            for day in range(archives):
                t = night - day * DAY + 5
                content.append({"volid": _volid(f"backup-{pool}", kind, vmid, t), "vmid": vmid, "ctime": t,
                                "size": 100_000_000 + vmid, "format": "tar.zst", "subtype": kind, "content": "backup",
                                "notes": f"guest-{vmid} ({pool})"})
        for node in NODES:
            answers[f"nodes/{node}/storage/backup-{pool}/content"] = content
    return answers


def _task_log(pool: str, guests: list[tuple[int, str]], start: int) -> list[dict[str, Any]]:
    lines = [f"INFO: starting new backup job: vzdump --pool {pool} --storage backup-{pool} --mode snapshot "
             "--compress zstd --mailnotification always --quiet 1"]
    t = start
    for vmid, kind in guests:
        lines += [
            f"INFO: Starting Backup of VM {vmid} ({kind})",
            f"INFO: Backup started at {_stamp(t)}",
            "INFO: status = running",
            f"INFO: creating vzdump archive '/mnt/pve/backup-{pool}/dump/vzdump-{kind}-{vmid}.tar.zst'",
            "INFO: Total bytes written: 104857600 (100MiB, 50MiB/s)",
            "INFO: archive file size: 95MB",
            f"INFO: Finished Backup of VM {vmid} (00:00:05)",
            f"INFO: Backup finished at {_stamp(t + 5)}",
        ]
        t += 5
    lines += ["INFO: Backup job finished successfully", "TASK OK"]
    return [{"n": i + 1, "t": text} for i, text in enumerate(lines)]


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

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

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            tls.close()


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
