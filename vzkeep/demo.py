"""The demo: the whole strategy on an emulated cluster, one simulated week, in well under a minute.

A sandbox starts with what exists before `pulumi up` (nodes, the inventories' guests, node-local
storage); the three stacks are then applied to it with `vzkeep sandbox apply`, so pools, storages,
jobs and the exporter's identity arrive through the PVE API as pulumi-proxmoxve sends them. Its clock
starts a week ago and is advanced a day at a time: jobs fire on their schedules, vzdump writes real
archives, retention prunes. On the last night a guest is locked, so its backup fails like PVE's
(`VM is locked (backup)`). Then the runtime does what an admin would: the exporter polls the
sandbox, a real Prometheus evaluates the generated rules and sends what fires to a real Alertmanager
(the generated config, its Telegram receiver pointed at a local stub), verify reads every archive,
the failed guest is restored beside the original, a drill runs in each environment. Everything the
report shows is read back through the PVE API, as from a real cluster.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.apply.engine import ApplyOptions, apply_stack
from vzkeep.backups import Backup, collect
from vzkeep.cli.output import format_time
from vzkeep.config import load_stack_file, stack_file, stack_names
from vzkeep.connection import ConnectionOptions, connect_client
from vzkeep.drill import (
    DEFAULT_SCRATCH,
    DrillOptions,
    DrillResult,
    DrillResultStore,
    destroy_scratch,
    drill_targets,
    free_scratch_vmid,
    run_drill,
)
from vzkeep.exporter import Poller, Snapshot
from vzkeep.exporter.server import Exporter
from vzkeep.follow import Wait
from vzkeep.monitoring import DeliveryTiming
from vzkeep.monitoring.alert_preview import Alert, PrometheusMissing, RulePreview
from vzkeep.monitoring.alertmanager import TelegramTarget
from vzkeep.monitoring.notify_preview import AlertmanagerMissing, AlertmanagerPreview
from vzkeep.monitoring.render import RenderOptions, monitoring_texts
from vzkeep.monitoring.telegram_stub import TelegramStub
from vzkeep.net import free_port
from vzkeep.plan import JobSpec, StackPlan, plan_stack
from vzkeep.pve import archive, calendar, retention, vma
from vzkeep.pve.client import PveClient
from vzkeep.pve.decompress import DecompressedStream, ExactReader
from vzkeep.pve.tasklog import parse_task_log
from vzkeep.restore import (
    RestoreError,
    RestoreOptions,
    archive_path,
    execute,
    free_vmid,
    plan_restore,
    precheck,
)
from vzkeep.sandbox.client import SandboxClock, control
from vzkeep.sandbox.diskdata import file_digest, scaled_size
from vzkeep.sandbox.launch import launch
from vzkeep.sandbox.server import CONNECTION_FILE
from vzkeep.verify import ClusterView, ResultStore, verify_paths

DAY = 86_400
DEFAULT_DAYS = 7
FAILING_GUEST = 101  # prod's postgres: the guest whose failure matters most
# The demo's Alertmanager: a group is flushed 1 s after its first alert instead of the shipped 10 s
# (vzkeep.monitoring.DeliveryTiming), so the message arrives within seconds of Prometheus firing; the
# route, receiver and template are the shipped ones.
DEMO_TIMING = DeliveryTiming(exporter_poll_seconds=2, scrape_interval_seconds=2, evaluation_interval_seconds=1,
                             group_wait_seconds=1, group_interval_seconds=1)
DEMO_CHAT = -1001234567890  # the monitoring stack's chat; the message goes to the local stub only
DEMO_BOT_TOKEN = "123456:demo-token-for-the-local-stub"  # not a secret: the stub accepts any token
EXPORTER_POLL_SECONDS = 2.0
TELEGRAM_SECONDS = 20.0  # Prometheus fires at its first evaluation (for: 0), Alertmanager flushes after 1 s
WAIT_SECONDS = 120.0  # a restore, a start or a destroy on the sandbox (the waits move its clock)
VERIFY_STORE = "verify.sqlite"  # verify's results for this demo's cluster (SQLite, as vzkeep verify keeps them)


@dataclass
class EnvironmentReport:
    env: str
    guests: list[str] = field(default_factory=list)
    archives: dict[str, int] = field(default_factory=dict)  # storage -> archives now
    bytes: dict[str, int] = field(default_factory=dict)  # storage -> bytes now
    pruned: int = 0
    failures: list[str] = field(default_factory=list)
    retention: str = ""  # the job's prune-backups, as PVE writes it
    next_prune: PruneForecast | None = None  # when nothing was pruned yet: what retention removes first


@dataclass(frozen=True)
class PruneForecast:
    """The first archive retention will remove, and after which of the job's next runs."""

    volid: str
    after_run: int  # epoch of the backup run whose prune removes it
    timezone: str


