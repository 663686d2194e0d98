"""`vzkeep restore` against the sandbox: the happy paths and every fault of issue 6.

Each test starts its own sandbox (default seed: pve1/pve2, prod/lab/monitoring) and lets the scheduled
jobs run for a simulated day or two, so real archives exist; the CLI runs in-process with stdin that is
not a terminal, while a clock pump lets PVE's tasks end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import invoke, sandbox_cli, with_backups
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from vzkeep.backups import Backup
from vzkeep.errors import ExitStatus
from vzkeep.restore import RestoreError, backup_stamp, choose_backup, node_timezone, parse_time

RESTORE_TASKS = ("qmrestore", "vzrestore")


def restore_tasks(sb: RunningSandbox) -> list[str]:
    return [r.upid for node in sb.sandbox.cluster.nodes for r in sb.sandbox.tasks.records(node)
            if r.info.type in RESTORE_TASKS]


def backups_of(sb: RunningSandbox, storage: str, vmid: int) -> list[dict]:
    """Newest first, as PVE lists them."""
    items = sb.client().get(f"nodes/pve1/storage/{storage}/content", content="backup", vmid=vmid)
    return sorted(items, key=lambda i: i["ctime"], reverse=True)


def restore(sb: RunningSandbox, tmp_path: Path, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return invoke(sb, ["restore", *args], str(tmp_path / "state"), stdin=stdin)


def as_doc(result) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(result.stdout)


# -- happy paths --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vmid", "kind"), [(101, "qemu"), (100, "lxc")], ids=["vm", "ct"])
def test_deleted_guest_comes_back_identical_with_its_pool(tmp_path: Path, vmid: int, kind: str) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        digest = sb.sandbox.disk_digest(vmid)
        sb.sandbox.delete_guest(vmid)
        result = restore(sb, tmp_path, str(vmid), "--json")
        doc = as_doc(result)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert doc["ok"] and doc["precheck"]["ran"] and doc["precheck"]["ok"]
        assert doc["exitstatus"] == "OK" and doc["node"] == "pve1" and doc["type"] == kind
        guest = sb.sandbox.cluster.guests[vmid]
        assert sb.sandbox.disk_digest(vmid) == digest
        assert guest.pool == "prod"  # back under its environment's backup job
        assert guest.status == "stopped"


def test_start_waits_until_running_and_reports_elapsed_time(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        result = restore(sb, tmp_path, "traefik", "--vmid", "5100", "--start")
        assert result.exit_code == 0, result.stderr
        assert sb.sandbox.cluster.guests[5100].status == "running"
        assert "CT 5100 is running" in result.stderr
        assert "restored CT 5100 on node pve1 in " in result.stderr
        assert "pre-check: backup-prod:backup/vzdump-lxc-100-" in result.stderr and "is sound" in result.stderr


def test_from_time_picks_the_newest_backup_at_or_before_it(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb, days=2)
        newest, older = backups_of(sb, "backup-prod", 101)[:2]
        day = older["volid"].split("-qemu-101-")[1][:10].replace("_", "-")
        result = restore(sb, tmp_path, "101", "--from", day, "--vmid", "5101", "--json")
        assert result.exit_code == 0, result.stdout
        assert as_doc(result)["volid"] == older["volid"] != newest["volid"]


def test_restores_onto_another_node_from_the_shared_offsite_storage(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb, days=8)  # the offsite job runs on Sundays
        (offsite, *_) = backups_of(sb, "offsite-prod", 101)
        sb.sandbox.node_down("pve1")
        sb.sandbox.delete_guest(101)
        result = restore(sb, tmp_path, "postgres", "--from", offsite["volid"], "--json")
        assert result.exit_code == 0, result.stdout
        assert as_doc(result)["node"] == "pve2"  # the original node is down: a node that sees the NAS
        assert sb.sandbox.cluster.guests[101].node == "pve2"


def test_dry_run_prints_the_calls_and_changes_nothing(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        (newest, *_) = backups_of(sb, "backup-prod", 104)
        result = restore(sb, tmp_path, "home-assistant", "--vmid", "5104", "--start", "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert f"POST /nodes/pve1/qemu vmid=5104 archive={newest['volid']}" in result.stdout
        assert "POST /nodes/pve1/qemu/5104/status/start" in result.stdout
        assert restore_tasks(sb) == [] and 5104 not in sb.sandbox.cluster.guests


def test_force_with_yes_replaces_a_stopped_guest(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        backed_up = sb.sandbox.disk_digest(200)
        sb.sandbox.touch_disk(200)
        result = restore(sb, tmp_path, "k3s-test", "--force", "--yes")
        assert result.exit_code == 0, result.stderr
        assert sb.sandbox.disk_digest(200) == backed_up
        assert sb.sandbox.cluster.guests[200].pool == "lab"


# -- refusals and faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    description: str
    args: tuple[str, ...]
    code: int
    message: str


REFUSALS = [
    Refusal("unknown guest name", ("no-such-guest",), 2, "unknown guest 'no-such-guest'"),
    Refusal("unknown vmid", ("4242",), 2, "unknown guest 4242"),
    Refusal("name close to a real one", ("postgre",), 2, "did you mean postgres?"),
    Refusal("vmid in use, no --force", ("200",), 2, "VM 200 (k3s-test) already exists on node 'pve2'"),
    Refusal("--vmid of another guest", ("101", "--vmid", "102"), 2, "VM 102 (nextcloud) already exists"),
    Refusal("--force on a running guest", ("101", "--force", "--yes"), 2, "stop it first (qm stop 101)"),
    Refusal("--force needs a confirmation", ("200", "--force"), 2, "there is no terminal to ask: re-run with --yes"),
    Refusal("storage invisible from the node", ("prometheus", "--vmid", "5300", "--node", "pve2"), 2,
            "storage 'backup-monitoring' is not available on node 'pve2'"),
    Refusal("unknown node", ("101", "--vmid", "5101", "--node", "pve9"), 2, "--node pve9: no such node"),
    Refusal("bad --from", ("101", "--from", "yesterday"), 2, "--from 'yesterday': expected latest, a time"),
    Refusal("--from before every backup", ("101", "--vmid", "5101", "--from", "2001-01-01"), 2,
            "has no backup at or before that time"),
]


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One sandbox for the refusals: each of them must leave it unchanged, which the test checks."""
    with running_sandbox(tmp_path_factory.mktemp("refusals")) as sb:
        with_backups(sb)
        yield sb


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.description)
def test_refusals_name_the_problem_and_change_nothing(shared_sandbox: RunningSandbox, tmp_path: Path,
                                                     case: Refusal) -> None:
    sb = shared_sandbox
    guests_before = set(sb.sandbox.cluster.guests)
    result = restore(sb, tmp_path, *case.args)
    assert result.exit_code == case.code, result.stderr
    assert case.message in result.stderr
    assert restore_tasks(sb) == [] and set(sb.sandbox.cluster.guests) == guests_before


