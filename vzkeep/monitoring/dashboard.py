"""Grafana dashboard for vzkeep backups, as plain JSON for file provisioning (Grafana's "Dashboard JSON model",
https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/).

No ``__inputs``/``${DS_PROMETHEUS}`` (file provisioning cannot resolve them, grafana#10786) and no ``id``:
the datasource is the ``datasource`` variable, so the file works with any Prometheus datasource name.
Ages are measured against the cluster's clock (``vzkeep.monitoring.CLUSTER_NOW``), like the alerts.
One row per environment (a row repeated over the ``env`` variable), plus exporter health at the top.

``panel_queries()`` lists every query so tests (and the end-to-end harness) run each one against a real
Prometheus; ``substitute()`` fills in the dashboard variables the way Grafana would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vzkeep.monitoring import CLUSTER_NOW

UID = "vzkeep-backups"
TITLE = "vzkeep backups"
FILE_NAME = "vzkeep-backups.json"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ENV = 'env=~"$env"'
GRID_COLUMNS = 24


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    instant: bool


# --- queries ----------------------------------------------------------------------------------------------

JOBS = f"vzkeep_job_info{{{ENV}}}"
NEWEST = f"max by (env, vmid) (vzkeep_backup_last_success_timestamp_seconds{{{ENV}}} > 0)"
OFFSITE_NEWEST = (
    f'max by (env, vmid) (vzkeep_backup_last_success_timestamp_seconds{{{ENV},storage=~"offsite-.*"}} > 0)'
)
GUEST_TABLE = [  # (refId, column title, expr, unit or mapping; None = the labels-only first query)
    ("A", "guest", f"max by (env, vmid, name, type, node) (vzkeep_guest_info{{{ENV}}})", None),
    ("B", "Last success", f"{NEWEST} * 1000", "dateTimeAsIso"),
    ("C", "Age", f"clamp_min({CLUSTER_NOW} - {NEWEST}, 0)", "dtdurations"),
    ("D", "Size", f"max by (env, vmid) (vzkeep_backup_last_size_bytes{{{ENV}}})", "bytes"),
    ("E", "Last status", f"max by (env, vmid) (vzkeep_backup_last_status{{{ENV}}})", "status"),
    ("F", "Covered", f"max by (env, vmid) (vzkeep_guest_covered{{{ENV}}})", "covered"),
    # The newest copy on the NAS (RemoteStore, storage offsite-<env>): empty where no NAS is configured.
    ("G", "Offsite copy", f"{OFFSITE_NEWEST} * 1000", "dateTimeAsIso"),
]
JOB_TABLE = [
    ("A", "job", f"max by (job, env, schedule, storage) (vzkeep_job_info{{{ENV}}})", None),
    ("B", "Next run", f"max by (job) (vzkeep_job_next_run_timestamp_seconds and on (job) {JOBS}) * 1000",
     "dateTimeAsIso"),
    ("C", "Last run", f"max by (job) (vzkeep_job_last_run_timestamp_seconds and on (job) {JOBS}) * 1000",
     "dateTimeAsIso"),
    ("D", "Last status", f"max by (job) (vzkeep_job_last_status and on (job) {JOBS})", "status"),
    ("E", "Enabled", f"max by (job) (vzkeep_job_enabled and on (job) {JOBS})", "covered"),
]
# Only the storages the env's jobs write to; `and` instead of a join so a storage shared by two envs
# cannot make the query fail with "many-to-many matching".
STORAGE_USE = (
    "max by (storage) (vzkeep_storage_used_bytes / vzkeep_storage_size_bytes) "
    f"and on (storage) vzkeep_job_info{{{ENV}}}"
)

_MAPPINGS = {
    "status": [{"type": "value", "options": {
        "1": {"text": "OK", "color": "green", "index": 0},
        "0": {"text": "FAILED", "color": "red", "index": 1}}}],
    "covered": [{"type": "value", "options": {
        "1": {"text": "yes", "color": "green", "index": 0},
        "0": {"text": "NO", "color": "red", "index": 1}}}],
}


# --- panel builders ---------------------------------------------------------------------------------------


def _target(ref_id: str, expr: str, *, instant: bool, legend: str = "", table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE, "refId": ref_id, "expr": expr, "instant": instant, "range": not instant,
        "legendFormat": legend or "__auto",
    }
    if table:
        target["format"] = "table"
    return target


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def _stat(title: str, expr: str, grid: tuple[int, int, int, int], unit: str, thresholds: dict[str, Any],
          description: str) -> dict[str, Any]:
    return {
        "type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": _grid(grid), "targets": [_target("A", expr, instant=True)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds, "color": {"mode": "thresholds"}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "textMode": "value", "justifyMode": "auto"},
    }


def _timeseries(title: str, expr: str, grid: tuple[int, int, int, int], unit: str, legend: str,
                description: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    field_defaults: dict[str, Any] = {"unit": unit, "custom": {"lineWidth": 2, "fillOpacity": 10}}
    field_defaults.update(defaults or {})
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": _grid(grid), "targets": [_target("A", expr, instant=False, legend=legend)],
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
    }


def _table(title: str, columns: Sequence[tuple[str, str, str, str | None]], grid: tuple[int, int, int, int],
           description: str, sort_by: str) -> dict[str, Any]:
    """A table merging one instant query per column on their shared labels (Grafana's "merge")."""
    rename = {f"Value #{ref}": name for ref, name, _, unit in columns if unit is not None}
    overrides = [_column_override(name, unit) for _, name, _, unit in columns if unit is not None]
    return {
        "type": "table", "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": _grid(grid),
        "targets": [_target(ref, expr, instant=True, table=True) for ref, _, expr, _ in columns],
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, f"Value #{columns[0][0]}": True},
                "renameByName": rename}},
        ],
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": overrides},
        "options": {"showHeader": True, "sortBy": [{"displayName": sort_by, "desc": True}]},
    }