@dataclass(frozen=True)
class VerifySummary:
    archives: int
    ok: int
    problems: list[str]  # "volid: problem" for each archive that is not OK
    by_env: dict[str, tuple[int, int]] = field(default_factory=dict)  # env -> (OK, archives)


@dataclass(frozen=True)
class RestoreReport:
    volid: str  # the last good backup of the failed guest
    backup_ctime: int
    vmid: int  # restored as this VMID, beside the original
    node: str
    archive_digest: str  # SHA-256 of the disk inside the archive
    restored_digest: str  # SHA-256 of the restored guest's disk, as the sandbox holds it
    seconds: float


@dataclass(frozen=True)
class OffsiteReport:
    env: str
    storage: str
    shared: bool
    nodes: tuple[str, ...]  # the nodes that see the copies
    copies: dict[int, int]  # vmid -> ctime of its newest copy


@dataclass
class DemoResult:
    environments: dict[str, EnvironmentReport]
    snapshot: Snapshot
    alerts: list[Alert] | str  # the alerts after the week, or why they could not be evaluated
    days: int
    started_at: int
    ended_at: int
    tasks: int
    wall_seconds: float
    sandbox_json: Path
    timezones: dict[str, str] = field(default_factory=dict)  # env -> its nodes' zone
    telegram: str = ""  # the text the Telegram stub received for the failure
    telegram_missing: str = ""  # why no message could be shown
    verify: VerifySummary | None = None
    restore: RestoreReport | None = None
    drills: dict[str, DrillResult] = field(default_factory=dict)  # env -> its drill
    alerts_after: list[Alert] | str = ""  # once the drills ran
    offsite: list[OffsiteReport] = field(default_factory=list)
    snapshot_after: Snapshot | None = None


def default_start(days: int = DEFAULT_DAYS) -> int:
    """The demo's week ends about now, on the hour, so the ages it shows look real."""
    return (int(time.time()) - days * DAY) // 3600 * 3600


def run_demo(directory: Path, root: Path, *, days: int = DEFAULT_DAYS, start: int | None = None,
             progress: Callable[[str], None] = lambda _msg: None,
             keep_serving: Callable[[str], None] | None = None, recovery: bool = True) -> DemoResult:
    """A sandbox from the stacks under `root`, the stacks applied to it, `days` simulated days from `start`
    (epoch seconds; default: so that they end now), then the runtime's story on it: the alert and its
    Telegram message, verify, a restore, drills, the offsite copies. The story is the same whatever the
    start. `keep_serving`, when given, is called with the exporter's status page URL before it stops;
    `recovery=False` stops after the alert and its message (no verify, restore, drill)."""
    began = time.monotonic()
    start_epoch = default_start(days) if start is None else start
    running = launch(directory, stacks_root=root, port=free_port(), stepped=True, start_epoch=start_epoch)
    try:
        sandbox_json = directory / CONNECTION_FILE
        plans = stack_plans(root)
        nights, tasks, seen = _week(sandbox_json, root, plans, days, start_epoch, progress)
        api = connect_client(ConnectionOptions(sandbox=sandbox_json))
        zones = {env: plan.job.timezone for env, plan in plans.items()}  # each environment's nodes' zone
        environments = _report(api, seen, zones, {env: plan.job for env, plan in plans.items()})
        now = control(sandbox_json, "GET", "/status")["now"]
        result = DemoResult(environments=environments, snapshot=Snapshot(), alerts="", days=nights,
                            started_at=start_epoch, ended_at=int(now), tasks=tasks, wall_seconds=0.0,
                            sandbox_json=sandbox_json, timezones=zones)
        _runtime_story(result, api, plans, directory, progress, keep_serving, recovery)
        result.wall_seconds = time.monotonic() - began
        return result
    finally:
        running.stop()


def stack_plans(root: Path) -> dict[str, StackPlan]:
    """Each stack under `root`, planned once (stack name = environment): the demo reads their jobs,
    storages, zones and thresholds many times."""
    return {name: plan_stack(load_stack_file(stack_file(name, root))) for name in stack_names(root)}


