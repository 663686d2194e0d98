"""The demo: the whole strategy on an emulated cluster, one simulated week, in well under a minute.

A sandbox starts with what exists before `pulumi up` (nodes, the inventories' guests, node-local
storage); the three stacks are then applied to it with `vzkeep sandbox apply`, so pools, storages,
jobs and the exporter's identity arrive through the PVE API as pulumi-proxmoxve sends them. Its clock
starts a week ago and is
advanced a day at a time: jobs fire on their schedules, vzdump writes real archives, retention
prunes. On the last night a guest is locked, so its backup fails like PVE's (`VM is locked`).
Everything the report shows is read back through the PVE API, as from a real cluster; the exporter
polls the sandbox, and when Prometheus is installed it evaluates the generated alert rules.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from vzkeep.apply.engine import ApplyOptions, apply_stack
from vzkeep.config import load_stack_file, stack_file, stack_names
from vzkeep.connection import ConnectionOptions, connect_client
from vzkeep.exporter import Poller, Snapshot
from vzkeep.exporter.server import Exporter
from vzkeep.monitoring.alert_preview import Alert, PrometheusMissing, evaluate_alerts
from vzkeep.monitoring.render import RenderOptions, monitoring_texts
from vzkeep.net import free_port
from vzkeep.plan import plan_stack
from vzkeep.pve import archive, calendar
from vzkeep.pve.client import PveClient
from vzkeep.pve.tasklog import parse_task_log
from vzkeep.sandbox.client import control
from vzkeep.sandbox.diskdata import scaled_size
from vzkeep.sandbox.launch import launch
from vzkeep.sandbox.server import CONNECTION_FILE

DAY = 86_400
DEFAULT_DAYS = 7
FAILING_GUEST = 101  # prod's postgres: the guest whose failure matters most


@dataclass
class EnvironmentReport:
    env: str
    guests: list[str] = field(default_factory=list)
    archives: dict[str, int] = field(default_factory=dict)  # storage -> archives now
    bytes: dict[str, int] = field(default_factory=dict)  # storage -> bytes now
    pruned: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    environments: dict[str, EnvironmentReport]
    snapshot: Snapshot
    alerts: list[Alert] | str  # the alerts, or why they could not be evaluated
    days: int
    started_at: int
    ended_at: int
    tasks: int
    wall_seconds: float
    sandbox_json: Path


def default_start(days: int = DEFAULT_DAYS) -> int:
    """The demo's week ends about now, on the hour, so the ages it shows look real."""
    return (int(time.time()) - days * DAY) // 3600 * 3600


def run_demo(directory: Path, root: Path, *, days: int = DEFAULT_DAYS, start: int | None = None,
             progress: Callable[[str], None] = lambda _msg: None) -> DemoResult:
    """A sandbox from the stacks under `root`, the stacks applied to it, `days` simulated days from `start`
    (epoch seconds; default: so that they end now), a report. The story is the same whatever the start."""
    began = time.monotonic()
    start_epoch = default_start(days) if start is None else start
    running = launch(directory, stacks_root=root, port=free_port(), stepped=True, start_epoch=start_epoch)
    try:
        sandbox_json = directory / CONNECTION_FILE
        for name in stack_names(root):
            progress(f"pulumi up of stack {name}, done to the sandbox through the PVE API (vzkeep sandbox apply)")
            apply_stack(ApplyOptions(stack=name, sandbox=sandbox_json, root=root, advance=True))
        _size_backup_storages(sandbox_json, root)
        api = connect_client(ConnectionOptions(sandbox=sandbox_json))
        seen: dict[str, set[str]] = defaultdict(set)  # storage -> every volid ever listed
        tasks = 0
        nights = days + (_offsite_run(root, start_epoch + (days - 1) * DAY) is not None)
        if nights > days:
            progress(f"night {days} also makes the weekly offsite copy: the failure waits one more night, "
                     "so that it is the guest's newest attempt and nothing else fails")
        for day in range(1, nights + 1):
            if day == nights:
                control(sandbox_json, "POST", f"/guests/{FAILING_GUEST}/lock", lock="backup")
                progress(f"night {day}: guest {FAILING_GUEST} is left locked by a backup that never finished: "
                         "tonight's backup of it fails")
            started = control(sandbox_json, "POST", "/advance", seconds=DAY)
            tasks += len(started.get("tasks") or [])
            if day == nights:
                control(sandbox_json, "POST", f"/guests/{FAILING_GUEST}/lock", lock="")
            for storage, volids in _volids(api).items():
                seen[storage] |= volids
            progress(f"day {day}/{nights}: {len(started.get('tasks') or [])} backup task(s)")
        environments = _report(api, seen, _timezones(root))
        now = control(sandbox_json, "GET", "/status")["now"]
        progress("the exporter polls the sandbox; Prometheus evaluates the generated rules")
        with Exporter(Poller(api.get), listen=f"127.0.0.1:{free_port()}", interval=3600) as exporter:
            snapshot = _first_snapshot(exporter)
            alerts = _alerts(root, exporter.address)
        return DemoResult(environments=environments, snapshot=snapshot, alerts=alerts, days=nights,
                          started_at=start_epoch, ended_at=int(now), tasks=tasks,
                          wall_seconds=time.monotonic() - began, sandbox_json=sandbox_json)
    finally:
        running.stop()