def _column_override(name: str, unit: str) -> dict[str, Any]:
    properties: list[dict[str, Any]]
    if unit in _MAPPINGS:
        properties = [{"id": "mappings", "value": _MAPPINGS[unit]},
                      {"id": "custom.cellOptions", "value": {"type": "color-background"}}]
    else:
        properties = [{"id": "unit", "value": unit}]
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


def _grid(grid: tuple[int, int, int, int]) -> dict[str, int]:
    x, y, w, h = grid
    return {"x": x, "y": y, "w": w, "h": h}


def _row(title: str, y: int, repeat: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"type": "row", "title": title, "collapsed": False, "panels": [],
                           "gridPos": _grid((0, y, GRID_COLUMNS, 1))}
    if repeat:
        row["repeat"] = repeat
    return row


# --- the dashboard ----------------------------------------------------------------------------------------


def _exporter_panels() -> list[dict[str, Any]]:
    return [
        _row("vzkeep exporter", 0),
        _stat("Exporter polling PVE", "min(vzkeep_up)", (0, 1, 8, 4), "none",
              _thresholds(("red", None), ("green", 1)),
              "1 when the exporter's last poll of the PVE API succeeded. 0 or no value: alerts are blind."),
        _stat("Last poll", "time() - max(vzkeep_poll_timestamp_seconds)", (8, 1, 8, 4), "s",
              _thresholds(("green", None), ("red", 600)), "Seconds since the exporter last polled PVE."),
        _stat("Guests in no pool, not backed up", 'count(vzkeep_guest_covered{env=""} == 0) or vector(0)',
              (16, 1, 8, 4), "none", _thresholds(("green", None), ("red", 1)),
              "Guests outside every environment's pool that no backup job selects."),
    ]