@pytest.mark.parametrize("how", ["flip", "truncate", "zero"])
@pytest.mark.parametrize(("vmid", "storage"), [(101, "backup-prod"), (100, "backup-prod")], ids=["vma.zst", "tar.zst"])
def test_corrupt_archive_stops_before_pve_writes_and_offers_the_older_good_one(
        tmp_path: Path, how: str, vmid: int, storage: str) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb, days=2)
        newest, older = backups_of(sb, storage, vmid)[:2]
        sb.sandbox.corrupt(newest["volid"], how)
        result = restore(sb, tmp_path, str(vmid), "--vmid", "5000", "--json")
        doc = as_doc(result)
        assert result.exit_code == 1
        assert doc["precheck"]["ran"] and not doc["precheck"]["ok"] and doc["precheck"]["problems"]
        assert f"{newest['volid']} is corrupt" in doc["error"]
        assert doc["next_good"]["volid"] == older["volid"]
        assert f"--from {older['volid']}" in doc["error"]
        assert restore_tasks(sb) == [] and 5000 not in sb.sandbox.cluster.guests
        # the offered backup restores
        again = restore(sb, tmp_path, str(vmid), "--vmid", "5000", "--from", older["volid"])
        assert again.exit_code == 0, again.stderr


@pytest.mark.parametrize(("lock", "left_behind", "says"), [
    (None, False, "removed the half-made VM 5101"),
    ("create", True, "could NOT be removed"),  # PVE's cleanup could not write /etc/pve: `lock: create` stays
])
def test_pve_failing_midway_is_reported_and_leaves_no_half_made_guest(
        tmp_path: Path, lock: str | None, left_behind: bool, says: str) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        # lock=create: PVE's cleanup after the failure cannot write /etc/pve, so `lock: create` stays
        sandbox_cli(sb, "fault", "restore-midway", "--count", "1", *(["--no-cleanup"] if lock else []))
        result = restore(sb, tmp_path, "101", "--vmid", "5101")
        assert result.exit_code == 1
        assert "PVE's restore task failed: command 'set -o pipefail && zstd" in result.stderr
        assert "pve: vma: restore failed - short vma extent" in result.stderr
        assert says in result.stderr
        assert (5101 in sb.sandbox.cluster.guests) is left_behind
        if left_behind:
            assert "qm unlock 5101 && qm destroy 5101 --purge" in result.stderr


