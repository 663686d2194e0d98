"""`vzkeep demo`: a simulated week on the sandbox seeded from the shipped stacks tells the story it promises."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers.fake_pve import failed_backup, fake_cluster
from tests.helpers.stacks import ROOT
from tests.helpers.tools import require_tool
from tests.helpers.waits import wait_until
from vzkeep.demo import FAILING_GUEST, DemoResult, run_demo
from vzkeep.exporter import Exporter, Poller, Snapshot

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


# The whole story (verify, restore, drills) in two of the weeks, one per machine zone; the backups, the
# failure, the alert and its Telegram message in every week.
FULL_STORY = ("offsite-night-last-paris", "dst-end")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The demo's result per week, run once each (both fixtures below share them)."""
    done: dict[str, DemoResult] = {}

    def run(week: str) -> DemoResult:
        if week not in done:
            done[week] = _run_week(week, tmp_path_factory.mktemp("demo") / "sandbox")
        return done[week]

    return run


def _run_week(week: str, state: Path) -> DemoResult:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    start, zone = WEEKS[week]
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        return run_demo(state, ROOT, days=7, start=int(datetime.fromisoformat(start).timestamp()),
                        recovery=week in FULL_STORY)
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(params=sorted(WEEKS))
def result(request, runs):
    return runs(request.param)


@pytest.fixture(params=FULL_STORY)
def story(request, runs):
    return runs(request.param)


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
    assert lab.retention == "keep-daily=3"


def test_every_environment_shows_pruning_or_the_first_archive_retention_will_prune(result):
    for env in ("prod", "monitoring"):
        report = result.environments[env]
        assert report.retention.startswith("keep-daily=7"), report.retention
        assert report.pruned > 0 or report.next_prune is not None, env
        if report.next_prune is not None:
            assert report.next_prune.volid.startswith(f"backup-{env}:backup/vzdump-")
            assert report.next_prune.after_run > result.ended_at


def test_the_prune_forecast_agrees_with_pves_rules_on_a_known_week():
    # keep-daily=2: three nightly backups; the next run (Thu 02:00 Paris) leaves the Tuesday one outside.
    from vzkeep.demo import prune_forecast
    from vzkeep.plan import JobSpec

    job = JobSpec("j", "02:00", "prod", "s", "snapshot", "zstd", {"keep-daily": 2}, "", True, "",
                  timezone="Europe/Paris")
    listing = [{"volid": f"s:backup/vzdump-qemu-101-2026_01_{d:02d}-02_00_00.vma.zst", "vmid": 101,
                "ctime": int(datetime.fromisoformat(f"2026-01-{d:02d}T01:00:00+00:00").timestamp())}
               for d in (5, 6, 7)]  # Mon, Tue, Wed; 01:00 UTC is 02:00 in Paris (winter)
    forecast = prune_forecast(listing, job)
    assert forecast is not None
    assert forecast.volid == "s:backup/vzdump-qemu-101-2026_01_05-02_00_00.vma.zst"
    assert forecast.after_run == int(datetime.fromisoformat("2026-01-08T01:00:00+00:00").timestamp())


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


class _FirstPollEndsAfterAScrape(Poller):
    """As on a loaded machine: Prometheus scrapes the exporter's empty page before the first poll ends."""

    prometheus = ""  # its URL, once it runs

    def poll(self) -> Snapshot:
        if not self.snapshot.up:
            wait_until(lambda: self.prometheus and _scraped(self.prometheus), 30, "Prometheus's first scrape")
        return super().poll()


def _scraped(prometheus: str) -> bool:
    try:
        with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=5) as reply:
            return [t["health"] for t in json.load(reply)["data"]["activeTargets"]] == ["up"]
    except OSError:
        return False  # not listening, or not ready yet (503)


def test_the_alerts_shown_are_those_of_the_snapshot_shown_not_of_the_page_before_the_first_poll():
    from vzkeep.demo import _Alerting, _watched, stack_plans

    require_tool("prometheus")
    poller = _FirstPollEndsAfterAScrape(fake_cluster(change=failed_backup(100, "VM is locked (backup)")))
    with Exporter(poller, "127.0.0.1:0", interval=3600) as exporter, \
            _Alerting(stack_plans(ROOT), exporter.address) as alerting:
        assert alerting.rules is not None
        poller.prometheus = alerting.rules.url
        snapshot, alerts = _watched(exporter, alerting)
    assert not isinstance(alerts, str), alerts
    assert [a.vmid for a in snapshot.attempts if not a.ok] == [100]
    assert [(a.name, a.labels["vmid"]) for a in alerts if a.state == "firing"] == [("BackupFailed", "100")]


