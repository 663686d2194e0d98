"""pvescheduler in the sandbox (pve-manager ``PVE/Service/pvescheduler.pm``,
``PVE/Jobs.pm``): when jobs run, per node, and what a node
outage, a restart, an edit or repeat-missed do to the next run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.waits import wait_until
from vzkeep.pve.localtime import LocalClock
from vzkeep.sandbox.clock import Clock
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage
from vzkeep.sandbox.scheduler import minute_ceil, vzdump_params
from vzkeep.sandbox.settings import Settings

T0 = 1749513600  # 2025-06-10 00:00 UTC = 02:00 in Europe/Paris
TZ = "Europe/Paris"
DAY = 86400


def make_sandbox(tmp_path: Path, nodes: tuple[str, ...] = ("pve1",), **job: object) -> Sandbox:
    cluster = Cluster(name="homelab")
    for name in nodes:
        cluster.nodes[name] = Node(name, timezone=TZ)
    cluster.storages["nas"] = Storage("nas", "nfs", str(tmp_path / "nas"), shared=True)
    cluster.pools["prod"] = Pool("prod")
    for i, node in enumerate(nodes):
        cluster.guests[100 + i] = Guest(100 + i, f"g{i}", "qemu", node, pool="prod", disk_bytes=1024**3)
    cluster.jobs["vzkeep-prod"] = {"type": "vzdump", "id": "vzkeep-prod", "schedule": "21:00", "pool": "prod",
                                   "storage": "nas", "enabled": 1, **job}
    cluster.clock_epoch = T0
    return Sandbox.create(tmp_path / "state", cluster, stepped=True, settings=Settings())


def runs(sb: Sandbox, node: str = "pve1") -> list[str]:
    """Local start times of the node's vzdump tasks, oldest first."""
    clock = LocalClock(TZ)
    items = sb.tasks.list_node(node, typefilter="vzdump", source="all", limit=1000)[0]
    return sorted(clock.strftime("%m-%d %H:%M", i["starttime"]) for i in items)


