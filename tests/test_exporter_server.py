"""The exporter process: background polling, serving the last snapshot, surviving PVE outages and bad answers.

Outages are real: the exporter reaches the sandbox through a TCP relay on 127.0.0.1 that the test switches
between forwarding, refusing (connections reset) and hanging (accepted, never answered).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.metrics import samples, value
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from tests.helpers.tools import http_get
from tests.helpers.waits import wait_until
from vzkeep.connection import ConnectionOptions, connect
from vzkeep.exporter import Poller, Snapshot, proxmoxer_get
from vzkeep.exporter.server import Exporter, PollLoop, parse_listen

DAY = 86400
VZKEEP = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "vzkeep")


class Relay:
    """A TCP relay to ``target``; ``mode`` is "up" (forward), "down" (reset every connection) or "hang"."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "up"
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode = mode
        with self.lock:  # cut kept-alive connections too: an outage ends them
            for conn in self.open:
                _close(conn)
            self.open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "down":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                _close(client)
                continue
            with self.lock:
                self.open.append(client)
            if self.mode == "up":
                upstream = socket.create_connection(self.target)
                with self.lock:
                    self.open.append(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        self.set("down")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("exporter-server")) as sb:
        sb.grant_exporter_role()  # PVEAuditor alone sees no backup volume (Storage.pm check_volume_access)
        sb.advance(DAY)
        yield sb


@pytest.fixture
def relay(sandbox: RunningSandbox) -> Iterator[Relay]:
    relay = Relay((sandbox.host, sandbox.port))
    yield relay
    relay.close()


def relayed_connection(sb: RunningSandbox, relay: Relay, tmp_path: Path) -> Path:
    """A sandbox.json whose port is the relay's (same certificate, so the fingerprint pin still holds)."""
    info = json.loads(sb.sandbox_json.read_text())
    info["port"] = relay.port
    path = tmp_path / "sandbox.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path