def _week(sandbox_json: Path, root: Path, plans: dict[str, StackPlan], days: int, start_epoch: int,
          progress: Callable[[str], None]) -> tuple[int, int, dict[tuple[str, str], set[str]]]:
    """Apply the stacks, then let the nights pass (the failure on the last): nights, tasks, volids seen."""
    for name in plans:
        progress(f"pulumi up of stack {name}, done to the sandbox through the PVE API (vzkeep sandbox apply)")
        apply_stack(ApplyOptions(stack=name, sandbox=sandbox_json, root=root, advance=True))
    _size_backup_storages(sandbox_json, plans)
    api = connect_client(ConnectionOptions(sandbox=sandbox_json))
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)  # (storage, node) -> every volid ever listed
    tasks = 0
    nights = days + (_offsite_run(plans, start_epoch + (days - 1) * DAY) is not None)
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
        for place, volids in _volids(api).items():
            seen[place] |= volids
        progress(f"day {day}/{nights}: {len(started.get('tasks') or [])} backup task(s)")
    return nights, tasks, seen


def _runtime_story(result: DemoResult, api: PveClient, plans: dict[str, StackPlan], directory: Path,
                   progress: Callable[[str], None], keep_serving: Callable[[str], None] | None,
                   recovery: bool = True) -> None:
    """What an admin runs after the week, with the exporter and (when installed) Prometheus, Alertmanager
    and the Telegram stub watching: each step's outcome lands in `result`."""
    results = directory / "runtime"
    results.mkdir(exist_ok=True)
    verify_store = ResultStore(results / VERIFY_STORE)
    drill_store = DrillResultStore(results / "drills.json")
    wait = Wait(WAIT_SECONDS, SandboxClock(result.sandbox_json), advance=True, on_note=progress)
    poller = Poller(api.get, verify_results=results / VERIFY_STORE, drill_results=results / "drills.json")
    progress("the exporter polls the sandbox; Prometheus evaluates the generated rules and sends what fires "
             "to Alertmanager, which delivers to a local Telegram stub")
    with Exporter(poller, listen=f"127.0.0.1:{free_port()}", interval=EXPORTER_POLL_SECONDS) as exporter, \
            _Alerting(plans, exporter.address) as alerting:
        result.snapshot, result.alerts = _watched(exporter, alerting)
        result.telegram, result.telegram_missing = alerting.message(FAILING_GUEST)
        result.offsite = _offsite(api, plans)
        if not recovery:
            return
        progress("verify reads every archive of the week")
        result.verify = _verify_week(api, result.timezones, verify_store)
        progress(f"restore of guest {FAILING_GUEST} from its last good backup, beside the original")
        result.restore = _restore_failed(api, result.sandbox_json, verify_store, wait)
        progress("a restore drill in each environment")
        result.drills = _drill_each_env(api, drill_store, verify_store, wait, progress)
        result.snapshot_after, result.alerts_after = _watched(exporter, alerting)
        if keep_serving is not None:
            keep_serving(exporter.page_url)


def _offsite_run(plans: dict[str, StackPlan], night: int) -> int | None:
    """When the failing guest's environment runs its offsite copy in the day that begins at `night`, if it
    does. A failure on that night would fail the copy too, and the story would change with the weekday."""
    plan = next(p for p in plans.values() if any(g.vmid == FAILING_GUEST for g in p.guests))
    if plan.offsite is None:
        return None
    fired = calendar.parse(plan.offsite.job.schedule).next_after(night - 1, plan.offsite.job.timezone)
    return fired if fired is not None and fired < night + DAY else None


def _size_backup_storages(sandbox_json: Path, plans: dict[str, StackPlan]) -> None:
    """Give each backup storage a disk like a real one (`vzkeep sandbox capacity`): every kept archive of
    every guest fits with room to spare (archives are scaled down, so is the capacity)."""
    for plan in plans.values():
        raw = sum(scaled_size(g.disk_gb * 1024**3) for g in plan.guests)
        for job in [plan.job] + ([plan.offsite.job] if plan.offsite else []):
            kept = sum(job.prune_backups.values())
            control(sandbox_json, "POST", f"/storage/{job.storage}/capacity", bytes=raw * (kept + 2))


def _next_snapshot(exporter: Exporter, timeout: float = 30.0) -> Snapshot:
    """The snapshot of a poll that began after this call (the first one, right after start)."""
    wanted = exporter.loop.polls + (2 if exporter.loop.polls else 1)  # one may be under way
    deadline = time.monotonic() + timeout
    while exporter.loop.polls < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return exporter.poller.snapshot


def _watched(exporter: Exporter, alerting: _Alerting) -> tuple[Snapshot, list[Alert] | str]:
    """The exporter's next snapshot and the alerts Prometheus evaluates on it. Prometheus starts before the
    exporter's first poll ends and may scrape the empty page served until then: only a scrape made after
    the snapshot was taken counts."""
    snapshot = _next_snapshot(exporter)
    return snapshot, alerting.alerts(after=time.time())


class _Alerting:
    """Prometheus with the generated rules, Alertmanager with the generated config and the Telegram stub
    behind its `api_url`: each runs when installed, and what is missing is said instead of shown."""

    def __init__(self, plans: dict[str, StackPlan], exporter_address: str) -> None:
        self.plans = plans
        self.exporter_address = exporter_address
        self.stack = contextlib.ExitStack()
        self.telegram: TelegramStub | None = None
        self.rules: RulePreview | None = None
        self.missing: list[str] = []

    def __enter__(self) -> _Alerting:
        self.telegram = self.stack.enter_context(TelegramStub())
        texts, alertmanager_text = _monitoring_files(self.plans, self.telegram.url)
        alertmanager = None
        try:
            alertmanager = self.stack.enter_context(AlertmanagerPreview(alertmanager_text)).address
        except (AlertmanagerMissing, RuntimeError, TimeoutError) as err:
            self.missing.append(str(err))
        try:
            self.rules = self.stack.enter_context(RulePreview(texts, self.exporter_address,
                                                              alertmanager=alertmanager))
        except PrometheusMissing as err:
            self.missing.insert(0, str(err))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def alerts(self, after: float = 0.0) -> list[Alert] | str:
        if self.rules is None:
            return self.missing[0]
        try:
            return self.rules.alerts(after=after)
        except TimeoutError as err:
            return str(err)

    def message(self, vmid: int) -> tuple[str, str]:
        """The Telegram message about `vmid` (its text, ''), or ('', why there is none)."""
        if self.rules is None or self.telegram is None or self.missing:
            return "", "; ".join(self.missing)
        try:
            found = self.telegram.wait_for_message(lambda m: f"vmid {vmid}" in m.text, timeout=TELEGRAM_SECONDS)
        except TimeoutError as err:
            return "", str(err)
        return found.text, ""


def _monitoring_files(plans: dict[str, StackPlan], telegram_url: str) -> tuple[list[str], str]:
    """Every stack's generated rule files, and the generated alertmanager.yml with its Telegram receiver
    sending to `telegram_url` (a made-up token; the chat from the stack) and the demo's short timing."""
    texts, alertmanager = [], ""
    for i, plan in enumerate(plans.values()):
        target = TelegramTarget(chat_id=DEMO_CHAT, bot_token=DEMO_BOT_TOKEN, api_url=telegram_url)
        options = RenderOptions(exporter_host=i == 0, telegram=target if i == 0 else None, timing=DEMO_TIMING)
        for item in monitoring_texts(plan.thresholds, options):
            if item.kind == "rules":
                texts.append(item.text)
            elif item.kind == "alertmanager":
                alertmanager = item.text
    return texts, alertmanager


def _verify_week(api: PveClient, zones: dict[str, str], store: ResultStore) -> VerifySummary:
    """`vzkeep verify` of every archive the cluster holds, read where the sandbox keeps it (the API's
    path of each volume), each named in its node's zone. The one place the demo calls verify."""
    found: dict[str, Backup] = {}  # path -> its backup
    clock = ClusterView(api).clock()  # results dated in the sandbox's week, as vzkeep verify --sandbox does
    for backup in collect(api).backups:
        path = archive_path(api, backup.nodes[0], backup) if backup.nodes else None
        if path:
            found[path] = backup
    results = verify_paths(found, store=store, zone_for=lambda p: zones.get(found[p].env or "", "UTC"),
                           volid_for=lambda p: found[p].volid, clock=clock)
    by_env: dict[str, list[int]] = {}
    for r in results:
        counts = by_env.setdefault(found[r.path].env or "none", [0, 0])
        counts[0] += int(r.ok)
        counts[1] += 1
    problems = [f"{r.volid or r.path}: {'; '.join(r.problems)}" for r in results if not r.ok]
    return VerifySummary(archives=len(results), ok=sum(r.ok for r in results), problems=problems,
                         by_env={env: (ok, total) for env, (ok, total) in by_env.items()})


