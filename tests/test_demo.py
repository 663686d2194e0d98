"""`vzkeep demo`: a simulated week on the sandbox seeded from the shipped stacks tells the story it promises."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

from tests.helpers.stacks import ROOT
from tests.helpers.tools import require_tool
from vzkeep.demo import FAILING_GUEST, run_demo

# Weeks that once changed the story, each run with the machine in a zone of its own (the nodes' zone comes
# from the stacks: Europe/Paris). The demo's clock is pinned: these tests mean the same on any day.
WEEKS = {
    # ends Sunday 04:30 Paris: the last night runs prod's weekly offsite copy as well as the nightly backup
    "offsite-night-last": ("2026-11-29T03:30:00+00:00", "UTC"),
    "offsite-night-last-paris": ("2026-11-29T03:30:00+00:00", "Europe/Paris"),
    # summer time ends on Sunday 25 October 2026 at 03:00 CEST (02:00 CET twice)
    "dst-end": ("2026-10-21T12:00:00+00:00", "Europe/Paris"),
    # November into December
    "month-boundary": ("2026-11-27T18:00:00+00:00", "UTC"),
}


@pytest.fixture(scope="module", params=sorted(WEEKS))
def result(request, tmp_path_factory):
    require_tool("prometheus")
    start, zone = WEEKS[request.param]
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield run_demo(tmp_path_factory.mktemp("demo") / "sandbox", ROOT, days=7,
                       start=int(datetime.fromisoformat(start).timestamp()))
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


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
    assert lab.pruned == (result.days - 3) * len(lab.guests)  # a backup a night, 3 kept


def test_the_injected_failure_is_reported_in_pves_words(result):
    prod = result.environments["prod"]
    assert len(prod.failures) == 1
    assert f"VM {FAILING_GUEST} - VM is locked (backup)" in prod.failures[0]
    attempt = next(a for a in result.snapshot.attempts if a.vmid == FAILING_GUEST)
    assert not attempt.ok


def test_offsite_copies_exist_where_a_nas_is_configured(result):
    prod = result.environments["prod"]
    assert prod.archives.get("offsite-prod", 0) == len(prod.guests)  # one weekly copy of every guest
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