def scrape(url: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    status, body = http_get(url, timeout=5)
    assert status == 200, body[:200]
    return samples(body)


@pytest.fixture
def exporter(sandbox: RunningSandbox, relay: Relay, tmp_path: Path) -> Iterator[Exporter]:
    conn = ConnectionOptions(sandbox=relayed_connection(sandbox, relay, tmp_path), read_only=True, timeout=2)
    server = Exporter(Poller(proxmoxer_get(connect(conn))), "127.0.0.1:0", interval=0.2)
    with server:
        yield server


def test_outage_sets_up_to_0_keeps_the_last_data_and_recovers(exporter: Exporter, relay: Relay) -> None:
    healthy = wait_until(
        lambda: (m := scrape(exporter.url)) and value(m, "vzkeep_up") == 1 and m, 20, "a good poll"
    )
    newest = healthy["vzkeep_backup_last_success_timestamp_seconds"]
    assert any(v > 0 for v in newest.values())

    relay.set("down")
    down = wait_until(
        lambda: (m := scrape(exporter.url)) and value(m, "vzkeep_up") == 0 and m, 20, "vzkeep_up 0"
    )
    assert value(down, "vzkeep_poll_errors_total") >= 1
    assert down["vzkeep_backup_last_success_timestamp_seconds"] == newest, (
        "the last good data is still served"
    )
    assert down["vzkeep_guest_info"] == healthy["vzkeep_guest_info"]
    frozen_at = value(down, "vzkeep_poll_timestamp_seconds")
    errors = value(down, "vzkeep_poll_errors_total")
    later = wait_until(
        lambda: (m := scrape(exporter.url)) and value(m, "vzkeep_poll_errors_total") > errors and m,
        20,
        "another failed poll",
    )
    assert value(later, "vzkeep_poll_timestamp_seconds") == frozen_at, (
        "a failed poll does not renew the data's age"
    )
    assert exporter.loop._thread.is_alive()

    relay.set("up")
    back = wait_until(
        lambda: (m := scrape(exporter.url)) and value(m, "vzkeep_up") == 1 and m, 20, "recovery"
    )
    assert value(back, "vzkeep_poll_timestamp_seconds") > frozen_at
    assert back["vzkeep_backup_last_success_timestamp_seconds"] == newest


def test_a_scrape_never_waits_on_a_hanging_pve(exporter: Exporter, relay: Relay) -> None:
    wait_until(lambda: value(scrape(exporter.url), "vzkeep_up") == 1, 20, "a good poll")
    relay.set("hang")
    time.sleep(0.5)  # the next poll is now stuck on the relay (timeout 2 s)
    polls = exporter.loop.polls
    for _ in range(5):
        started = time.monotonic()
        found = scrape(exporter.url)
        assert time.monotonic() - started < 0.5
        assert found["vzkeep_guest_info"]
    assert exporter.loop.polls <= polls + 1, "the poll was blocked while the scrapes were served"
    relay.set("up")


# --- bad answers: each part fails alone and keeps its last data ----------------------------------------


class ReplayGet:
    """Answers recorded from the sandbox, with some paths overridden by a bad answer or an exception."""

    def __init__(self, recorded: dict[str, Any]) -> None:
        self.recorded = recorded
        self.bad: dict[str, Any] = {}

    def __call__(self, path: str, **params: Any) -> Any:
        answer = self.bad[path] if path in self.bad else self.recorded[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(scope="module")
def recorded(sandbox: RunningSandbox) -> dict[str, Any]:
    inner = proxmoxer_get(sandbox.api(read_only=True))
    answers: dict[str, Any] = {}

    def get(path: str, **params: Any) -> Any:
        try:
            answers[path] = inner(path, **params)
        except Exception as exc:  # replayed as recorded (a sandbox without a route answers 501)
            answers[path] = exc
            raise
        return answers[path]

    assert Poller(get).poll().up
    return answers


BAD_ANSWERS = [
    ("resources is an object", "cluster/resources", {"errors": "x"}, "resources", "guests"),
    (
        "resources connection refused",
        "cluster/resources",
        ConnectionRefusedError(111, "refused"),
        "resources",
        "guests",
    ),
    ("jobs answer null", "cluster/backup", None, "jobs", "jobs"),
    (
        "not-backed-up entry without vmid",
        "cluster/backup-info/not-backed-up",
        [{"name": "x"}],
        "not-backed-up",
        "covered",
    ),
    ("task list item without starttime", "nodes/pve1/tasks", [{"upid": "UPID:x"}], "tasks/pve1", "attempts"),
    (
        "storage listing with a text ctime",
        "nodes/pve1/storage/backup-prod/content",
        [{"volid": "backup-prod:backup/x.tar.zst", "vmid": 100, "ctime": "yesterday", "size": 1}],
        "content/backup-prod/pve1",
        "archives",
    ),
    (
        "storage listing times out",
        "nodes/pve2/storage/backup-lab/content",
        TimeoutError("read timed out"),
        "content/backup-lab/pve2",
        "archives",
    ),
    ("an unexpected exception type", "nodes/pve2/tasks", RuntimeError("boom"), "tasks/pve2", "attempts"),
]


@pytest.mark.parametrize(
    ("description", "path", "answer", "part", "kept"), BAD_ANSWERS, ids=[c[0] for c in BAD_ANSWERS]
)
def test_a_bad_answer_fails_one_part_and_keeps_its_data(
    recorded: dict[str, Any], description: str, path: str, answer: Any, part: str, kept: str
) -> None:
    get = ReplayGet(recorded)
    poller = Poller(get)
    good = poller.poll()
    assert good.up
    get.bad[path] = answer
    bad = poller.poll()
    assert not bad.up
    assert bad.failed_parts == (part,)
    assert bad.poll_errors == 1
    assert bad.poll_timestamp == good.poll_timestamp
    assert getattr(bad, kept) == getattr(good, kept), f"{kept} must be the last good data"
    del get.bad[path]
    assert poller.poll().up


def test_the_poll_loop_survives_a_crashing_poller() -> None:
    class Crashing:
        snapshot = Snapshot()
        calls = 0

        def poll(self) -> Snapshot:
            self.calls += 1
            raise RuntimeError("unexpected")

    poller = Crashing()
    loop = PollLoop(poller, interval=0.01).start()  # type: ignore[arg-type]
    wait_until(lambda: poller.calls >= 3, 5, "three polls")
    loop.stop()


# --- the command ------------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VZKEEP, "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_once_prints_the_exposition_with_the_auditor_token(sandbox: RunningSandbox) -> None:
    result = run_cli("--sandbox", str(sandbox.sandbox_json), "--read-only", "--once")
    assert result.returncode == 0, result.stderr
    found = samples(result.stdout.encode())
    assert value(found, "vzkeep_up") == 1
    assert value(found, "vzkeep_guest_covered", env="", vmid="900") == 0
    token = sandbox.info["tokens"]["auditor"]["token_value"]
    assert token not in result.stdout + result.stderr


def test_once_exits_1_when_pve_is_unreachable(sandbox: RunningSandbox, relay: Relay, tmp_path: Path) -> None:
    relay.set("down")
    result = run_cli("--sandbox", str(relayed_connection(sandbox, relay, tmp_path)), "--read-only", "--once")
    assert result.returncode == 1
    assert value(samples(result.stdout.encode()), "vzkeep_up") == 0
    assert "resources" in result.stderr


def test_config_file_gives_the_same_options(sandbox: RunningSandbox, tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(f"sandbox: {sandbox.sandbox_json}\nread-only: true\ninterval: 30\n")
    result = run_cli("--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert value(samples(result.stdout.encode()), "vzkeep_up") == 1


USAGE_ERRORS = [
    (
        "unknown config key",
        ["--config", "{cfg}"],
        "interval: 60\nlisten-port: 9868\n",
        ["listen-port", "unknown key", "{cfg}"],
    ),
    ("config value of the wrong type", ["--config", "{cfg}"], "interval: soon\n", ["interval", "soon"]),
    ("listen without a port", ["--listen", "localhost"], None, ["--listen", "HOST:PORT"]),
    ("interval below one second", ["--interval", "0.1"], None, ["--interval", "at least 1"]),
    ("no endpoint at all", [], None, ["no PVE endpoint"]),
]


@pytest.mark.parametrize(
    ("description", "args", "config", "needles"), USAGE_ERRORS, ids=[c[0] for c in USAGE_ERRORS]
)
def test_usage_errors_exit_2_and_say_what_is_allowed(
    sandbox: RunningSandbox,
    tmp_path: Path,
    description: str,
    args: list[str],
    config: str | None,
    needles: list[str],
) -> None:
    cfg = tmp_path / "bad.yml"
    if config is not None:
        cfg.write_text(config)
    connection = [] if description == "no endpoint at all" else ["--sandbox", str(sandbox.sandbox_json)]
    result = run_cli(
        *connection,
        *[a.format(cfg=cfg) for a in args],
        "--once",
        env={"VZKEEP_ENDPOINT": "", "VZKEEP_SANDBOX": ""},
    )
    assert result.returncode == 2, result.stderr
    for needle in needles:
        assert needle.format(cfg=cfg) in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9868", ("127.0.0.1", 9868)), ("[::1]:9868", ("::1", 9868)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected
