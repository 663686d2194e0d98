"""Drill results reach Prometheus: status, duration, and the last success kept across a failed drill."""

from __future__ import annotations

from tests.helpers.metrics import Series, series
from vzkeep.drill import DrillResult, DrillResultStore
from vzkeep.exporter import Poller
from vzkeep.exporter.metrics import render


def empty_cluster(path: str, **params: object) -> list:
    return []  # a cluster with no guests: only the drill part has something to say


def samples(snapshot) -> Series:
    """The drill series the snapshot renders."""
    return {key: v for key, v in series(render(snapshot)).items() if key[0].startswith("vzkeep_drill_")}


def result(vmid: int, ok: bool, started: float, duration: float = 42.0) -> DrillResult:
    return DrillResult(started_at=started, duration_seconds=duration, ok=ok, message="", vmid=vmid,
                       scratch_vmid=9000, node="pve1", env="prod")


def test_drill_metrics_follow_the_results_store(tmp_path):
    store = DrillResultStore(tmp_path / "drills.json")
    store.record(result(101, ok=True, started=1_000.0, duration=300.0))
    store.record(result(102, ok=False, started=2_000.0))
    got = samples(Poller(empty_cluster, drill_results=store.path).poll())
    a, b = frozenset({("env", "prod"), ("vmid", "101")}), frozenset({("env", "prod"), ("vmid", "102")})
    assert got[("vzkeep_drill_last_status", a)] == 1 and got[("vzkeep_drill_last_status", b)] == 0
    assert got[("vzkeep_drill_duration_seconds", a)] == 300.0
    assert got[("vzkeep_drill_last_success_timestamp_seconds", a)] == 1_000.0
    assert ("vzkeep_drill_last_success_timestamp_seconds", b) not in got, "never succeeded: no success time"


def test_a_failed_drill_keeps_the_time_of_the_last_success(tmp_path):
    store = DrillResultStore(tmp_path / "drills.json")
    store.record(result(101, ok=True, started=1_000.0))
    store.record(result(101, ok=False, started=5_000.0))
    got = samples(Poller(empty_cluster, drill_results=store.path).poll())
    labels = frozenset({("env", "prod"), ("vmid", "101")})
    assert got[("vzkeep_drill_last_status", labels)] == 0
    assert got[("vzkeep_drill_last_success_timestamp_seconds", labels)] == 1_000.0


def test_no_results_file_means_no_drill_series_and_no_error(tmp_path):
    snapshot = Poller(empty_cluster, drill_results=tmp_path / "missing.json").poll()
    assert samples(snapshot) == {}
    assert "drills" not in snapshot.failed_parts


def test_results_store_is_readable_by_the_exporter_user(tmp_path):
    store = DrillResultStore(tmp_path / "drills.json")
    store.record(result(101, ok=True, started=1.0))
    assert store.path.stat().st_mode & 0o044 == 0o044, "the exporter runs as another user: results are 0644"