def _restore_failed(api: PveClient, sandbox_json: Path, store: ResultStore, wait: Wait) -> RestoreReport:
    """`vzkeep restore 101 --vmid N --unique`: its newest backup (the failed night left none), checked
    first, restored beside the original; the restored disk compared with the one inside the archive.
    The copy is then removed, as an admin would after checking it."""
    began = time.monotonic()
    inventory = collect(api)
    options = RestoreOptions(str(FAILING_GUEST), vmid=free_vmid(inventory, FAILING_GUEST), unique=True, pool="")
    plan = plan_restore(inventory, options)
    check = precheck(api, plan.backup, plan.node, store)
    if not check.ok:
        raise RestoreError(f"{plan.backup.volid} is corrupt: {'; '.join(check.problems)}")
    execute(api, plan, wait)
    seconds = time.monotonic() - began
    restored = control(sandbox_json, "GET", f"/guests/{plan.vmid}/digest")["digest"]
    inside = _archive_disk_digest(archive_path(api, plan.node, plan.backup) or "", plan.backup)
    destroy_scratch(api, plan.node, plan.guest_type, plan.vmid, wait)
    return RestoreReport(volid=plan.backup.volid, backup_ctime=plan.backup.ctime, vmid=plan.vmid, node=plan.node,
                         archive_digest=inside, restored_digest=restored, seconds=seconds)


def _archive_disk_digest(path: str, backup: Backup) -> str:
    """SHA-256 of the first disk inside a VM's archive (vma extract, as qmrestore does): what a restore must
    reproduce. The demo's failing guest is a VM; a container's archive is refused."""
    if backup.guest_type != "qemu":
        raise ValueError(f"{backup.volid}: the demo compares VM disks only")
    with tempfile.TemporaryDirectory(prefix="vzkeep-demo-disk-") as tmp, open(path, "rb") as raw, \
            DecompressedStream(raw, archive.parse(Path(path).name).compression) as stream:
        disks = vma.extract_to_directory(ExactReader(stream), tmp)
        stream.close()
        return file_digest(str(next(iter(disks.values()))))


def _drill_each_env(api: PveClient, store: DrillResultStore, verify_store: ResultStore, wait: Wait,
                    progress: Callable[[str], None]) -> dict[str, DrillResult]:
    """`vzkeep drill --env ENV` on one guest of each environment (the lowest VMID: the same every run)."""
    inventory = collect(api)
    drills = {}
    taken: set[int] = set()
    for env in sorted({b.env for b in inventory.backups if b.env}):
        targets = drill_targets(inventory, env)
        if not targets:
            continue
        scratch = free_scratch_vmid(inventory, DEFAULT_SCRATCH, taken)
        if scratch is None:
            continue
        taken.add(scratch)
        drills[env] = run_drill(api, inventory, targets[0], scratch, store, wait.bounded(WAIT_SECONDS),
                                DrillOptions(DEFAULT_SCRATCH), verify_store, progress)
    return drills


def _offsite(api: PveClient, plans: dict[str, StackPlan]) -> list[OffsiteReport]:
    """Each environment's offsite storage: the newest copy of each guest, and whether the storage is shared."""
    inventory = collect(api)
    reports = []
    for name, plan in plans.items():
        if plan.offsite is None:
            continue
        storage = plan.offsite.storage.id
        copies: dict[int, int] = {}
        for b in inventory.backups:
            if b.storage == storage:
                copies[b.vmid] = max(copies.get(b.vmid, 0), b.ctime)
        view = inventory.storages.get(storage)
        reports.append(OffsiteReport(env=name, storage=storage, shared=bool(view and view.shared),
                                     nodes=inventory.storage_nodes.get(storage, ()), copies=copies))
    return reports