def test_daily_job_runs_at_its_local_time_every_day(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    started = sb.advance(3 * DAY)
    assert runs(sb) == ["06-10 21:00", "06-11 21:00", "06-12 21:00"]
    assert len(started) == 3
    assert len(sb.listing("nas", "pve1")) == 3
    assert sb.cluster.job_state["vzkeep-prod"]["pve1"]["state"] == "started"


def test_scheduled_task_runs_as_root_with_quiet(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    (upid,) = sb.advance(DAY)
    assert upid.endswith(":vzdump:100:root@pam:")
    assert sb.tasks.log_lines(upid)[0] == "INFO: starting new backup job: vzdump --pool prod --storage nas --quiet 1"


def test_vzdump_params_drop_job_only_options() -> None:
    job = {"type": "vzdump", "id": "j", "schedule": "daily", "enabled": 1, "repeat-missed": 1, "comment": "c",
           "pool": "prod", "storage": "nas", "prune-backups": "keep-last=3"}
    assert vzdump_params("j", job) == {"pool": "prod", "storage": "nas", "prune-backups": "keep-last=3", "quiet": 1}


def test_disabled_job_never_runs(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, enabled=0)
    assert sb.advance(3 * DAY) == [] and runs(sb) == []


def test_job_without_node_runs_on_every_node_for_its_local_guests(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, nodes=("pve1", "pve2"))
    started = sb.advance(DAY)
    assert len(started) == 2
    by_node = {u.split(":")[1]: u for u in started}
    assert "INFO: skip external VMs: 101" in sb.tasks.log_lines(by_node["pve1"])
    assert "INFO: skip external VMs: 100" in sb.tasks.log_lines(by_node["pve2"])
    assert sorted(i["vmid"] for i in sb.listing("nas", "pve1")) == [100, 101]


def test_job_with_node_runs_only_there(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, nodes=("pve1", "pve2"), node="pve2")
    sb.advance(DAY)
    assert runs(sb, "pve1") == [] and runs(sb, "pve2") == ["06-10 21:00"]


def test_node_down_means_no_run_and_missed_runs_are_dropped(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.node_down("pve1")
    sb.advance(DAY)  # 21:00 passes while the node is off
    sb.node_up("pve1")  # 02:00 next day: the scheduler restarts, repeat-missed=0
    sb.advance(DAY)
    assert runs(sb) == ["06-11 21:00"]


def test_repeat_missed_runs_once_as_soon_as_the_node_is_back(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, **{"repeat-missed": 1})
    sb.node_down("pve1")
    sb.advance(3 * DAY + 30)  # three missed slots
    sb.node_up("pve1")
    sb.advance(DAY)
    # once at the next minute boundary, not three times; then back on schedule
    assert runs(sb) == ["06-13 02:01", "06-13 21:00"]


def test_restart_drops_missed_runs_unless_repeat_missed(tmp_path: Path) -> None:
    for repeat, expected in ((0, ["06-12 21:00"]), (1, ["06-12 02:00", "06-12 21:00"])):
        root = tmp_path / f"r{repeat}"
        sb = make_sandbox(root, **{"repeat-missed": repeat})
        sb.jobs_changed()
        # the sandbox is stopped for two days: its clock persisted, then jumps forward on reopen
        sb.cluster.clock_epoch = T0 + 2 * DAY
        sb.cluster.save(root / "state" / "cluster.json")
        reopened = Sandbox.open(root / "state", stepped=True)
        reopened.advance(DAY)
        assert runs(reopened) == expected, f"repeat-missed={repeat}"


def test_changing_the_schedule_does_not_trigger_an_immediate_run(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, schedule="mon 21:00")  # 2025-06-10 is a Tuesday
    sb.advance(DAY)
    assert runs(sb) == []
    # an old `time` would make the new schedule overdue; the edit stamps `updated = now` instead
    sb.cluster.job_state["vzkeep-prod"]["pve1"]["time"] = T0 - 30 * DAY
    sb.cluster.jobs["vzkeep-prod"]["schedule"] = "02:30"
    sb.jobs_changed()
    assert sb.cluster.job_state["vzkeep-prod"]["pve1"]["updated"] == T0 + DAY
    sb.advance(3600)
    assert runs(sb) == ["06-11 02:30"]


def test_new_job_first_runs_at_its_next_event(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.advance(600)
    sb.cluster.jobs["hourly"] = {"type": "vzdump", "id": "hourly", "schedule": "hourly", "vmid": "100",
                                 "storage": "nas", "enabled": 1}
    sb.jobs_changed()
    sb.advance(2 * 3600)
    starts = [LocalClock(TZ).strftime("%H:%M", i["starttime"])
              for i in sb.tasks.list_node("pve1", limit=100)[0] + sb.tasks.list_node("pve1", source="active")[0]]
    assert sorted(starts) == ["03:00", "04:00"]


def test_overrunning_job_is_not_started_twice_and_runs_once_after(tmp_path: Path) -> None:
    cluster_job = {"schedule": "*:0/30"}  # every 30 minutes
    sb = make_sandbox(tmp_path, **cluster_job)
    sb.settings.throughput = 1024**3 / 3000  # 1 GiB takes 50 minutes
    sb.advance(2 * 3600)
    # 02:30 starts and runs until 03:20:00; 03:00 is skipped while it runs; the scheduler's 03:20
    # pass sees it ended and the overdue 03:00 event fires at once; the next is then 03:30 + 50 min
    assert runs(sb) == ["06-10 02:30", "06-10 03:20"]


def test_advance_jumps_event_to_event(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    calls = 0
    real_due = sb.scheduler.due

    def counting(*args):
        nonlocal calls
        calls += 1
        return real_due(*args)

    sb.scheduler.due = counting  # type: ignore[method-assign]
    sb.advance(30 * DAY)
    assert len(runs(sb)) == 30
    assert calls < 200  # a minute-by-minute loop would need 43,200 evaluations


@pytest.mark.parametrize(("t", "expected"), [(120, 120), (121, 180), (179, 180), (0, 0)])
def test_minute_ceil(t: int, expected: int) -> None:
    assert minute_ceil(t) == expected


def test_ticker_runs_jobs_on_an_accelerated_clock(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.clock = Clock(T0 + 19 * 3600 - 5, speed=3600)  # 20:59:55 local, one simulated hour per second
    sb.tasks.now = sb.clock.now
    sb._last_tick = sb.clock.time()
    sb.start_ticker(interval=0.02)
    try:
        wait_until(lambda: runs(sb), 5, "the ticker to run a job")
    finally:
        sb.stop_ticker()
    assert runs(sb) == ["06-10 21:00"]


def test_clock_modes() -> None:
    stepped = Clock(1000, stepped=True)
    assert stepped.now() == 1000 and stepped.mode == "stepped"
    stepped.advance(60)
    stepped.set(500)  # never backwards
    assert stepped.now() == 1060
    fast = Clock(1000, speed=1000)
    time.sleep(0.01)
    assert fast.now() > 1005 and fast.mode == "speed x1000"
    with pytest.raises(ValueError):
        Clock(0, speed=0)
    with pytest.raises(ValueError):
        stepped.advance(-1)
