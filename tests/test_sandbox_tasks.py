"""The sandbox task store: PVE's trailers, read_status, listing filters, log paging, persistence
(pve-common UPID.pm; pve-manager Tasks.pm node_tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vzkeep.pve.upid import decode_upid
from vzkeep.sandbox.tasks import ParamError, TaskStore, read_status, status_is_error, status_type

T0 = 1_700_000_000


class FakeClock:
    def __init__(self, now: float = T0):
        self.t = now

    def __call__(self) -> float:
        return self.t


def store(tmp_path: Path, clock: FakeClock | None = None, **kw) -> TaskStore:
    return TaskStore(tmp_path / "tasks", clock or FakeClock(), **kw)


@pytest.mark.parametrize(
    ("last_line", "status"),
    [
        ("TASK OK", "OK"),
        ("TASK WARNINGS: 3", "WARNINGS: 3"),
        ("TASK ERROR: job errors", "job errors"),
        ("INFO: Backup job finished", "unexpected status"),
        ("TASK WARNINGS: x", "unexpected status"),
    ],
)
def test_read_status_from_last_line(last_line: str, status: str) -> None:
    assert read_status(last_line) == status


@pytest.mark.parametrize(
    ("status", "kind", "is_error"),
    [
        ("OK", "ok", False),
        ("WARNINGS: 2", "warning", False),
        ("job errors", "error", True),
        ("unexpected status", "unknown", True),
    ],
)
def test_status_types(status: str, kind: str, is_error: bool) -> None:
    assert status_type(status) == kind
    assert status_is_error(status) is is_error


@pytest.mark.parametrize(
    ("name", "finish", "trailer", "status"),
    [
        ("ok", lambda t: t.finish(T0 + 5), "TASK OK", "OK"),
        ("warnings", lambda t: (t.warn("a"), t.warn("b"), t.finish(T0 + 5)), "TASK WARNINGS: 2", "WARNINGS: 2"),
        ("error folds newlines", lambda t: t.finish(T0 + 5, "bad\nthing\n"), "TASK ERROR: bad thing", "bad thing"),
        ("abort writes no trailer", lambda t: t.abort(T0 + 5), "INFO: started", "unexpected status"),
    ],
)
def test_trailers_and_status(tmp_path: Path, name: str, finish, trailer: str, status: str) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 10))
    task = tasks.start("pve1", "vzdump", "100", "root@pam", T0)
    task.log("INFO: started")
    finish(task)
    assert tasks.log_lines(task.upid)[-1] == trailer, name
    st = tasks.status("pve1", task.upid)
    assert st["status"] == "stopped" and st["exitstatus"] == status
    index = (tmp_path / "tasks" / "pve1" / "index").read_text().splitlines()
    assert index == [f"{task.upid} {T0 + 5:08X} {status}"]
    log_file = tmp_path / "tasks" / "pve1" / decode_upid(task.upid).log_subdir / task.upid
    assert log_file.exists()


def test_task_looks_running_until_the_clock_reaches_its_end(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    tasks = store(tmp_path, clock)
    task = tasks.start("pve1", "vzdump", "", "root@pam", T0)
    task.finish(T0 + 60)
    assert tasks.status("pve1", task.upid)["status"] == "running"
    assert "exitstatus" not in tasks.status("pve1", task.upid)
    active, total = tasks.list_node("pve1", source="active")
    assert total == 1 and active[0]["status"] == "RUNNING" and "endtime" not in active[0]
    assert tasks.list_node("pve1")[1] == 0  # not in the archive yet
    clock.t = T0 + 60
    assert tasks.status("pve1", task.upid)["status"] == "stopped"
    archived, total = tasks.list_node("pve1")
    assert total == 1 and archived[0]["endtime"] == T0 + 60 and archived[0]["status"] == "OK"


def _populate(tasks: TaskStore) -> list[str]:
    """Six finished tasks, oldest first: mixed types, ids, users and outcomes."""
    specs = [
        ("vzdump", "100", "root@pam", None),
        ("vzdump", "", "root@pam", "job errors"),
        ("imgdel", "100@local", "vzkeep@pve!ci", None),
        ("qmrestore", "100", "root@pam", "unable to restore VM 100 - vm is running"),
        ("vzdump", "101", "vzkeep@pve!ci", "WARN"),
        ("prunebackups", "local", "root@pam", None),
    ]
    upids = []
    for i, (type_, id_, user, outcome) in enumerate(specs):
        task = tasks.start("pve1", type_, id_, user, T0 + i * 100)
        if outcome == "WARN":
            task.warn("careful")
            task.finish(T0 + i * 100 + 10)
        else:
            task.finish(T0 + i * 100 + 10, outcome)
        upids.append(task.upid)
    return upids


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("all newest first", {}, [5, 4, 3, 2, 1, 0]),
        ("typefilter", {"typefilter": "vzdump"}, [4, 1, 0]),
        ("vmid matches the id exactly", {"vmid": 100}, [3, 0]),
        ("errors drops only ok", {"errors": True}, [4, 3, 1]),
        ("statusfilter error", {"statusfilter": "error"}, [3, 1]),
        ("statusfilter ok,warning", {"statusfilter": "ok,warning"}, [5, 4, 2, 0]),
        ("errors wins over statusfilter", {"errors": True, "statusfilter": "ok"}, [4, 3, 1]),
        ("since", {"since": T0 + 300}, [5, 4, 3]),
        ("until", {"until": T0 + 100}, [1, 0]),
        ("userfilter on the user part", {"userfilter": "VZKEEP"}, [4, 2]),
        ("start and limit", {"start": 1, "limit": 2}, [4, 3]),
    ],
)
def test_node_listing_filters(tmp_path: Path, name: str, params: dict, expected: list[int]) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 10_000))
    upids = _populate(tasks)
    items, total = tasks.list_node("pve1", **params)
    assert [i["upid"] for i in items] == [upids[k] for k in expected], name
    if "start" not in params:
        assert total == len(expected)


def test_listing_total_counts_every_match_and_limit_zero_lists_nothing(tmp_path: Path) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 10_000))
    _populate(tasks)
    items, total = tasks.list_node("pve1", start=1, limit=2)
    assert len(items) == 2 and total == 6
    items, total = tasks.list_node("pve1", limit=0)
    assert items == [] and total == 6


def test_listing_items_split_token_user(tmp_path: Path) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 10_000))
    upids = _populate(tasks)
    item = tasks.list_node("pve1", typefilter="imgdel")[0][0]
    assert item["upid"] == upids[2]
    assert item["user"] == "vzkeep@pve" and item["tokenid"] == "ci"
    assert set(item) == {"upid", "node", "pid", "pstart", "starttime", "type", "id", "user", "tokenid",
                         "endtime", "status"}


def test_bad_source_is_a_param_error(tmp_path: Path) -> None:
    with pytest.raises(ParamError) as err:
        store(tmp_path).list_node("pve1", source="everything")
    assert err.value.status == 400 and "source" in err.value.errors


@pytest.mark.parametrize(
    ("upid", "message"),
    [
        ("nonsense", "unable to parse worker upid"),
        ("UPID:pve1:00001234:00C4D5E6:65A1B2C3:vzdump::root@pam:", "no such task"),
    ],
)
def test_status_and_log_errors(tmp_path: Path, upid: str, message: str) -> None:
    tasks = store(tmp_path)
    for call in (lambda: tasks.status("pve1", upid), lambda: tasks.log("pve1", upid)):
        with pytest.raises(ParamError) as err:
            call()
        assert err.value.errors == {"upid": message}


def test_log_paging_like_dump_logfile(tmp_path: Path) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 100))
    task = tasks.start("pve1", "vzdump", "100", "root@pam", T0)
    for i in range(60):
        task.log(f"INFO: line {i}")
    task.finish(T0 + 1)
    lines, total = tasks.log("pve1", task.upid)
    assert total == 61 and len(lines) == 50
    assert lines[0] == {"n": 1, "t": "INFO: line 0"}
    lines, _ = tasks.log("pve1", task.upid, start=58, limit=10)
    assert lines == [{"n": 59, "t": "INFO: line 58"}, {"n": 60, "t": "INFO: line 59"}, {"n": 61, "t": "TASK OK"}]
    lines, _ = tasks.log("pve1", task.upid, limit=0)
    assert len(lines) == 61


def test_empty_log_reads_no_content(tmp_path: Path) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 100))
    task = tasks.start("pve1", "vzdump", "", "root@pam", T0)
    task.abort(T0)
    assert tasks.log("pve1", task.upid) == ([{"n": 1, "t": "no content"}], 1)
    assert tasks.status("pve1", task.upid)["exitstatus"] == "unable to read tail (got 0 bytes)"


def test_persisted_across_reopen_and_pids_keep_increasing(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1000)
    first = store(tmp_path, clock)
    upids = _populate(first)
    again = store(tmp_path, clock)
    assert [i["upid"] for i in again.list_node("pve1")[0]] == upids[::-1]
    new = again.start("pve1", "vzdump", "", "root@pam", T0)
    assert new.info.pid > max(decode_upid(u).pid for u in upids)


def test_cluster_listing_running_plus_newest_finished_up_to_25(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 10_000)
    tasks = store(tmp_path, clock)
    for i in range(30):
        tasks.start("pve1", "vzdump", "", "root@pam", T0 + i).finish(T0 + i + 1)
    running = tasks.start("pve1", "vzdump", "", "root@pam", T0 + 9_999)
    running.finish(T0 + 20_000)
    other = tasks.start("pve2", "imgdel", "", "root@pam", T0)
    other.finish(T0 + 1)
    items = tasks.list_cluster(["pve1", "pve2"])
    pve1 = [i for i in items if i["node"] == "pve1"]
    assert len(pve1) == 25
    assert pve1[0]["upid"] == running.upid and "pid" in pve1[0] and "endtime" not in pve1[0]
    assert all("endtime" in i and "pid" not in i for i in pve1[1:])
    assert pve1[-1]["starttime"] == T0 + 6  # the 24 newest finished ones
    assert [i["upid"] for i in items if i["node"] == "pve2"] == [other.upid]


def test_memory_and_index_stay_bounded(tmp_path: Path) -> None:
    tasks = store(tmp_path, FakeClock(T0 + 10_000), max_records=10)
    for i in range(25):
        tasks.start("pve1", "vzdump", "", "root@pam", T0 + i).finish(T0 + i)
    assert len(tasks.records("pve1")) == 10
    assert len((tmp_path / "tasks" / "pve1" / "index").read_text().splitlines()) <= 11
    assert tasks.list_node("pve1")[1] == 10