def _environment_panels(y: int) -> list[dict[str, Any]]:
    return [
        _row("Environment $env", y, repeat="env"),
        _stat("Coverage", f"sum(vzkeep_guest_covered{{{ENV}}}) / count(vzkeep_guest_info{{{ENV}}})",
              (0, y + 1, 6, 4), "percentunit", _thresholds(("red", None), ("green", 1)),
              "Share of the environment's guests selected by an enabled backup job (target: 100%)."),
        _stat("Failed backups", f"count(max by (vmid) (vzkeep_backup_last_status{{{ENV}}}) == 0) or vector(0)",
              (6, y + 1, 6, 4), "none", _thresholds(("green", None), ("red", 1)),
              "Guests whose last backup attempt failed."),
        _stat("Oldest last backup", f"max(clamp_min({CLUSTER_NOW} - {NEWEST}, 0))", (12, y + 1, 6, 4), "dtdurations",
              _thresholds(("green", None), ("orange", 26 * 3600), ("red", 48 * 3600)),
              "Age of the newest archive of the guest that waited longest."),
        _stat("Backup size", f"sum(vzkeep_env_backup_bytes{{{ENV}}})", (18, y + 1, 6, 4), "bytes",
              _thresholds(("blue", None)), "Bytes of all archives of the environment, on every storage."),
        _table("Guests", GUEST_TABLE, (0, y + 5, 24, 10),
               "Per guest: newest archive on any storage, its age and size, last attempt, coverage, offsite copy.",
               "Age"),
        _timeseries("Environment backup size", f"sum by (env, storage) (vzkeep_env_backup_bytes{{{ENV}}})",
                    (0, y + 15, 12, 8), "bytes", "{{storage}}", "Bytes of the environment's archives per storage."),
        _timeseries("Backup storage use", STORAGE_USE, (12, y + 15, 12, 8), "percentunit", "{{storage}}",
                    "Used share of the environment's backup storages. Must stay under the 80% line.",
                    {"min": 0, "max": 1, "thresholds": _thresholds(("green", None), ("red", 0.8)),
                     "custom": {"lineWidth": 2, "fillOpacity": 10, "thresholdsStyle": {"mode": "line"}}}),
        _timeseries("Failed backups over time",
                    f"sum by (env) (1 - max by (env, vmid) (vzkeep_backup_last_status{{{ENV}}}))",
                    (0, y + 23, 12, 8), "none", "failed",
                    "Number of guests whose last backup attempt had failed, over time.",
                    {"custom": {"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1}}),
        _table("Backup jobs", JOB_TABLE, (12, y + 23, 12, 8), "The environment's PVE backup jobs.", "Next run"),
    ]


def _variables() -> list[dict[str, Any]]:
    return [
        {"type": "datasource", "name": "datasource", "label": "Datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"type": "query", "name": "env", "label": "Environment", "datasource": DATASOURCE,
         "query": {"query": "label_values(vzkeep_guest_info, env)", "refId": "env"},
         "definition": "label_values(vzkeep_guest_info, env)", "regex": "/.+/",
         "multi": True, "includeAll": True, "current": {}, "refresh": 2, "sort": 1, "hide": 0, "options": []},
    ]


def build_dashboard() -> dict[str, Any]:
    """The dashboard JSON model (classic, provisioning-ready)."""
    panels = _exporter_panels() + _environment_panels(y=5)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": UID, "title": TITLE, "description": "Backups of Proxmox VE guests per environment (vzkeep).",
        "tags": ["vzkeep", "backup", "proxmox"], "timezone": "browser", "editable": True,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "1m", "graphTooltip": 1,
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def panel_queries(board: Mapping[str, Any] | None = None) -> list[PanelQuery]:
    """Every query of every panel, in panel order (rows have none)."""
    board = board if board is not None else build_dashboard()
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Fill ``$var`` / ``${var}`` like Grafana does; an unknown variable is an error, not silently kept."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"dashboard variable ${name} has no value (known: {', '.join(sorted(values))})")
        return values[name]

    return _VARIABLE.sub(value, expr)
