"""Grafana dashboard: a provisioning-ready JSON model, and every panel query returns data from a real
Prometheus scraping a static exposition (realistic series for three environments) on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import Server, StaticExporter, query, query_range, run_prometheus, wait_until

from vzkeep.monitoring import DeliveryTiming, dashboard, render

ALL_ENVS = "prod|lab|monitoring"  # what Grafana puts in $env for "All" with a regex matcher
GUESTS = [  # env, vmid, name, type, node, covered, last status, hours since last success (None: never)
    ("prod", "100", "web", "qemu", "pve1", 1, 1, 20),
    ("prod", "101", "db", "qemu", "pve1", 1, 0, 44),
    ("prod", "102", "dns", "lxc", "pve2", 1, 1, 20),
    ("lab", "200", "k3s", "qemu", "pve2", 1, 1, 21),
    ("lab", "201", "scratch", "lxc", "pve2", 0, None, None),
    ("monitoring", "300", "prometheus", "lxc", "pve1", 1, 1, 22),
    ("", "900", "tmp", "lxc", "pve1", 0, None, None),
]
STORAGES = [  # storage, node, size, used
    ("backup-prod", "pve1", 2_000_000_000_000, 1_500_000_000_000),
    ("backup-prod", "pve2", 2_000_000_000_000, 1_500_000_000_000),  # shared: seen by both nodes
    ("backup-lab", "pve2", 1_000_000_000_000, 300_000_000_000),
    ("backup-monitoring", "pve1", 500_000_000_000, 100_000_000_000),
    ("offsite-prod", "pve1", 8_000_000_000_000, 2_000_000_000_000),
    ("local", "pve1", 100_000_000_000, 90_000_000_000),
]
JOBS = [  # job, env, schedule, storage, last status
    ("vzkeep-prod", "prod", "02:00", "backup-prod", 0),
    ("vzkeep-prod-offsite", "prod", "sat 04:00", "offsite-prod", 1),
    ("vzkeep-lab", "lab", "03:00", "backup-lab", 1),
    ("vzkeep-monitoring", "monitoring", "01:30", "backup-monitoring", 1),
]


def _labels(**labels: str) -> str:
    return ",".join(f'{key}="{value}"' for key, value in labels.items())


def exposition(now: float) -> str:
    """What the vzkeep exporter would serve for the inventory above (metric names from issue 5)."""
    samples: dict[str, list[str]] = {}

    def add(metric: str, value: float, **labels: str) -> None:
        samples.setdefault(metric, []).append(f"{metric}{{{_labels(**labels)}}} {value}")

    add("vzkeep_up", 1)
    add("vzkeep_poll_timestamp_seconds", round(now - 5))
    add("vzkeep_poll_duration_seconds", 0.42)
    add("vzkeep_poll_errors_total", 0)
    for env, vmid, name, type_, node, covered, status, hours in GUESTS:
        add("vzkeep_guest_info", 1, env=env, vmid=vmid, name=name, type=type_, node=node)
        add("vzkeep_guest_covered", covered, env=env, vmid=vmid)
        if status is None or hours is None:
            continue
        storages = [f"backup-{env}"] + (["offsite-prod"] if env == "prod" else [])
        for storage in storages:
            add("vzkeep_backup_last_success_timestamp_seconds", round(now - hours * 3600), env=env, vmid=vmid,
                storage=storage)
            add("vzkeep_backup_last_size_bytes", 4_000_000_000 + int(vmid), env=env, vmid=vmid, storage=storage)
            add("vzkeep_backup_archives", 7, env=env, vmid=vmid, storage=storage)
        add("vzkeep_backup_last_attempt_timestamp_seconds", round(now - 3 * 3600), env=env, vmid=vmid)
        add("vzkeep_backup_last_status", status, env=env, vmid=vmid)
    for job, env, schedule, storage, status in JOBS:
        add("vzkeep_job_info", 1, job=job, env=env, schedule=schedule, storage=storage)
        add("vzkeep_job_enabled", 1, job=job)
        add("vzkeep_job_next_run_timestamp_seconds", round(now + 6 * 3600), job=job)
        add("vzkeep_job_last_run_timestamp_seconds", round(now - 18 * 3600), job=job)
        add("vzkeep_job_last_status", status, job=job)
        add("vzkeep_job_expected_interval_seconds", 86400, job=job)
        add("vzkeep_env_backup_bytes", 60_000_000_000, env=env, storage=storage)
    for storage, node, size, used in STORAGES:
        add("vzkeep_storage_size_bytes", size, storage=storage, node=node)
        add("vzkeep_storage_used_bytes", used, storage=storage, node=node)
    lines = []
    for metric, rows in samples.items():
        kind = "counter" if metric.endswith("_total") else "gauge"
        lines += [f"# HELP {metric} vzkeep test series", f"# TYPE {metric} {kind}", *rows]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config_dir = tmp_path_factory.mktemp("prometheus")
    # wall clock on purpose: the samples must be "now" for the real Prometheus that scrapes them
    with StaticExporter(exposition(time.time())) as exporter:
        scrape = render.scrape_config([exporter.address], DeliveryTiming(scrape_interval_seconds=1))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [scrape]}
        (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        with run_prometheus(config_dir) as server:
            # two scrapes, so range queries have points to return
            wait_until(lambda: exporter.scrapes >= 3 and query(server.url, "vzkeep_up"), 30, "two scrapes")
            yield server


BOARD = dashboard.build_dashboard()
QUERIES = dashboard.panel_queries(BOARD)


def run(server: Server, item: dashboard.PanelQuery, env: str) -> list[dict[str, Any]]:
    expr = dashboard.substitute(item.expr, {"env": env})
    if item.instant:
        return query(server.url, expr)
    now = time.time()
    return query_range(server.url, expr, now - 60, now, 1)


@pytest.mark.parametrize("item", QUERIES, ids=lambda q: f"{q.panel}/{q.ref_id}")
def test_every_panel_query_returns_data_for_all_environments(prometheus: Server, item: dashboard.PanelQuery) -> None:
    assert run(prometheus, item, ALL_ENVS), f"{item.panel} {item.ref_id}: no data for {item.expr}"


@pytest.mark.parametrize("env", ["prod", "lab", "monitoring"])
def test_every_environment_row_has_data(prometheus: Server, env: str) -> None:
    # The env row repeats with $env bound to one environment.
    env_queries = [q for q in QUERIES if "$env" in q.expr]
    empty = {f"{q.panel}/{q.ref_id}" for q in env_queries if not run(prometheus, q, env)}
    # Only prod has a NAS in this exposition: elsewhere the offsite column is rightly empty.
    expected_empty = set() if env == "prod" else {"Guests/G"}
    assert env_queries and empty == expected_empty, f"panels without data for {env}: {empty}"


def single_value(server: Server, panel: str, env: str) -> float:
    item = next(q for q in QUERIES if q.panel == panel)
    result = run(server, item, env)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.mark.parametrize(
    ("panel", "env", "expected"),
    [
        ("Failed backups", "prod", 1),  # db's last attempt failed
        ("Failed backups", "lab", 0),
        ("Coverage", "lab", 0.5),  # scratch is in no job
        ("Coverage", "prod", 1),
        ("Guests in no pool, not backed up", "prod", 1),  # tmp (900)
        ("Exporter polling PVE", "prod", 1),
    ],
)
def test_stat_panels_show_what_the_series_say(prometheus: Server, panel: str, env: str, expected: float) -> None:
    assert single_value(prometheus, panel, env) == pytest.approx(expected)


def test_oldest_backup_age_is_the_longest_waiting_guest(prometheus: Server) -> None:
    assert single_value(prometheus, "Oldest last backup", "prod") == pytest.approx(44 * 3600, abs=120)


def test_storage_panel_shows_only_the_environments_backup_storages(prometheus: Server) -> None:
    item = next(q for q in QUERIES if q.panel == "Backup storage use")
    result = run(prometheus, item, "prod")
    by_storage = {r["metric"]["storage"]: float(r["values"][-1][1]) for r in result}
    # backup-prod counted once although both nodes report it; "local" is not a backup storage
    assert by_storage == {"backup-prod": pytest.approx(0.75), "offsite-prod": pytest.approx(0.25)}


def test_guest_table_has_one_row_per_guest_of_the_environment(prometheus: Server) -> None:
    status = next(q for q in QUERIES if q.panel == "Guests" and q.ref_id == "E")
    rows = {r["metric"]["vmid"]: r["value"][1] for r in run(prometheus, status, "prod")}
    assert rows == {"100": "1", "101": "0", "102": "1"}


# --- the JSON model -----------------------------------------------------------------------------------------


def test_dashboard_is_provisioning_ready() -> None:
    text = json.dumps(BOARD)
    assert "__inputs" not in BOARD and "DS_PROMETHEUS" not in text
    assert BOARD.get("id") is None  # a provisioned file must not carry a database id
    assert BOARD["uid"] == "vzkeep-backups" and len(BOARD["uid"]) <= 40
    assert {v["name"] for v in BOARD["templating"]["list"]} == {"datasource", "env"}
    assert json.loads(text) == BOARD


def test_every_target_uses_the_datasource_variable() -> None:
    for panel in BOARD["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]
    ids = [panel["id"] for panel in BOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_issue_panels_are_present() -> None:
    titles = {panel["title"] for panel in BOARD["panels"]}
    assert {"Guests", "Environment backup size", "Coverage", "Backup storage use", "Failed backups over time"} <= titles
    storage = next(p for p in BOARD["panels"] if p["title"] == "Backup storage use")
    steps = storage["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "red", "value": 0.8} in steps
    assert storage["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}


def test_unknown_variable_is_an_error_not_left_in_the_query() -> None:
    with pytest.raises(KeyError, match=r"\$storage"):
        dashboard.substitute('up{storage=~"$storage"}', {"env": "prod"})
    filled = dashboard.substitute('x{env=~"${env}"} or y{env=~"$env"}', {"env": "lab"})
    assert filled == 'x{env=~"lab"} or y{env=~"lab"}'


def test_render_writes_the_dashboard_file(tmp_path: Path) -> None:
    from test_rules import PROD

    written = render.render_monitoring(PROD, tmp_path, render.RenderOptions(exporter_host=True))
    board = next(f.path for f in written if f.kind == "dashboard")
    assert json.loads(board.read_text())["uid"] == "vzkeep-backups"