def test_the_demo_refuses_a_directory_that_already_holds_a_sandbox(tmp_path):
    from typer.testing import CliRunner

    from vzkeep.cli import app

    (tmp_path / "cluster.json").write_text("{}")
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "already holds a sandbox" in result.output
    assert (tmp_path / "cluster.json").read_text() == "{}", "nothing of the old state is touched"


def test_the_telegram_message_names_the_guest_and_its_failure(result):
    assert result.telegram_missing == ""
    text = result.telegram
    assert "BackupFailed" in text and "vmid 101" in text and "postgres" in text and "<b>prod</b>" in text
    assert "status: FIRING" in text


def test_verify_reads_every_archive_and_finds_all_ok(story):
    archives = sum(sum(env.archives.values()) for env in story.environments.values())
    assert story.verify is not None
    assert story.verify.archives == archives
    assert story.verify.ok == archives and story.verify.problems == []


def test_the_failed_guest_is_restored_from_its_last_good_backup_with_an_equal_disk(story):
    restore = story.restore
    assert restore is not None
    assert f"-qemu-{FAILING_GUEST}-" in restore.volid
    attempt = next(a for a in story.snapshot.attempts if a.vmid == FAILING_GUEST)
    assert not attempt.ok and restore.backup_ctime < attempt.timestamp  # from before the failed night
    assert restore.vmid != FAILING_GUEST
    assert len(restore.archive_digest) == 64
    assert restore.restored_digest == restore.archive_digest


def test_a_drill_in_each_environment_measures_an_rto_and_satisfies_drill_stale(story):
    assert sorted(story.drills) == ["lab", "monitoring", "prod"]
    assert all(d.ok and d.duration_seconds > 0 for d in story.drills.values())
    assert isinstance(story.alerts, list) and isinstance(story.alerts_after, list)
    before = {a.labels.get("env") for a in story.alerts if a.name == "DrillStale"}
    assert before == {"lab", "monitoring", "prod"}, "no drill had run: DrillStale pending everywhere"
    assert not [a for a in story.alerts_after if a.name == "DrillStale"]
    firing = [(a.name, a.labels.get("vmid")) for a in story.alerts_after if a.state == "firing"]
    assert firing == [("BackupFailed", str(FAILING_GUEST))], "the backup itself is still to be fixed"


def test_the_offsite_copies_hold_every_prod_guest_on_shared_storage(result):
    offsite = {o.env: o for o in result.offsite}
    prod = offsite["prod"]
    guests = {int(g.split()[0]) for g in result.environments["prod"].guests}
    assert prod.storage == "offsite-prod" and prod.shared
    assert set(prod.copies) == guests
    assert set(prod.nodes) == {"pve1", "pve2"}
    assert "lab" not in offsite


def test_the_closing_table_has_a_line_per_environment(story):
    from vzkeep.cli.demo import closing_rows

    rows = {row[0]: row for row in closing_rows(story)}
    assert sorted(rows) == ["lab", "monitoring", "prod"]
    _env, guests, covered, _age, failures, verified, offsite, rto, alerts = rows["prod"]
    assert (guests, covered, failures, offsite, alerts) == ("5", "5/5", "1", "5/5", "BackupFailed")
    assert verified.endswith("OK") and verified.split("/")[0] == verified.split("/")[1].split()[0]
    assert rto.endswith(" s")
    assert rows["lab"][4] == "0" and rows["lab"][6] == "-" and rows["lab"][8] == "none"


def test_the_demo_command_prints_every_step(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vzkeep.cli import app
    from vzkeep.cli.demo import STEPS

    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        args = ["demo", "--days", "2", "--start", "2026-10-21T12:00Z", "--dir", str(tmp_path / "sb")]
        run = CliRunner().invoke(app, args)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert run.exit_code == 0, run.output
    for step in STEPS:
        assert f"== {step} ==" in run.output
    assert "VM 101 - VM is locked (backup)" in run.output
    assert "Telegram message delivered" in run.output
    assert "→ equal" in run.output
    assert "DrillStale satisfied in every environment" in run.output
    assert "none yet: the first to go is backup-prod:backup/vzdump-" in run.output  # 2 nights: keep-daily=7
    lines = run.output.splitlines()
    assert max(len(line) for line in lines) > 120, "a pipe is not wrapped at the terminal's width"


def test_without_prometheus_and_alertmanager_the_demo_says_what_to_install(tmp_path, monkeypatch):
    from vzkeep.demo import _Alerting, stack_plans

    monkeypatch.setenv("PATH", str(tmp_path))  # neither binary on it
    with _Alerting(stack_plans(ROOT), "127.0.0.1:9") as alerting:
        alerts = alerting.alerts()
        text, missing = alerting.message(FAILING_GUEST)
    assert isinstance(alerts, str) and "install the `prometheus` package" in alerts
    assert text == "" and "`prometheus-alertmanager` package" in missing
