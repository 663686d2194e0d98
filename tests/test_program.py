"""The real `__main__.py` of each stack file, run under Pulumi's mocks: every resource and its inputs."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.stacks import ROOT, STACKS, mutated, write_stack
from vzkeep.config import WindowSettings, load_stack_file
from vzkeep.preview import is_secret, run_program, run_stack_file, walk_secrets

JOB = "proxmoxve:backup/job:Job"
DIRECTORY = "proxmoxve:storage/directory:Directory"
POOL = "proxmoxve:index/poolLegacy:PoolLegacy"
PROVIDER = "pulumi:providers:proxmoxve"


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_stack_file(ROOT / f"Pulumi.{request.param}.yaml")


def test_declares_pool_storage_job_and_provider(run):
    env = run.stack
    assert run.one(POOL).inputs == {"poolId": env, "comment": f"vzkeep environment {env}"}
    storage = run.one(DIRECTORY).inputs
    assert storage["resourceId"] == f"backup-{env}"
    assert storage["path"] == f"/mnt/backup/{env}"
    assert storage["contents"] == ["backup"]
    assert storage["nodes"] == list(run.settings.environment.nodes)
    assert run.one(PROVIDER).inputs["endpoint"] == "https://pve1.home.arpa:8006/"


def test_job_selects_the_pool_with_snapshot_mode_and_no_catch_up(run):
    job = run.one(JOB).inputs
    env = run.stack
    assert job["resourceId"] == f"vzkeep-{env}"
    assert job["pool"] == env
    assert job["storage"] == f"backup-{env}"
    assert job["mode"] == "snapshot"
    assert job["compress"] == "zstd"
    assert job["repeatMissed"] is False
    assert job["enabled"] is True
    assert "all" not in job and "vmids" not in job, "the pool selects guests, so new guests are covered"


def test_notes_template_names_guest_and_environment(run):
    template = run.one(JOB).inputs["notesTemplate"]
    assert "{{guestname}}" in template and "{{vmid}}" in template
    assert f"env {run.stack}" in template


def test_prune_backups_per_environment(run):
    expected = {
        "prod": {"keep-daily": "7", "keep-weekly": "4", "keep-monthly": "3"},
        "lab": {"keep-daily": "3"},
        "monitoring": {"keep-daily": "7", "keep-weekly": "2"},
    }[run.stack]
    assert run.one(JOB).inputs["pruneBackups"] == expected


def test_schedule_start_times_fall_inside_the_window(run):
    job = run.one(JOB).inputs
    backup = run.settings.backup
    window = WindowSettings(start=backup.window.start, end=backup.window.end)
    zone = ZoneInfo(run.settings.environment.timezone)
    # The outputs' next runs are real start times computed by the program.
    for text in run.outputs["nextRuns"]:
        local = datetime.fromisoformat(text).astimezone(zone)
        assert window.contains(local.hour * 60 + local.minute), f"{job['schedule']} starts at {local}"
    assert len(run.outputs["nextRuns"]) == 5


def test_children_hang_off_their_components(run):
    by_urn = {r.urn: r for r in run.registrations}
    job = run.one(JOB)
    assert by_urn[job.parent].type == "vzkeep:backup:BackupSchedule"
    assert by_urn[by_urn[job.parent].parent].type == "vzkeep:backup:BackupEnvironment"
    # depends_on a component means "on its children": the storage and pool must exist first.
    assert set(job.dependencies) == {run.one(DIRECTORY).urn, run.one(POOL).urn}
    assert all(r.provider.startswith(run.one(PROVIDER).urn) for r in run.registrations
               if r.custom and r.type.startswith("proxmoxve:"))


def test_stack_outputs(run):
    env = run.stack
    assert run.outputs["pool"] == env
    assert run.outputs["storageId"] == f"backup-{env}"
    assert run.outputs["jobId"] == f"vzkeep-{env}"
    assert run.outputs["schedule"] == run.one(JOB).inputs["schedule"]
    assert run.outputs["retention"].startswith("keep-daily=")


def test_environment_facts_for_the_policy_pack(run):
    facts = run.one("vzkeep:backup:BackupEnvironment").outputs
    assert facts["env"] == run.stack
    assert {int(g["vmid"]) for g in facts["inventory"]} == {g.vmid for g in run.settings.inventory}


def test_create_pool_false_declares_no_pool(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"vzkeep:environment.createPool": False}))
    run = run_stack_file(path, root=ROOT)
    assert run.of_type(POOL) == []
    assert run.one(JOB).inputs["pool"] == "lab"


def test_adopted_storage_is_read_not_managed(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"vzkeep:backup.storage": {"id": "nas-backup",
                                                                                  "create": False}}))
    run = run_stack_file(path, root=ROOT)
    storage = run.one(DIRECTORY)
    assert storage.read and storage.read_id == "nas-backup"
    assert run.one(JOB).inputs["storage"] == "nas-backup"


def test_secret_token_reaches_the_provider_as_a_secret():
    settings = load_stack_file(ROOT / "Pulumi.lab.yaml")
    import yaml

    from vzkeep.config import stack_file_values

    values, secrets = stack_file_values(yaml.safe_load((ROOT / "Pulumi.lab.yaml").read_text())["config"])
    values["proxmoxve:apiToken"] = "vzkeep@pve!pulumi=00000000-1111-2222-3333-444444444444"
    secrets.add("proxmoxve:apiToken")
    run = run_program("lab", values, secrets, root=ROOT, settings=settings)
    token = run.one(PROVIDER).inputs["apiToken"]
    assert is_secret(token)
    leaked = [r for r in run.registrations if r.type != PROVIDER and list(walk_secrets(r.inputs))]
    assert leaked == []
    assert "00000000-1111" not in repr(run.outputs)
