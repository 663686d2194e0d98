"""`vzkeep demo`: a simulated week on the sandbox seeded from the shipped stacks tells the story it promises."""

from __future__ import annotations

import pytest

from tests.helpers.stacks import ROOT
from tests.helpers.tools import require_tool
from vzkeep.demo import FAILING_GUEST, run_demo


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    require_tool("prometheus")
    return run_demo(tmp_path_factory.mktemp("demo") / "sandbox", ROOT, days=7)


def test_every_guest_of_every_environment_has_archives(result):
    for env in ("prod", "lab", "monitoring"):
        report = result.environments[env]
        assert report.guests, env
        local = report.archives[f"backup-{env}"]
        assert local >= len(report.guests), f"{env}: {local} archives for {len(report.guests)} guests"
    assert all(item.last_ctime > 0 for item in result.snapshot.archives if item.storage.startswith("backup-"))


def test_retention_pruned_lab_down_to_three_a_guest(result):
    lab = result.environments["lab"]
    assert lab.archives["backup-lab"] == 3 * len(lab.guests)  # keep-daily=3
    assert lab.pruned == 4 * len(lab.guests)  # 7 nights - 3 kept


def test_the_injected_failure_is_reported_in_pves_words(result):
    prod = result.environments["prod"]
    assert len(prod.failures) == 1
    assert f"VM {FAILING_GUEST} - VM is locked (backup)" in prod.failures[0]
    attempt = next(a for a in result.snapshot.attempts if a.vmid == FAILING_GUEST)
    assert not attempt.ok


def test_offsite_copies_exist_where_a_nas_is_configured(result):
    assert result.environments["prod"].archives.get("offsite-prod", 0) >= 5
    assert "offsite-lab" not in result.environments["lab"].archives


def test_prometheus_fires_backup_failed_for_that_guest_only(result):
    assert not isinstance(result.alerts, str), result.alerts
    firing = [(a.name, a.labels.get("vmid")) for a in result.alerts if a.state == "firing"]
    assert firing == [("BackupFailed", str(FAILING_GUEST))]


def test_the_demo_refuses_a_directory_that_already_holds_a_sandbox(tmp_path):
    from typer.testing import CliRunner

    from vzkeep.cli import app

    (tmp_path / "cluster.json").write_text("{}")
    result = CliRunner().invoke(app, ["demo", "--state", str(tmp_path)])
    assert result.exit_code == 2
    assert "already holds a sandbox" in result.output
    assert (tmp_path / "cluster.json").read_text() == "{}", "nothing of the old state is touched"