def _offsite_run(root: Path, night: int) -> int | None:
    """When the failing guest's environment runs its offsite copy in the day that begins at `night`, if it
    does. A failure on that night would fail the copy too, and the story would change with the weekday."""
    plan = next(p for p in (plan_stack(load_stack_file(stack_file(n, root))) for n in stack_names(root))
                if any(g.vmid == FAILING_GUEST for g in p.guests))
    if plan.offsite is None:
        return None
    fired = calendar.parse(plan.offsite.job.schedule).next_after(night - 1, plan.offsite.job.timezone)
    return fired if fired is not None and fired < night + DAY else None


def _size_backup_storages(sandbox_json: Path, root: Path) -> None:
    """Give each backup storage a disk like a real one (`vzkeep sandbox capacity`): every kept archive of
    every guest fits with room to spare (archives are scaled down, so is the capacity)."""
    for name in stack_names(root):
        plan = plan_stack(load_stack_file(stack_file(name, root)))
        raw = sum(scaled_size(g.disk_gb * 1024**3) for g in plan.guests)
        for job in [plan.job] + ([plan.offsite.job] if plan.offsite else []):
            kept = sum(job.prune_backups.values())
            control(sandbox_json, "POST", f"/storage/{job.storage}/capacity", bytes=raw * (kept + 2))


def _first_snapshot(exporter: Exporter, timeout: float = 30.0) -> Snapshot:
    deadline = time.monotonic() + timeout
    while exporter.loop.polls == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return exporter.poller.snapshot


def _alerts(root: Path, exporter_address: str) -> list[Alert] | str:
    """The alerts the generated rules raise now, or why they could not be evaluated."""
    texts = []
    for i, name in enumerate(stack_names(root)):
        plan = plan_stack(load_stack_file(stack_file(name, root)))
        options = RenderOptions(exporter_host=i == 0)  # the global rules once
        texts += [f.text for f in monitoring_texts(plan.thresholds, options) if f.kind == "rules"]
    try:
        return evaluate_alerts(texts, exporter_address)
    except (PrometheusMissing, TimeoutError) as err:
        return str(err)


def _storages(api: PveClient) -> dict[str, str]:
    """Backup storage -> one node that sees it (a shared storage is listed once)."""
    found: dict[str, str] = {}
    for item in api.get("cluster/resources", type="storage"):
        if "backup" in str(item.get("content", "")).split(",") and item.get("status") == "available":
            found.setdefault(item["storage"], item["node"])
    return found


def _volids(api: PveClient) -> dict[str, set[str]]:
    return {storage: {v["volid"] for v in _content(api, storage, node)} for storage, node in _storages(api).items()}


def _content(api: PveClient, storage: str, node: str) -> list[dict[str, Any]]:
    return api.get(f"nodes/{node}/storage/{storage}/content", content="backup")


def _timezones(root: Path) -> dict[str, str]:
    """Environment -> its nodes' time zone, to show times as the admin reads them."""
    return {name: load_stack_file(stack_file(name, root)).environment.timezone for name in stack_names(root)}


def _report(api: PveClient, seen: dict[str, set[str]], zones: dict[str, str]) -> dict[str, EnvironmentReport]:
    guests = api.get("cluster/resources", type="vm")
    env_of = {int(g["vmid"]): g.get("pool") or "none" for g in guests}
    reports: dict[str, EnvironmentReport] = {}
    for g in sorted(guests, key=lambda g: int(g["vmid"])):
        reports.setdefault(env_of[int(g["vmid"])], EnvironmentReport(env_of[int(g["vmid"])])).guests.append(
            f"{g['vmid']} {g.get('name', '')}")
    for storage, node in _storages(api).items():
        content = _content(api, storage, node)
        present = {v["volid"] for v in content}
        for item in content:
            report = reports.setdefault(env_of.get(int(item["vmid"]), "none"), EnvironmentReport("none"))
            report.archives[storage] = report.archives.get(storage, 0) + 1
            report.bytes[storage] = report.bytes.get(storage, 0) + int(item["size"])
        for volid in seen.get(storage, set()) - present:
            vmid = archive.parse(volid).vmid or 0
            reports.setdefault(env_of.get(vmid, "none"), EnvironmentReport("none")).pruned += 1
    for env, message in _failures(api, env_of, zones):
        reports.setdefault(env, EnvironmentReport(env)).failures.append(message)
    return dict(sorted(reports.items()))


def _failures(api: PveClient, env_of: dict[int, str], zones: dict[str, str]) -> list[tuple[str, str]]:
    """Every guest backup that failed, from the vzdump task logs of every node (PVE's own words)."""
    found = []
    for node in api.get("nodes"):
        if node.get("status") != "online":
            continue
        for task in api.get(f"nodes/{node['node']}/tasks", typefilter="vzdump", errors=1, limit=500):
            lines = [entry["t"] for entry in api.get(f"nodes/{node['node']}/tasks/{task['upid']}/log", limit=0)]
            for outcome in parse_task_log(lines).outcomes:
                if not outcome.ok:
                    env = env_of.get(outcome.vmid, "none")
                    when = datetime.fromtimestamp(int(task["starttime"]), ZoneInfo(zones.get(env, "UTC")))
                    found.append((env, f"{when:%a %d %b %H:%M} on {node['node']}: VM {outcome.vmid} - "
                                       f"{outcome.error}"))
    return found