def prune_forecast(listing: list[dict[str, Any]], job: JobSpec, *, nights: int = 400) -> PruneForecast | None:
    """The first of `listing`'s archives that the job's retention removes as further runs add backups
    (PVE prunes after each backup), computed by vzkeep's retention planner; None when none within
    `nights` runs (keep-all)."""
    real = {item["volid"] for item in listing}
    if not real:
        return None
    entries = [dict(item) for item in listing]
    newest = max(int(item["ctime"]) for item in listing)
    schedule = calendar.parse(job.schedule)
    storage, _, name = sorted(real)[0].partition(":backup/")
    parsed = archive.parse(name)
    kind, vmid = parsed.type, parsed.vmid
    run = newest
    for _ in range(nights):
        fired = schedule.next_after(run, job.timezone)
        if fired is None:
            return None
        run = fired
        volid = f"{storage}:backup/{archive.archive_name(kind, vmid, run, job.compress, tz=job.timezone)}"
        entries.append({"volid": volid, "ctime": run, "vmid": vmid})
        removed = sorted((e for e in retention.mark(entries, job.prune_backups, job.timezone)
                          if e["mark"] == "remove" and e["volid"] in real), key=lambda e: e["ctime"])
        if removed:
            return PruneForecast(volid=removed[0]["volid"], after_run=run, timezone=job.timezone)
    return None


def _places(api: PveClient) -> list[tuple[str, str]]:
    """Every (backup storage, node) place once: a node-local storage on each node, a shared one once."""
    found: dict[tuple[str, str], None] = {}
    shared: set[str] = set()
    for item in api.get("cluster/resources", type="storage"):
        if "backup" not in str(item.get("content", "")).split(",") or item.get("status") != "available":
            continue
        if int(item.get("shared") or 0):
            if item["storage"] in shared:
                continue
            shared.add(item["storage"])
        found[(item["storage"], item["node"])] = None
    return list(found)


def _volids(api: PveClient) -> dict[tuple[str, str], set[str]]:
    return {(storage, node): {v["volid"] for v in _content(api, storage, node)} for storage, node in _places(api)}


def _content(api: PveClient, storage: str, node: str) -> list[dict[str, Any]]:
    return api.get(f"nodes/{node}/storage/{storage}/content", content="backup")


def _report(api: PveClient, seen: dict[tuple[str, str], set[str]], zones: dict[str, str],
            jobs: dict[str, JobSpec]) -> dict[str, EnvironmentReport]:
    guests = api.get("cluster/resources", type="vm")
    env_of = {int(g["vmid"]): g.get("pool") or "none" for g in guests}
    reports: dict[str, EnvironmentReport] = {}
    for g in sorted(guests, key=lambda g: int(g["vmid"])):
        reports.setdefault(env_of[int(g["vmid"])], EnvironmentReport(env_of[int(g["vmid"])])).guests.append(
            f"{g['vmid']} {g.get('name', '')}")
    listings: dict[str, list[dict[str, Any]]] = defaultdict(list)  # storage -> its backups, every place
    for storage, node in _places(api):
        content = _content(api, storage, node)
        listings[storage] += content
        present = {v["volid"] for v in content}
        for item in content:
            report = reports.setdefault(env_of.get(int(item["vmid"]), "none"), EnvironmentReport("none"))
            report.archives[storage] = report.archives.get(storage, 0) + 1
            report.bytes[storage] = report.bytes.get(storage, 0) + int(item["size"])
        for volid in seen.get((storage, node), set()) - present:
            vmid = archive.parse(volid).vmid or 0
            reports.setdefault(env_of.get(vmid, "none"), EnvironmentReport("none")).pruned += 1
    for env, message in _failures(api, env_of, zones):
        reports.setdefault(env, EnvironmentReport(env)).failures.append(message)
    for env, job in jobs.items():
        report = reports.setdefault(env, EnvironmentReport(env))
        report.retention = job.prune_backups_text
        if not report.pruned:
            report.next_prune = _env_forecast(listings.get(job.storage, []), job)
    return dict(sorted(reports.items()))


def _env_forecast(listing: list[dict[str, Any]], job: JobSpec) -> PruneForecast | None:
    """The forecast for the guest whose oldest archive is the environment's oldest (its first to go)."""
    if not listing:
        return None
    oldest = min(listing, key=lambda item: int(item["ctime"]))
    return prune_forecast([item for item in listing if item.get("vmid") == oldest.get("vmid")], job)


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
                    when = format_time(int(task["starttime"]), zones.get(env, "UTC"), seconds=False,
                                       weekday=True)
                    found.append((env, f"{when} on {node['node']}: VM {outcome.vmid} - {outcome.error}"))
    return found
