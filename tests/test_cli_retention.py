"""`vzkeep retention plan` through typer's CliRunner: output, --json shape, exit codes, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vzkeep.cli.retention import app
from vzkeep.pve import retention

runner = CliRunner()

# Upstream's `threeway` list (prune_backups_test.pm) plus a protected and a renamed backup.
LISTING: list[dict[str, Any]] = [
    {"volid": "local:backup/vzdump-qemu-7654-2019_12_25-12_18_21.vma.zst", "ctime": 1577276301, "vmid": 7654},
    {"volid": "local:backup/vzdump-qemu-7654-2019_12_31-12_18_21.vma.zst", "ctime": 1577794701, "vmid": 7654},
    {"volid": "local:backup/vzdump-qemu-7654-2020_01_01-12_18_21.vma.zst", "ctime": 1577881101, "vmid": 7654},
    {
        "volid": "local:backup/vzdump-lxc-7655-2019_06_01-00_00_00.tar.zst",
        "ctime": 1559347200,
        "vmid": 7655,
        "protected": 1,
    },
    {"volid": "local:backup/my-copy-of-7654.vma.zst", "ctime": 1234, "vmid": 7654},
]
POLICY = "keep-daily=1,keep-weekly=1,keep-monthly=1"


@pytest.fixture
def listing_file(tmp_path: Path) -> Path:
    path = tmp_path / "backups.json"
    path.write_text(json.dumps({"data": LISTING}))
    return path


def test_json_is_exactly_the_prunebackups_shape(listing_file: Path) -> None:
    result = runner.invoke(app, ["plan", "--prune-backups", POLICY, "--tz", "UTC", "--json", str(listing_file)])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got == retention.mark(LISTING, POLICY, tz="UTC")
    assert [entry["mark"] for entry in got] == ["keep", "remove", "keep", "protected", "renamed"]
    assert set(got[0]) == {"volid", "type", "ctime", "mark", "vmid"}


def test_a_bare_list_on_stdin_is_accepted() -> None:
    result = runner.invoke(app, ["plan", "-p", "keep-last=1", "--tz", "UTC", "--json", "-"], input=json.dumps(LISTING))
    assert result.exit_code == 0, result.output
    assert [entry["mark"] for entry in json.loads(result.stdout)][:3] == ["remove", "remove", "keep"]


def test_table_says_why_per_guest_and_sums_up(listing_file: Path) -> None:
    result = runner.invoke(app, ["plan", "-p", POLICY, "--tz", "UTC", str(listing_file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "qemu/7654" in out and "lxc/7655" in out and "not grouped" in out
    assert "keep-daily 1/1" in out and "keep-weekly 1/1" in out
    assert "its month is covered by a backup kept by keep-weekly" in out
    assert "2019-12-31 12:18:21" in out
    assert out.rstrip().endswith("kept 2, removed 1 (1 protected, 1 renamed left alone)")


def test_local_time_follows_tz(listing_file: Path) -> None:
    result = runner.invoke(app, ["plan", "-p", POLICY, "--tz", "Asia/Tokyo", str(listing_file)])
    assert result.exit_code == 0, result.output
    # The names are wall-clock stamps: in any zone they read back as the same local times.
    assert "2019-12-31 12:18:21" in result.stdout
    assert "periods in Asia/Tokyo" in result.stdout


def test_vmid_and_type_filters(listing_file: Path) -> None:
    result = runner.invoke(
        app,
        ["plan", "-p", "keep-last=1", "--tz", "UTC", "--vmid", "7654", "--type", "qemu", "--json", str(listing_file)],
    )
    assert result.exit_code == 0, result.output
    assert [entry["volid"] for entry in json.loads(result.stdout)] == [item["volid"] for item in LISTING[:3]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "keep-dialy=7"], "--prune-backups 'keep-dialy=7': 'keep-dialy' is not a retention option (allowed:"),
        (["-p", "keep-daily=-1"], "keep-daily=-1 is negative (allowed: an integer >= 0)"),
        (["-p", "keep-all=1,keep-last=2"], "keep-all cannot be set together with other options."),
        (["-p", "keep-last=1", "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["-p", "keep-last=1", "--type", "vm"], "--type 'vm' is not a guest type (allowed: qemu, lxc)"),
    ],
)
def test_bad_options_exit_2_naming_what_is_allowed(listing_file: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["plan", *args, str(listing_file)])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON (line 1, column 2"),
        ('{"errors": {}}', 'expected a list of backups or {"data": [...]}'),
        ('[{"ctime": 1}]', "listing item 0 has no 'volid'"),
    ],
)
def test_bad_listing_exits_2_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "listing.json"
    path.write_text(content)
    result = runner.invoke(app, ["plan", "-p", "keep-last=1", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output and message in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "-p", "keep-last=1", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output and "nope.json" in result.output


def test_help_teaches_with_examples() -> None:
    result = runner.invoke(app, ["plan", "--help"])
    assert result.exit_code == 0
    assert "vzkeep retention plan -p keep-daily=3 --vmid 100 --json backups.json" in result.stdout
    assert "keep-monthly" in result.stdout


def test_registered_under_the_root_cli() -> None:
    from vzkeep.cli import app as root

    result = runner.invoke(root, ["retention", "plan", "--help"])
    assert result.exit_code == 0
    assert "prune-backups" in result.stdout
