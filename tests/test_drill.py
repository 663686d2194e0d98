"""`vzkeep drill` against the sandbox: rehearsals succeed and are measured, network isolated, originals
untouched, failures recorded, and a drill interrupted midway leaves nothing behind on the next run."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pytest

from tests.restore_fixtures import ClockPump, invoke, sandbox_cli, with_backups
from tests.sandbox_fixtures import RunningSandbox, running_sandbox
from vzkeep.backups import collect
from vzkeep.drill import DRILL_TAG, DrillResult, DrillResultStore, isolate_network
from vzkeep.follow import Wait
from vzkeep.restore import RestoreOptions, execute, plan_restore

SCRATCH = range(9000, 9100)


def drill(sb: RunningSandbox, tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return invoke(sb, ["drill", "--json", *args], str(tmp_path / "state"))


def scratch_guests(sb: RunningSandbox) -> list[int]:
    return sorted(v for v in sb.sandbox.cluster.guests if v in SCRATCH)


def snapshot(sb: RunningSandbox, vmid: int) -> tuple:
    guest = sb.sandbox.cluster.guests[vmid]
    return (guest.node, guest.status, guest.lock, dict(guest.config), list(guest.tags), sb.sandbox.disk_digest(vmid))


def test_drill_restores_starts_measures_destroys_and_never_touches_the_originals(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        before = {v: snapshot(sb, v) for v in (200, 201)}
        result = drill(sb, tmp_path, "--env", "lab")
        assert result.exit_code == 0, result.stdout + result.stderr
        doc = json.loads(result.stdout)
        assert doc["ok"] and [d["vmid"] for d in doc["drills"]] == [200, 201]
        assert all(d["ok"] and d["duration_seconds"] > 0 and d["scratch_vmid"] in SCRATCH for d in doc["drills"])
        assert scratch_guests(sb) == []
        assert {v: snapshot(sb, v) for v in (200, 201)} == before
        untouched = {r.info.id for n in sb.sandbox.cluster.nodes for r in sb.sandbox.tasks.records(n)
                     if r.info.type in ("qmstart", "vzstart", "qmstop", "vzstop", "qmdestroy", "vzdestroy")}
        assert untouched and not untouched & {"200", "201"}
        store = DrillResultStore(tmp_path / "state" / "drills.json").load()
        assert set(store) == {("lab", 200), ("lab", 201)}
        assert all(r.ok and r.started_at > 0 and r.node == "pve2" for r in store.values())


def test_scratch_guest_gets_new_macs_links_down_and_the_drill_tag(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        client = sb.client()
        plan = plan_restore(collect(client, {}), RestoreOptions("101", vmid=9000, unique=True, pool=""))
        with ClockPump(sb):
            execute(client, plan, Wait(60))
        changed = isolate_network(client, "pve1", "qemu", 9000)
        config = client.get("nodes/pve1/qemu/9000/config")
        original = client.get("nodes/pve1/qemu/101/config")
        mac = re.compile(r"=([0-9A-F:]{17})")
        assert changed == ["net0"] and config["net0"].endswith(",link_down=1")
        assert mac.search(config["net0"]).group(1) != mac.search(original["net0"]).group(1)
        assert DRILL_TAG in config["tags"] and "link_down" not in original["net0"]


def test_drill_refuses_to_start_a_guest_whose_links_cannot_be_taken_down(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        sandbox_cli(sb, "fault", "config-update", "--count", "1")  # PVE cannot take the config lock
        result = drill(sb, tmp_path, "--guest", "dev-box")
        doc = json.loads(result.stdout)
        assert result.exit_code == 1 and not doc["ok"]
        assert "did not take the scratch guest's network links down" in doc["drills"][0]["message"]
        assert scratch_guests(sb) == []
        starts = [r for n in sb.sandbox.cluster.nodes for r in sb.sandbox.tasks.records(n) if r.info.type == "vzstart"]
        assert starts == []


def test_failed_drill_on_a_corrupt_backup_is_recorded(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        (newest,) = sb.client().get("nodes/pve1/storage/backup-monitoring/content", vmid=301)
        sb.sandbox.corrupt(newest["volid"], "flip")
        result = drill(sb, tmp_path, "--guest", "grafana")
        assert result.exit_code == 1
        record = DrillResultStore(tmp_path / "state" / "drills.json").load()[("monitoring", 301)]
        assert not record.ok and "is corrupt" in record.message and scratch_guests(sb) == []


def test_interrupted_drill_leaves_nothing_behind_on_the_next_run(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        client = sb.client()
        inventory = collect(client, {})
        store = DrillResultStore(tmp_path / "state" / "drills.json")
        # a drill killed right after PVE restored its scratch guest (before tagging it)
        store.begin(9000, vmid=201, node="pve2", type="lxc")
        with ClockPump(sb):
            execute(client, plan_restore(inventory, RestoreOptions("201", vmid=9000, unique=True, pool="")), Wait(60))
            # one killed after tagging, whose pending entry was lost; and a guest that is not ours
            execute(client, plan_restore(inventory, RestoreOptions("200", vmid=9001, unique=True, pool="")), Wait(60))
            isolate_network(client, "pve2", "qemu", 9001)
            sb.sandbox.cluster.guests[9001].status = "running"
            execute(client, plan_restore(inventory, RestoreOptions("200", vmid=9050, unique=True, pool="")), Wait(60))
        assert scratch_guests(sb) == [9000, 9001, 9050]
        result = drill(sb, tmp_path, "--guest", "201")
        doc = json.loads(result.stdout)
        assert result.exit_code == 0 and doc["removed_leftovers"] == [9000, 9001]
        assert scratch_guests(sb) == [9050]  # not tagged, not pending: someone else's
        assert doc["drills"][0]["scratch_vmid"] == 9000 and store.pending() == {}


def test_result_store_round_trip_and_damage(tmp_path: Path) -> None:
    store = DrillResultStore(tmp_path / "drills.json")
    assert store.load() == {} and store.pending() == {}
    result = DrillResult(1.5, 12.25, True, "ok", 101, 9000, "pve1", "prod", "s:backup/x", "postgres")
    store.record(result)
    store.begin(9001, vmid=102)
    # A successful drill is also the guest's last success (kept when a later drill fails).
    assert store.load() == {("prod", 101): dataclasses.replace(result, last_success_at=1.5)}
    assert list(store.pending()) == [9001]
    (tmp_path / "drills.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a vzkeep drill results file"):
        store.load()


def test_bad_scratch_range_and_nothing_to_drill_are_usage_errors(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)
        assert drill(sb, tmp_path, "--scratch", "9100-9000").exit_code == 2
        nothing = drill(sb, tmp_path, "--env", "no-such-env")
        assert nothing.exit_code == 2 and "nothing to drill" in nothing.stderr


def test_drills_are_dated_on_the_clusters_clock_not_this_machines(tmp_path: Path) -> None:
    # DrillStale compares a drill's time with vzkeep_cluster_time_seconds: both must be the cluster's.
    with running_sandbox(tmp_path) as sb:
        with_backups(sb)  # the sandbox's clock is now a simulated day ahead of the wall clock
        (newest,) = sb.client().get("nodes/pve1/storage/backup-monitoring/content", vmid=301)
        sb.sandbox.corrupt(newest["volid"], "flip")
        result = drill(sb, tmp_path, "--guest", "dev-box")
        assert result.exit_code == 0, result.stdout + result.stderr
        failed = drill(sb, tmp_path, "--guest", "grafana")
        assert failed.exit_code == 1
        cluster_now = sb.sandbox.now()
        assert cluster_now - time.time() > 12 * 3600  # the cluster runs ahead of this machine's real clock
        records = DrillResultStore(tmp_path / "state" / "drills.json").load()
        ok, corrupt = records[("lab", 201)], records[("monitoring", 301)]
        (restore,) = [r for n in sb.sandbox.cluster.nodes for r in sb.sandbox.tasks.records(n)
                      if r.info.type == "vzrestore" and r.info.id == str(ok.scratch_vmid)]
        assert ok.ok and ok.started_at == restore.info.starttime == ok.last_success_at
        # no restore task for a corrupt archive: the node's own time (GET /nodes/{node}/time)
        assert not corrupt.ok and abs(corrupt.started_at - cluster_now) < 600