def test_pve_failing_over_an_existing_guest_does_not_destroy_it(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        sandbox_cli(sb, "fault", "restore-midway", "--count", "1")
        result = restore(sb, tmp_path, "200", "--force", "--yes", "--json")
        assert result.exit_code == 1 and as_doc(result)["cleanup"] is None
        assert 200 in sb.sandbox.cluster.guests  # it was there before: not ours to delete


# -- choosing a backup (no sandbox) --------------------------------------------------------------------------


def make_backup(name: str, ctime: int) -> Backup:
    return Backup(volid=f"s:backup/{name}", storage="s", vmid=101, guest_type="qemu", ctime=ctime, size=1,
                  format="vma.zst", notes=None, protected=False, nodes=("pve1",), shared=False)


NEWEST_FIRST = [make_backup("vzdump-qemu-101-2026_01_07-02_00_00.vma.zst", 3),
                make_backup("vzdump-qemu-101-2026_01_06-02_00_00.vma.zst", 2),
                make_backup("vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", 1)]


@pytest.mark.parametrize(("source", "expected"), [
    ("latest", "2026_01_07"),
    ("2026-01-06", "2026_01_06"),  # a day means the end of that day
    ("2026-01-06 01:59", "2026_01_05"),
    ("2026-01-06T02:00", "2026_01_06"),
    ("2026_01_06-02_00_00", "2026_01_06"),
    ("2030-01-01", "2026_01_07"),
    ("s:backup/vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", "2026_01_05"),
])
def test_choose_backup(source: str, expected: str) -> None:
    assert expected in choose_backup(NEWEST_FIRST, source, 101).volid


@pytest.mark.parametrize("source", ["2026-01-04", "s:backup/vzdump-qemu-999-2026_01_05-02_00_00.vma.zst", "soon"])
def test_choose_backup_refuses(source: str) -> None:
    with pytest.raises(RestoreError) as err:
        choose_backup(NEWEST_FIRST, source, 101)
    assert err.value.status == ExitStatus.USAGE


def test_parse_time_and_stamp_agree() -> None:
    assert backup_stamp(NEWEST_FIRST[0]) == parse_time("2026-01-07 02:00:00")


@pytest.mark.parametrize(("name", "ctime", "zone"), [
    ("vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", 1767574800, "Etc/GMT-1"),  # Paris in winter: UTC+1
    ("vzdump-qemu-101-2026_07_05-02_00_00.vma.zst", 1783209600, "Etc/GMT-2"),  # summer: UTC+2
    ("vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", 1767578400, "UTC"),
    ("vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", 1767596400, "Etc/GMT+5"),  # New York
    ("vzdump-qemu-101-2026_01_05-02_00_00.vma.zst", 1767576600, None),  # not whole hours
])
def test_node_timezone_from_pves_reading_of_the_name(name: str, ctime: int, zone: str | None) -> None:
    assert node_timezone(make_backup(name, ctime)) == zone
