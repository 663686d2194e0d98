"""Every wait has an end: `vzkeep restore` and `vzkeep drill` on a stepped sandbox, with a timeout, on Ctrl-C.

On a stepped sandbox (`vzkeep sandbox serve --stepped`) a PVE task ends only when the clock moves. Both
commands used to print the task's `TASK OK` and then wait forever. Now `--advance` moves the clock while
they wait, and without it they stop within seconds saying so and what to run; `--timeout` and Ctrl-C
name the task still running with the commands to follow or stop it. Here the clock is never pumped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.cli import invoke, with_backups
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from tests.helpers.waits import wait_until
from vzkeep.cli import app as cli_app
from vzkeep.drill import DrillResultStore
from vzkeep.pve.client import PveApiError
from vzkeep.sandbox.tasks import TaskStore

VZKEEP = Path(sys.executable).parent / "vzkeep"
UPID = re.compile(r"UPID:[^\s']+:")


def restore_upids(sb: RunningSandbox) -> list[str]:
    return [r.upid for n in sb.sandbox.cluster.nodes for r in sb.sandbox.tasks.records(n)
            if r.info.type in ("qmrestore", "vzrestore")]


def timed(sb: RunningSandbox, tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    began = time.monotonic()
    result = invoke(sb, list(args), str(tmp_path / "state"), pump=False)
    return result, time.monotonic() - began


def test_restore_on_a_stepped_sandbox_finishes_with_advance(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        before = sb.sandbox.clock.now()
        # --sandbox on the command line, as a runbook would write it (the other tests use VZKEEP_SANDBOX)
        result, _ = timed(sb, tmp_path, "restore", "postgres", "--vmid", "5101", "--start", "--advance",
                          "--sandbox", str(sb.sandbox_json))
        assert result.exit_code == 0, result.stderr
        assert "restored VM 5101 on node pve1" in result.stderr
        assert sb.sandbox.cluster.guests[5101].status == "running"
        assert sb.sandbox.clock.now() > before  # the command moved the clock itself


def test_restore_on_a_stepped_sandbox_without_advance_says_so_within_seconds(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        result, elapsed = timed(sb, tmp_path, "restore", "postgres", "--vmid", "5101")
        said = " ".join(result.stderr.split())
        (upid,) = restore_upids(sb)
        assert result.exit_code == 3, result.stderr
        assert elapsed < 20
        assert f"PVE task {upid} (restore of VM 5101 on node pve1) is still running" in said
        assert "the sandbox's clock is stepped" in said and "re-run with --advance" in said
        assert f"vzkeep sandbox advance 10m --sandbox {sb.sandbox_json}" in said
        assert f"vzkeep task follow '{upid}' --sandbox {sb.sandbox_json}" in said
        # what it said to run works: the task is picked up and followed to its end
        follow = invoke(sb, ["task", "follow", upid, "--advance", "--json"], pump=False)
        doc = json.loads(follow.stdout)
        assert follow.exit_code == 0 and doc["exitstatus"] == "OK", follow.stderr
        assert any("restore vma archive" in line for line in doc["log"])
        assert 5101 in sb.sandbox.cluster.guests


def test_drill_on_a_stepped_sandbox_finishes_with_advance_or_stops_in_seconds(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        stalled, elapsed = timed(sb, tmp_path, "drill", "--guest", "dev-box", "--json")
        doc = json.loads(stalled.stdout)
        assert stalled.exit_code == 3 and elapsed < 20, stalled.stdout
        assert "clock is stepped" in doc["error"] and "--advance" in doc["hint"]
        assert doc["task"]["upid"] in restore_upids(sb) and doc["task"]["node"] == "pve2"
        store = DrillResultStore(tmp_path / "state" / "drills.json")
        (record,) = store.load().values()
        assert not record.ok and "stays pending" in record.message
        assert list(store.pending()) == [9000]
        # with --advance the next run removes the pending scratch guest and the drill succeeds
        done, _ = timed(sb, tmp_path, "drill", "--guest", "dev-box", "--json", "--advance")
        doc = json.loads(done.stdout)
        assert done.exit_code == 0, done.stdout + done.stderr
        assert doc["removed_leftovers"] == [9000] and doc["drills"][0]["ok"]
        assert [v for v in sb.sandbox.cluster.guests if 9000 <= v <= 9099] == []


def test_advance_needs_a_sandbox(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("VZKEEP_SANDBOX", raising=False)
    token = tmp_path / "token"
    token.write_text("root@pam!vzkeep=secret")
    for command in (["restore", "postgres"], ["drill", "--env", "lab"]):
        result = CliRunner().invoke(cli_app, [*command, "--advance", "--endpoint", "https://127.0.0.1:9",
                                              "--token-file", str(token)])
        assert result.exit_code == 2, result.stderr
        assert "--advance moves a sandbox's clock: give --sandbox FILE" in result.stderr


# -- a real clock: --timeout and Ctrl-C --------------------------------------------------------------------


def test_restore_timeout_names_the_task_and_how_to_follow_or_stop_it(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, stepped=False) as sb:  # real time: nextcloud's 64 GiB take minutes
        with_backups(sb)
        result, elapsed = timed(sb, tmp_path, "restore", "nextcloud", "--vmid", "5102", "--timeout", "2", "--json")
        doc = json.loads(result.stdout)
        (upid,) = restore_upids(sb)
        assert result.exit_code == 3 and elapsed < 30, result.stdout
        assert doc["error"].startswith(f"PVE task {upid} (restore of VM 5102 on node pve2) is still running after 2 s")
        assert doc["task"] == {"upid": upid, "node": "pve2", "what": "restore of VM 5102"}
        assert f"vzkeep task follow '{upid}'" in doc["hint"] and f"vzkeep task stop '{upid}'" in doc["hint"]
        assert f"pvesh delete /nodes/pve2/tasks/'{upid}'" in doc["hint"]


def test_drill_timeout_records_the_failure_and_names_the_task(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, stepped=False) as sb:
        with_backups(sb)
        result, elapsed = timed(sb, tmp_path, "drill", "--guest", "nextcloud", "--timeout", "2", "--json")
        doc = json.loads(result.stdout)
        (upid,) = restore_upids(sb)
        assert result.exit_code == 3 and elapsed < 30, result.stdout
        assert doc["task"]["upid"] == upid and "still running after 2 s" in doc["error"]
        assert f"vzkeep task stop '{upid}'" in doc["hint"]
        store = DrillResultStore(tmp_path / "state" / "drills.json")
        (record,) = store.load().values()
        assert not record.ok and "stays pending" in record.message and list(store.pending()) == [9000]


def interrupt_while_pve_works(sb: RunningSandbox, tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run `vzkeep ARGS` as a process, send it SIGINT once PVE's task is logging; (exit status, stderr)."""
    env = {**os.environ, "VZKEEP_SANDBOX": str(sb.sandbox_json), "VZKEEP_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen([str(VZKEEP), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    wait_until(lambda: restore_upids(sb), 60, "PVE's restore task to start")
    time.sleep(0.5)  # well inside the wait: the restore of 64 GiB takes minutes in real time
    process.send_signal(signal.SIGINT)
    status = process.wait(30)
    reader.join(10)
    process.stdout.close()  # type: ignore[union-attr]
    return status, " ".join("".join(lines).split())


def test_ctrl_c_during_a_restore_names_the_task_still_running(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, stepped=False) as sb:
        with_backups(sb)
        status, said = interrupt_while_pve_works(sb, tmp_path, "restore", "nextcloud", "--vmid", "5102")
        (upid,) = restore_upids(sb)
        assert status == 130, said
        assert f"interrupted: PVE task {upid} (restore of VM 5102 on node pve2) is still running" in said
        assert f"vzkeep task follow '{upid}'" in said and "Traceback" not in said


def test_ctrl_c_during_a_drill_names_the_task_and_leaves_it_for_the_next_run(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, stepped=False) as sb:
        with_backups(sb)
        status, said = interrupt_while_pve_works(sb, tmp_path, "drill", "--guest", "nextcloud")
        (upid,) = restore_upids(sb)
        assert status == 130, said
        assert f"interrupted: PVE task {upid} (restore of VM 9000 on node pve2) is still running" in said
        assert "Traceback" not in said
        assert list(DrillResultStore(tmp_path / "state" / "drills.json").pending()) == [9000]


# -- vzkeep task stop: DELETE /nodes/{node}/tasks/{upid} on the sandbox (pve-manager PVE/API2/Tasks.pm) ----


def test_task_stop_ends_a_running_restore_the_way_pve_does(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        stalled, _ = timed(sb, tmp_path, "restore", "postgres", "--vmid", "5101")
        (upid,) = restore_upids(sb)
        image = Path(sb.sandbox.cluster.guests[5101].disk_image)
        assert stalled.exit_code == 3 and image.is_file()
        # someone else's task: PVEAuditor holds no Sys.Modify on the node
        refused = invoke(sb, ["task", "stop", upid, "--read-only"], pump=False)
        assert refused.exit_code == 1 and "Permission check failed (/nodes/pve1, Sys.Modify)" in refused.stderr
        stopped = invoke(sb, ["task", "stop", upid], pump=False)
        assert stopped.exit_code == 0, stopped.stderr
        assert stopped.stdout.strip() == f"asked PVE to stop task {upid} on node pve1"
        # the worker died in qemu-server's handler and took the restore's error path
        follow = invoke(sb, ["task", "follow", upid, "--json"], pump=False)
        doc = json.loads(follow.stdout)
        assert follow.exit_code == 1 and doc["exitstatus"] == "interrupted by signal", follow.stderr
        assert doc["log"][-1] == "TASK ERROR: interrupted by signal"
        assert "VM 5101 state is NOT cleaned up." in doc["log"][-2]
        assert not any(line.startswith("progress 100%") for line in doc["log"])
        left = sb.sandbox.cluster.guests[5101]
        assert (left.config, left.lock, left.disk_image, left.pool) == ({}, None, None, None)
        assert not image.exists()
        # a second stop finds nothing running: PVE answers null and nothing changes
        assert invoke(sb, ["task", "stop", upid], pump=False).exit_code == 0
        assert sb.client().get(f"nodes/pve1/tasks/{upid}/status")["exitstatus"] == "interrupted by signal"
        # the stop is on disk: a reopened task store reads the task as it ended
        reread = TaskStore(sb.sandbox.tasks.root, now=lambda: 0).find(upid)
        assert reread is not None and reread.status == "interrupted by signal"


def test_task_stop_of_a_container_restore_destroys_it_and_pve_words_bad_upids(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        timed(sb, tmp_path, "restore", "dev-box", "--vmid", "5201")
        (upid,) = restore_upids(sb)
        client = sb.client()
        client.delete(f"nodes/pve2/tasks/{upid}")
        status = client.get(f"nodes/pve2/tasks/{upid}/status")
        assert (status["status"], status["exitstatus"]) == ("stopped", "unable to restore CT 5201 - received interrupt")
        assert 5201 not in sb.sandbox.cluster.guests
        with pytest.raises(PveApiError) as unparsable:
            client.delete("nodes/pve2/tasks/UPID:nope")
        assert unparsable.value.http_status == 400
        assert unparsable.value.errors == {"upid": "unable to parse worker upid"}
        with pytest.raises(PveApiError) as elsewhere:  # the task's log is on pve2, not on pve1
            client.delete(f"nodes/pve1/tasks/{upid}")
        assert elsewhere.value.errors == {"upid": "no such task"}
