"""`vzkeep sandbox serve --from-stacks`: the cluster the three stack files describe, jobs created via the API."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stacks import ROOT, STACKS
from vzkeep.config import load_stack_file
from vzkeep.connection import ConnectionOptions, connect
from vzkeep.net import free_port
from vzkeep.plan import plan_stack

VZKEEP = Path(sys.executable).parent / "vzkeep"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    state = tmp_path_factory.mktemp("from-stacks") / "sandbox"
    process = subprocess.Popen(
        [str(VZKEEP), "sandbox", "serve", "--from-stacks", "--stacks-dir", str(ROOT), "--state", str(state),
         "--port", str(free_port()), "--stepped"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 30
    while not (state / "sandbox.json").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the sandbox did not start within 30 s"
        time.sleep(0.1)
    yield connect(ConnectionOptions(sandbox=state / "sandbox.json"))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def plans():
    return {name: plan_stack(load_stack_file(ROOT / f"Pulumi.{name}.yaml")) for name in STACKS}


def test_jobs_are_the_plans_jobs(api, plans):
    jobs = {job["id"]: job for job in api.cluster.backup.get()}
    expected = {p.job.id: p.job for p in plans.values()} | {p.offsite.job.id: p.offsite.job
                                                              for p in plans.values() if p.offsite}
    assert set(jobs) == set(expected)
    for job_id, spec in expected.items():
        job = jobs[job_id]
        assert (job["schedule"], job["pool"], job["storage"], job["mode"]) == (
            spec.schedule, spec.pool, spec.storage, spec.mode)
        assert {k: int(v) for k, v in job["prune-backups"].items()} == spec.prune_backups
        assert int(job["repeat-missed"]) == 0 and "next-run" in job


def test_every_guest_sits_in_its_environments_pool(api, plans):
    guests = {int(g["vmid"]): g for g in api.cluster.resources.get(type="vm")}
    for plan in plans.values():
        for spec in plan.guests:
            assert guests[spec.vmid]["pool"] == plan.pool.id
            assert guests[spec.vmid]["node"] == spec.node
    assert api.cluster("backup-info")("not-backed-up").get() == []


def test_storages_are_visible_where_the_stacks_say(api, plans):
    seen = {(s["storage"], s["node"]) for s in api.cluster.resources.get(type="storage")}
    for plan in plans.values():
        for node in plan.storage.nodes:
            assert (plan.storage.id, node) in seen
        if plan.offsite:
            shared = [s for s in api.cluster.resources.get(type="storage") if s["storage"] == plan.offsite.storage.id]
            assert shared and all(int(s["shared"]) == 1 for s in shared)
