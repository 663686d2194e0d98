"""Stack settings: defaults, the shipped stack files, and every bad input the issue lists."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers.stacks import DELETE, ROOT, STACKS, mutated, write_stack
from vzkeep.cli import app
from vzkeep.config import ConfigError, load_stack_file, settings_from_config
from vzkeep.plan import plan_stack
from vzkeep.preview import run_program

runner = CliRunner()


@pytest.mark.parametrize("name", STACKS)
def test_shipped_stack_files_are_valid_and_differ(name):
    settings = load_stack_file(ROOT / f"Pulumi.{name}.yaml")
    assert settings.env == name
    assert settings.environment.pool_id == name
    assert settings.storage_id == f"backup-{name}"
    assert len(settings.inventory) >= 3, "each environment lists real guests"


def test_prod_keeps_more_than_lab():
    prod = plan_stack(load_stack_file(ROOT / "Pulumi.prod.yaml")).job.prune_backups
    lab = plan_stack(load_stack_file(ROOT / "Pulumi.lab.yaml")).job.prune_backups
    assert prod == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 3}
    assert lab == {"keep-daily": 3}
    assert sum(prod.values()) > sum(lab.values())


def test_defaults_when_only_the_environment_is_given():
    settings = settings_from_config(
        {"proxmoxve:endpoint": "https://pve:8006/", "vzkeep:environment": json.dumps({"name": "lab"})},
        stack="lab",
    )
    plan = plan_stack(settings)
    assert plan.job.schedule == "02:00"
    assert plan.job.mode == "snapshot"
    assert plan.job.compress == "zstd"
    assert plan.job.prune_backups == {"keep-daily": 7}
    assert plan.settings.environment.timezone == "Europe/Paris"
    assert plan.pool.create is True
    assert (plan.thresholds.window_start, plan.thresholds.window_end) == ("01:00", "06:00")
    assert plan.storage.path == "/mnt/backup/lab"


def test_secure_values_are_placeholders_never_values(tmp_path):
    document = mutated("prod", {"proxmoxve:apiToken": {"secure": "v1:abc:def"}})
    settings = load_stack_file(write_stack(tmp_path, "prod", document))
    assert settings.provider.api_token_present and settings.provider.api_token_secret
    assert "v1:abc:def" not in settings.model_dump_json()


BAD = {
    "unknown key in a section": (
        {"vzkeep:backup.retention.keepForever": 1}, "vzkeep:backup.retention.keepForever", "unknown key"),
    "unknown top-level key": ({"vzkeep:backups": {"at": "02:00"}}, "vzkeep:backups", "unknown key"),
    "keywords cannot combine": (
        {"vzkeep:backup": {"schedule": "daily 02:00"}}, "vzkeep:backup",
        "invalid calendar event 'daily 02:00'"),
    "hour and minute out of range": (
        {"vzkeep:backup": {"schedule": "25:61"}}, "vzkeep:backup", "invalid calendar event '25:61'"),
    "empty schedule": ({"vzkeep:backup": {"schedule": ""}}, "vzkeep:backup", "invalid calendar event ''"),
    "schedule outside the window": (
        {"vzkeep:backup": {"schedule": "12:00"}}, "vzkeep:backup.schedule", "outside the backup window"),
    "start outside a window crossing midnight": (
        {"vzkeep:backup": {"at": "05:00", "window": {"start": "22:00", "end": "04:00"}}},
        "vzkeep:backup.schedule", "outside the backup window 22:00–04:00"),
    "window start equals end": (
        {"vzkeep:backup.window": {"start": "02:00", "end": "02:00"}}, "vzkeep:backup.window",
        "window would be empty"),
    "negative retention": (
        {"vzkeep:backup.retention": {"keepDaily": -1}}, "vzkeep:backup.retention.keepDaily",
        "greater than or equal to 0"),
    "keepAll with other keeps": (
        {"vzkeep:backup.retention": {"keepAll": True, "keepDaily": 7}}, "vzkeep:backup.retention",
        "keep-all cannot be set together with other options."),
    "retention keeps nothing": (
        {"vzkeep:backup.retention": {"keepDaily": 0}}, "vzkeep:backup.retention", "retention keeps nothing"),
    "relative storage path": (
        {"vzkeep:backup.storage.path": "backups/prod"}, "vzkeep:backup.storage.path", "not absolute"),
    "storage id PVE rejects": (
        {"vzkeep:backup.storage.id": "Backup_Prod!"}, "vzkeep:backup.storage.id", "PVE storage ids"),
    "pool id PVE rejects": (
        {"vzkeep:environment.pool": "prod pool"}, "vzkeep:environment.pool", "PVE pool ids"),
    "weekly without a day": (
        {"vzkeep:backup": {"frequency": "weekly", "at": "02:00"}}, "vzkeep:backup", "weekly needs a day"),
    "missing endpoint": ({"proxmoxve:endpoint": DELETE}, "proxmoxve:endpoint", "required"),
    "inventory vmid below 100": (
        {"vzkeep:inventory": [{"vmid": 99, "name": "x", "type": "lxc"}]}, "vzkeep:inventory[0].vmid",
        "greater than or equal to 100"),
    "inventory vmid duplicated": (
        {"vzkeep:inventory": [{"vmid": 100, "name": "a", "type": "lxc"},
                              {"vmid": 100, "name": "b", "type": "qemu"}]},
        "vzkeep:inventory[1].vmid", "duplicated"),
}


@pytest.mark.parametrize("changes,key,message", BAD.values(), ids=BAD.keys())
def test_bad_input_names_file_key_value_and_rule(tmp_path, changes, key, message):
    path = write_stack(tmp_path, "prod", mutated("prod", changes))
    with pytest.raises(ConfigError) as caught:
        plan_stack(load_stack_file(path))
    error = caught.value
    assert error.source == str(path)
    assert error.key == key
    assert message in str(error)


@pytest.mark.parametrize("changes,key,message", BAD.values(), ids=BAD.keys())
def test_bad_input_makes_preview_exit_2_and_declare_nothing(tmp_path, changes, key, message):
    write_stack(tmp_path, "prod", mutated("prod", changes))
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    result = runner.invoke(app, ["preview", "--stack", "prod", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert key in result.output and message in result.output.replace("\n", "")


def test_the_program_itself_declares_nothing_on_bad_config():
    values = {"proxmoxve:endpoint": "https://pve:8006/",
              "vzkeep:environment": json.dumps({"name": "lab"}),
              "vzkeep:backup": json.dumps({"schedule": "12:00"})}
    with pytest.raises(ConfigError):
        run_program("lab", values, set(), root=ROOT)


def test_weekly_with_day_and_window_crossing_midnight_are_accepted():
    settings = settings_from_config(
        {"proxmoxve:endpoint": "https://pve:8006/", "vzkeep:environment": json.dumps({"name": "lab"}),
         "vzkeep:backup": json.dumps({"frequency": "weekly", "day": "sun", "at": "23:30",
                                      "window": {"start": "22:00", "end": "04:00"}})},
        stack="lab",
    )
    plan = plan_stack(settings)
    assert plan.job.schedule == "sun 23:30"
    assert plan.thresholds.expected_interval_seconds == 7 * 86400
    assert plan.thresholds.missing_after_seconds == 14 * 86400


def test_daily_missing_threshold_is_48_hours():
    plan = plan_stack(load_stack_file(ROOT / "Pulumi.prod.yaml"))
    assert plan.thresholds.expected_interval_seconds == 86400
    assert plan.thresholds.missing_after_seconds == 48 * 3600
