"""The seam to PVE: the typed client's errors, the task follower's retries and bounds, the import boundary.

The follower is driven here by a scripted PVE (a `PveClient` written in a few lines, which is the point
of the seam) and a fake clock, so backoff and bounds are checked exactly and instantly; the real client
is checked against the sandbox and a closed port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers.sandbox import running_sandbox
from vzkeep.cli import app as cli_app
from vzkeep.connection import ConnectionOptions, ProxmoxerClient, Target, connect, connect_client
from vzkeep.errors import ExitStatus
from vzkeep.follow import Task, TaskInterrupted, TaskStillRunning, Wait, follow_task
from vzkeep.net import free_port
from vzkeep.pve.client import PveApiError, PveClient, PveUnreachable

NODE = "pve1"
UPID = "UPID:pve1:0002A3F1:00C1B2A3:67A1B2C3:qmrestore:101:root@pam!vzkeep:"
TASK = Task(NODE, UPID, "restore of VM 101")


class ScriptedPve:
    """A PVE that answers the task status with `statuses` in turn; `failures` are raised first, by call."""

    def __init__(self, statuses: list[str], log: list[str], failures: dict[int, Exception] | None = None) -> None:
        self.statuses, self.log, self.failures = statuses, log, failures or {}
        self.calls: list[str] = []

    def get(self, path: str, **params: Any) -> Any:
        self.calls.append(path)
        failure = self.failures.pop(len(self.calls), None)
        if failure is not None:
            raise failure
        if path.endswith("/status"):
            state = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {"status": state, **({"exitstatus": "OK"} if state == "stopped" else {})}
        return [{"n": i + 1, "t": line} for i, line in enumerate(self.log)][params.get("start", 0):]

    def post(self, path: str, **params: Any) -> Any:
        raise AssertionError("following a task never writes")

    put = delete = post


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def wait_for(time_: FakeTime, timeout: float = 600.0, notes: list[str] | None = None, **kwargs: Any) -> Wait:
    return Wait(timeout, on_note=(notes.append if notes is not None else lambda _line: None),
                monotonic=time_.monotonic, sleep=time_.sleep, **kwargs)


def test_a_dropped_connection_and_a_proxy_error_are_retried_with_backoff() -> None:
    clock, notes = FakeTime(), []
    pve: PveClient = ScriptedPve(["running", "running", "stopped"], ["restore vma archive", "TASK OK"], failures={
        2: PveUnreachable("GET /nodes/pve1/tasks/…/log: no answer from 127.0.0.1:8006 (Connection reset by peer)"),
        3: PveUnreachable("again"),
        5: PveApiError(595, "Errors during connection establishment, proxy handshake failed"),
    })
    status, log = follow_task(pve, TASK, wait_for(clock, notes=notes))
    assert (status, log) == ("OK", ["restore vma archive", "TASK OK"])
    retries = [n for n in notes if n.startswith("lost contact with PVE")]
    assert [n.rsplit("retrying in ", 1)[1] for n in retries] == ["0.5 s", "1.0 s", "0.5 s"]
    assert "Connection reset by peer" in retries[0] and "(HTTP 595)" in retries[2]


def test_pve_refusing_a_read_is_not_retried() -> None:
    refusal = PveApiError(403, "Permission check failed (/nodes/pve1, Sys.Audit)")
    pve = ScriptedPve(["running"], [], failures={1: refusal})
    with pytest.raises(PveApiError, match="Permission check failed"):
        follow_task(pve, TASK, wait_for(FakeTime()))
    assert len(pve.calls) == 1


def test_the_bound_ends_the_wait_and_names_the_task() -> None:
    clock = FakeTime()
    wait = wait_for(clock, timeout=30.0, connection="--sandbox /srv/sb/sandbox.json")
    with pytest.raises(TaskStillRunning) as ended:
        follow_task(ScriptedPve(["running"], ["progress 10%"]), TASK, wait)
    assert ended.value.status == ExitStatus.TIMEOUT and ended.value.task == TASK
    assert str(ended.value) == (f"PVE task {UPID} (restore of VM 101 on node pve1) is still running after 30 s "
                                "(--timeout)")
    assert f"vzkeep task follow '{UPID}' --sandbox /srv/sb/sandbox.json" in ended.value.hint
    assert 30.0 <= clock.now < 31.5  # polled until the bound, not past it


def test_an_unreachable_pve_ends_at_the_bound_too() -> None:
    clock = FakeTime()
    pve = ScriptedPve(["running"], [], failures={i: PveUnreachable("connection refused") for i in range(1, 100)})
    with pytest.raises(TaskStillRunning, match="no answer from PVE"):
        follow_task(pve, TASK, wait_for(clock, timeout=60.0))
    assert clock.now <= 60.0 and max(clock.slept) == 15.0  # backoff grows to its cap, never past the bound


def test_ctrl_c_names_the_task() -> None:
    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    wait = Wait(600.0, sleep=interrupt)
    with pytest.raises(TaskInterrupted) as stopped:
        follow_task(ScriptedPve(["running"], []), TASK, wait)
    assert stopped.value.status == ExitStatus.INTERRUPTED
    assert str(stopped.value).startswith(f"interrupted: PVE task {UPID}")
    assert "pvenode task log" in (stopped.value.hint or "")


class SteppedClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.time, self.advanced = now, []

    def stepped(self) -> bool:
        return True

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.advanced.append(seconds)
        self.time += seconds


def test_with_advance_the_wait_moves_a_stepped_clock_in_growing_steps() -> None:
    sandbox = SteppedClock()
    statuses = ["running"] * 8 + ["stopped"]
    follow_task(ScriptedPve(statuses, ["TASK OK"]), TASK, wait_for(FakeTime(), clock=sandbox, advance=True))
    assert sandbox.advanced == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_a_stepped_clock_nobody_moves_ends_the_wait_but_one_someone_moves_does_not() -> None:
    clock, sandbox = FakeTime(), SteppedClock()
    with pytest.raises(TaskStillRunning, match="clock is stepped"):
        follow_task(ScriptedPve(["running"], ["TASK OK"]), TASK, wait_for(clock, clock=sandbox))
    assert clock.now < 5.0
    # another shell runs `vzkeep sandbox advance` meanwhile: the wait goes on until the task ends
    moving, sandbox = FakeTime(), SteppedClock()
    original_sleep = moving.sleep

    def sleep(seconds: float) -> None:
        original_sleep(seconds)
        sandbox.time += 1

    pve = ScriptedPve(["running"] * 60 + ["stopped"], ["TASK OK"])
    wait = Wait(600.0, clock=sandbox, monotonic=moving.monotonic, sleep=sleep)
    assert follow_task(pve, TASK, wait)[0] == "OK"


def test_without_a_sandbox_connection_a_finished_log_on_a_running_task_is_pointed_out_once() -> None:
    notes: list[str] = []
    pve = ScriptedPve(["running"] * 30 + ["stopped"], ["restore vma archive", "TASK OK"])
    follow_task(pve, TASK, wait_for(FakeTime(), notes=notes))
    (note,) = notes
    assert "has ended (TASK OK) but PVE still reports it running" in note and "--advance" in note


# -- the real client -----------------------------------------------------------------------------------------


def test_the_client_reports_pves_own_words_and_an_unreachable_endpoint(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        client = sb.client()
        assert {n["node"] for n in client.get("/nodes")} == {"pve1", "pve2"}
        with pytest.raises(PveApiError) as refused:
            client.post("nodes/pve1/qemu", vmid=101, archive="backup-prod:backup/none.vma.zst")
        assert refused.value.http_status >= 400 and refused.value.reason
        assert str(refused.value).endswith(f"(HTTP {refused.value.http_status})")
        assert refused.value.status == ExitStatus.FINDING
        target = Target("127.0.0.1", free_port(), "root@pam", "vzkeep", "secret", None, verify=False)
        closed = ProxmoxerClient(connect(target), "127.0.0.1 (nothing listens)")
        with pytest.raises(PveUnreachable, match=r"no answer from 127\.0\.0\.1"):
            closed.get("nodes")


def test_task_stop_asks_pve_to_stop_the_task_on_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[str] = []

    class Recorder(ScriptedPve):
        def delete(self, path: str, **params: Any) -> Any:
            deleted.append(path)

    monkeypatch.setattr("vzkeep.cli.task.connect_client", lambda _conn: Recorder(["running"], []))
    result = CliRunner().invoke(cli_app, ["task", "stop", UPID, "--endpoint", "https://pve1:8006"])
    assert result.exit_code == 0, result.stderr
    assert deleted == [f"nodes/pve1/tasks/{UPID}"]
    bad = CliRunner().invoke(cli_app, ["task", "stop", "UPID:nonsense"])
    assert bad.exit_code == 2 and "is not a PVE task id" in bad.stderr


# -- the import boundary ------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["vzkeep.exporter", "vzkeep.restore", "vzkeep.drill", "vzkeep.connection",
                                    "vzkeep.follow", "vzkeep.pve.client", "vzkeep.state"])
def test_the_runtime_does_not_import_the_sandbox(module: str) -> None:
    """The sandbox emulates PVE for tests and demos; the runtime that talks to real clusters must not
    depend on it (nor pull `cryptography`'s x509 in with it just to pin a fingerprint)."""
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in sys.modules if m.startswith(('vzkeep.sandbox', 'cryptography.x509'))))")
    root = str(Path(__file__).parent.parent)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


def test_the_runtime_speaks_to_pve_only_through_the_typed_client() -> None:
    root = Path(__file__).parent.parent / "vzkeep"
    runtime = [root / name for name in ("restore.py", "drill.py", "demo.py", "backups.py", "follow.py")]
    untyped = [f"{path.name}:{n}" for path in runtime for n, line in enumerate(path.read_text().splitlines(), 1)
               if "api: Any" in line or "proxmoxer" in line]
    assert untyped == []


def test_the_read_only_client_reads_and_pve_refuses_its_writes(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        auditor = connect_client(ConnectionOptions(sandbox=sb.sandbox_json, read_only=True))
        assert auditor.get("version")["release"]
        with pytest.raises(PveApiError) as refused:
            auditor.post("nodes/pve1/qemu/101/status/start")
        assert refused.value.http_status == 403 and "Permission check failed" in str(refused.value)
        assert refused.value.method == "POST" and refused.value.path == "nodes/pve1/qemu/101/status/start"
