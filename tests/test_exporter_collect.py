"""The exporter's poll against a running sandbox (the PVE API over HTTPS, read with the auditor token).

Scenario of the shared sandbox: the default seed (prod on pve1+pve2, lab, monitoring, guest 900 in no pool),
guest 101 (postgres, prod, pve1) locked, one simulated day: every job runs once; on pve1 the prod job is one
multi-guest task for 100, 101 and 104, in which 101 fails. Expected values come from the sandbox's own
engine (its storage listing, its task store), never from the exporter.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.metrics import samples, value
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from vzkeep.exporter import Poller, proxmoxer_get
from vzkeep.exporter.jobs import match_job
from vzkeep.exporter.metrics import render
from vzkeep.exporter.snapshot import StateInfo
from vzkeep.pve.tasklog import parse_command_line, parse_task_log
from vzkeep.pve.upid import decode_upid
from vzkeep.verify import ResultStore, VerifyResult

DAY = 86400
LOCKED = 101  # postgres, prod, pve1
SAME_TASK_OK = (100, 104)  # backed up by the same pve1 task as 101

# The contract of issue 5 item 2: every name and its label set.
CONTRACT = {
    "vzkeep_up": set(),
    "vzkeep_poll_timestamp_seconds": set(),
    "vzkeep_poll_duration_seconds": set(),
    "vzkeep_poll_errors_total": set(),
    "vzkeep_guest_info": {"env", "vmid", "name", "type", "node"},
    "vzkeep_guest_covered": {"env", "vmid"},
    "vzkeep_backup_last_success_timestamp_seconds": {"env", "vmid", "storage"},
    "vzkeep_backup_last_size_bytes": {"env", "vmid", "storage"},
    "vzkeep_backup_archives": {"env", "vmid", "storage"},
    "vzkeep_backup_last_attempt_timestamp_seconds": {"env", "vmid"},
    "vzkeep_backup_last_status": {"env", "vmid"},
    "vzkeep_job_info": {"job", "env", "schedule", "storage"},
    "vzkeep_job_enabled": {"job"},
    "vzkeep_job_next_run_timestamp_seconds": {"job"},
    "vzkeep_job_last_run_timestamp_seconds": {"job"},
    "vzkeep_job_last_status": {"job"},
    "vzkeep_job_expected_interval_seconds": {"job"},
    "vzkeep_job_guests": {"job"},
    "vzkeep_job_guests_listed": {"job"},
    "vzkeep_storage_size_bytes": {"storage", "node"},
    "vzkeep_storage_used_bytes": {"storage", "node"},
    "vzkeep_env_backup_bytes": {"env", "storage"},
    "vzkeep_backup_verified_timestamp_seconds": {"env", "vmid", "storage"},
    "vzkeep_backup_verify_ok": {"env", "vmid", "storage"},
    "vzkeep_state_versioning_enabled": set(),
    "vzkeep_state_last_write_timestamp_seconds": {"stack"},
}


class CountingGet:
    """The exporter's read seam over proxmoxer, recording every API call (path, params)."""

    def __init__(self, api: Any) -> None:
        self.inner = proxmoxer_get(api)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: str, **params: Any) -> Any:
        self.calls.append((path, dict(params)))
        return self.inner(path, **params)

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("exporter-collect")) as sb:
        sb.grant_exporter_role()  # PVEAuditor alone sees no backup volume (Storage.pm check_volume_access)
        sb.sandbox.lock_guest(LOCKED, "backup")
        sb.advance(DAY)
        yield sb


@pytest.fixture(scope="module")
def polled(scenario: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One poll with the read-only auditor token, a verify results file and a fake state bucket reader."""
    results = tmp_path_factory.mktemp("verify") / "verify.json"
    newest_100 = max(scenario.sandbox.listing("backup-prod", "pve1", vmid=100), key=lambda e: e["ctime"])
    ResultStore(results).save(
        [
            VerifyResult(
                path="/x",
                ok=False,
                problems=["bad"],
                sha256="0" * 64,
                size=1,
                mtime=1.0,
                verified_at=1_700_000_000,
                format="tar",
                compression="zst",
                bytes_read=1,
                volid=newest_100["volid"],
                vmid=100,
            )
        ]
    )
    get = CountingGet(scenario.api(read_only=True))
    poller = Poller(
        get, verify_results=results, state_reader=lambda: StateInfo(True, {"prod": 1_700_000_100.0})
    )
    snapshot = poller.poll()
    return {
        "get": get,
        "poller": poller,
        "snapshot": snapshot,
        "found": samples(render(snapshot)),
        "verified": newest_100,
    }


def test_every_metric_of_the_contract_is_published_with_its_labels(polled: dict[str, Any]) -> None:
    found = polled["found"]
    assert polled["snapshot"].up, polled["snapshot"].failed_parts
    for name, labels in CONTRACT.items():
        assert found.get(name), f"{name} is missing"
        for label_set in found[name]:
            assert {k for k, _ in label_set} == labels, f"{name} has labels {sorted(label_set)}"


def test_last_success_size_and_count_match_the_storage_content(
    scenario: RunningSandbox, polled: dict[str, Any]
) -> None:
    found = polled["found"]
    # backup-prod is a dir storage: each node holds its own guests' archives
    listing = scenario.sandbox.listing("backup-prod", "pve1") + scenario.sandbox.listing("backup-prod", "pve2")
    by_vmid = collections.defaultdict(list)
    for entry in listing:
        by_vmid[entry["vmid"]].append(entry)
    assert set(by_vmid) == {100, 102, 103, 104}, "the locked guest has no archive"
    for vmid, entries in by_vmid.items():
        newest = max(entries, key=lambda e: e["ctime"])
        labels = {"env": "prod", "vmid": str(vmid), "storage": "backup-prod"}
        assert value(found, "vzkeep_backup_last_success_timestamp_seconds", **labels) == newest["ctime"]
        assert value(found, "vzkeep_backup_last_size_bytes", **labels) == newest["size"]
        assert value(found, "vzkeep_backup_archives", **labels) == len(entries)
    assert value(found, "vzkeep_env_backup_bytes", env="prod", storage="backup-prod") == sum(
        e["size"] for e in listing
    )


def test_a_covered_guest_without_archive_gets_a_zero_timestamp(polled: dict[str, Any]) -> None:
    labels = {"env": "prod", "vmid": str(LOCKED), "storage": "backup-prod"}
    assert value(polled["found"], "vzkeep_backup_last_success_timestamp_seconds", **labels) == 0
    assert value(polled["found"], "vzkeep_backup_archives", **labels) == 0


def test_a_locked_guest_fails_alone_inside_a_multi_guest_job_task(
    scenario: RunningSandbox, polled: dict[str, Any]
) -> None:
    found = polled["found"]
    failed = next(a for a in polled["snapshot"].attempts if a.vmid == LOCKED)
    assert decode_upid(failed.upid).id == "", "the prod job on pve1 must be one multi-guest task"
    assert "locked" in (failed.error or "")
    assert value(found, "vzkeep_backup_last_status", env="prod", vmid=str(LOCKED)) == 0
    for vmid in SAME_TASK_OK:
        attempt = next(a for a in polled["snapshot"].attempts if a.vmid == vmid)
        assert attempt.upid == failed.upid
        assert value(found, "vzkeep_backup_last_status", env="prod", vmid=str(vmid)) == 1
    assert value(found, "vzkeep_job_last_status", job="vzkeep-prod") == 0
    assert value(found, "vzkeep_job_last_status", job="vzkeep-lab") == 1


def test_attempt_times_lie_within_their_task(scenario: RunningSandbox, polled: dict[str, Any]) -> None:
    tasks = {
        t["upid"]: t
        for node in ("pve1", "pve2")
        for t in scenario.api().nodes(node).tasks.get(typefilter="vzdump", limit=100)
    }
    for attempt in polled["snapshot"].attempts:
        task = tasks[attempt.upid]
        assert task["starttime"] <= attempt.timestamp <= task["endtime"], attempt
    # Guests of one task end one after another, so they do not all share the task's end time.
    in_task = sorted(a.timestamp for a in polled["snapshot"].attempts if a.vmid in (100, 104))
    assert in_task[0] < in_task[1]


def test_guest_in_no_job_is_not_covered(polled: dict[str, Any]) -> None:
    found = polled["found"]
    assert value(found, "vzkeep_guest_covered", env="", vmid="900") == 0
    covered = {dict(k)["vmid"]: v for k, v in found["vzkeep_guest_covered"].items()}
    assert {vmid for vmid, v in covered.items() if v == 1} == {
        "100",
        "101",
        "102",
        "103",
        "104",
        "200",
        "201",
        "300",
        "301",
        "302",
    }
    assert (
        value(found, "vzkeep_guest_info", env="prod", vmid="101", name="postgres", type="qemu", node="pve1")
        == 1
    )


def test_jobs_carry_schedule_storage_env_and_runs(scenario: RunningSandbox, polled: dict[str, Any]) -> None:
    found = polled["found"]
    jobs = {j["id"]: j for j in scenario.api().cluster.backup.get()}
    for job_id, job in jobs.items():
        assert (
            value(
                found,
                "vzkeep_job_info",
                job=job_id,
                env=job["pool"],
                schedule=job["schedule"],
                storage=job["storage"],
            )
            == 1
        )
        assert value(found, "vzkeep_job_next_run_timestamp_seconds", job=job_id) == job["next-run"]
    assert value(found, "vzkeep_job_expected_interval_seconds", job="vzkeep-prod") == DAY
    assert value(found, "vzkeep_job_expected_interval_seconds", job="vzkeep-prod-offsite") == 7 * DAY
    prod_starts = [
        t["starttime"]
        for node in ("pve1", "pve2")
        for t in scenario.api().nodes(node).tasks.get(typefilter="vzdump", limit=100)
        if "--pool prod" in _first_line(scenario, node, t["upid"])
        and "backup-prod" in _first_line(scenario, node, t["upid"])
    ]
    assert value(found, "vzkeep_job_last_run_timestamp_seconds", job="vzkeep-prod") == max(prod_starts)
    # The weekly offsite job has not run in one day: no last-run series, so "never ran" stays visible.
    assert frozenset({("job", "vzkeep-prod-offsite")}) not in found["vzkeep_job_last_run_timestamp_seconds"]


def _first_line(sb: RunningSandbox, node: str, upid: str) -> str:
    return " ".join(line["t"] for line in sb.api().nodes(node).tasks(upid).log.get(limit=3))


def test_storage_metrics_match_cluster_resources(scenario: RunningSandbox, polled: dict[str, Any]) -> None:
    found = polled["found"]
    entries = [r for r in scenario.api().cluster.resources.get(type="storage") if "backup" in r["content"]]
    assert entries
    for entry in entries:
        labels = {"storage": entry["storage"], "node": entry["node"]}
        assert value(found, "vzkeep_storage_size_bytes", **labels) == entry["maxdisk"]
        assert value(found, "vzkeep_storage_used_bytes", **labels) == entry["disk"]


def test_verify_and_state_metrics_come_from_their_inputs(polled: dict[str, Any]) -> None:
    found = polled["found"]
    labels = {"env": "prod", "vmid": "100", "storage": "backup-prod"}
    assert value(found, "vzkeep_backup_verified_timestamp_seconds", **labels) == 1_700_000_000
    assert value(found, "vzkeep_backup_verify_ok", **labels) == 0
    assert len(found["vzkeep_backup_verify_ok"]) == 1, "only archives with a result are published"
    assert value(found, "vzkeep_state_versioning_enabled") == 1
    assert value(found, "vzkeep_state_last_write_timestamp_seconds", stack="prod") == 1_700_000_100


def test_each_task_log_is_read_once_across_polls(scenario: RunningSandbox, polled: dict[str, Any]) -> None:
    get, poller = polled["get"], polled["poller"]
    poller.poll()
    poller.poll()
    logs = [p for p in get.paths() if p.endswith("/log")]
    assert logs, "multi-guest job tasks need their log"
    assert len(logs) == len(set(logs)), collections.Counter(logs).most_common(3)
    task_count = sum(
        len(scenario.api().nodes(n).tasks.get(typefilter="vzdump", limit=100)) for n in ("pve1", "pve2")
    )
    assert len(logs) == task_count


def test_the_exporter_needs_only_the_auditor_token(polled: dict[str, Any]) -> None:
    # The fixture polled with the auditor token (PVEAuditor plus the backup-listing privileges): every part
    # succeeded.
    assert polled["snapshot"].failed_parts == ()


def _steady_calls(sb: RunningSandbox) -> tuple[int, int]:
    """(calls of a poll right after a day of backups, calls of the next poll with nothing new)."""
    poller = Poller(CountingGet(sb.api(read_only=True)))
    poller.poll()
    sb.advance(DAY)
    get = CountingGet(sb.api(read_only=True))
    poller.get = get
    poller.poll()
    after_day = len(get.calls)
    get.calls.clear()
    poller.poll()
    return after_day, len(get.calls)


def _add_guests(sb: RunningSandbox, count: int) -> None:
    for i in range(count):
        node, pool = ("pve1", "prod") if i % 2 else ("pve2", "lab")
        sb.app.call(
            "POST",
            "/guests",
            {
                "vmid": 1000 + i,
                "name": f"extra{i}",
                "type": "lxc",
                "node": node,
                "pool": pool,
                "disk_gb": 0.01,
            },
            router=sb.app.control,
        )


def test_api_calls_per_poll_do_not_grow_with_guests(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "few") as sb:
        sb.grant_exporter_role()
        guests_before = len(sb.sandbox.cluster.guests)
        few = _steady_calls(sb)
    with running_sandbox(tmp_path / "many") as sb:
        sb.grant_exporter_role()
        _add_guests(sb, 40)
        assert len(sb.sandbox.cluster.guests) == guests_before + 40
        many = _steady_calls(sb)
    assert many == few
    # Steady state: resources, jobs, not-backed-up, the cluster's time, the token's permissions; one task list
    # per node; one listing per (storage, node), the shared offsite storage once:
    # 5 + 2 + (local x2, backup-prod x2, backup-lab, monitoring, offsite).
    assert few[1] == 5 + 2 + 7


# --- pure parsing, tables of named cases ------------------------------------------------------------------

MULTI_GUEST_LOG = """\
INFO: starting new backup job: vzdump --pool prod --storage backup-prod --mode snapshot --node pve1
INFO: Starting Backup of VM 100 (lxc)
INFO: Backup started at 2026-01-05 02:00:00
INFO: Finished Backup of VM 100 (00:00:21)
INFO: Backup finished at 2026-01-05 02:00:21
INFO: Starting Backup of VM 101 (qemu)
INFO: Backup started at 2026-01-05 02:00:21
ERROR: Backup of VM 101 failed - VM is locked (backup)
INFO: Failed at 2026-01-05 02:00:21
ERROR: Backup of VM 105 failed - unable to find VM '105'
INFO: Backup job finished with errors
TASK ERROR: job errors"""

LOG_CASES = [
    (
        "multi-guest job with a locked guest and an orphan",
        MULTI_GUEST_LOG,
        [(100, True, "2026-01-05 02:00:21"), (101, False, "2026-01-05 02:00:21"), (105, False, None)],
    ),
    (
        "guest started but never finished",
        "INFO: Starting Backup of VM 7 (qemu)\nTASK ERROR: interrupted by signal",
        [(7, False, None)],
    ),
    ("no guest lines at all", "ERROR: can't acquire lock '/var/run/vzdump.lock' - got timeout", []),
]


@pytest.mark.parametrize(("description", "text", "expected"), LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_parse_task_log(description: str, text: str, expected: list[tuple[int, bool, str | None]]) -> None:
    import calendar
    import time

    parsed = parse_task_log(text.splitlines())
    got = [(o.vmid, o.ok, o.local_end) for o in parsed.outcomes]
    want = [
        (v, ok, calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M:%S")) if s else None)
        for v, ok, s in expected
    ]
    assert got == want


JOBS = [
    {"id": "vzkeep-prod", "pool": "prod", "storage": "backup-prod"},
    {"id": "vzkeep-prod-offsite", "pool": "prod", "storage": "offsite-prod"},
    {"id": "some-vms", "vmid": "101,100", "storage": "local"},
    {"id": "everything-but", "all": 1, "exclude": "900", "storage": "nas"},
]
MATCH_CASES = [
    (
        "pool and storage pick the job",
        "vzdump --pool prod --storage offsite-prod --mode snapshot",
        "vzkeep-prod-offsite",
    ),
    ("vmid list in another order", "vzdump 100 101 --mode snapshot", "some-vms"),
    ("all minus exclude", "vzdump --all 1 --exclude 900 --storage nas", "everything-but"),
    ("a logged job id wins", "vzdump --pool lab --job-id vzkeep-lab", "vzkeep-lab"),
    ("a manual backup matches no job", "vzdump 100 --storage backup-prod", None),
]


@pytest.mark.parametrize(("description", "line", "expected"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_match_job(description: str, line: str, expected: str | None) -> None:
    assert match_job(parse_command_line(line), JOBS) == expected
