"""End to end: sandbox → `vzkeep exporter` → real Prometheus → real Alertmanager → Telegram.

Everything runs on 127.0.0.1: the sandbox (HTTPS, in this process), the exporter (the real CLI, a subprocess,
with the read-only auditor token), Prometheus and Alertmanager (Debian binaries) and a fake Telegram Bot API.
Rules and the Alertmanager config come from the monitoring renderers for the prod stack (Pulumi.prod.yaml).

Time. Prometheus evaluates `time() - ts` on the wall clock, while archive and task times come from the
sandbox clock. So the sandbox clock is made to coincide with the wall clock whenever the exporter can see it:
the sandbox clock runs at real speed but starts 50 h in the past; the prod backups are taken there, then the
clock is advanced to "now" with both nodes down (no scheduled run happens: PVE does not catch up missed runs)
before the exporter starts. From then on the sandbox clock and the wall clock advance together, so every
timestamp the exporter publishes is on Prometheus' time scale and ages are real ages. The simulated read speed
is raised so a vzdump task lasts seconds, not the minutes a real disk would take.

A second pipeline runs on a cluster whose clock is 30 days ahead of the wall clock (and of Prometheus'): every
time the exporter publishes is then in Prometheus' future. Ages are measured against the cluster's own clock
(`vzkeep_cluster_time_seconds`), so BackupMissing, the missed run, the fill forecast and the 80% alert fire as
on a cluster, and the Telegram texts show positive ages and the cluster's dates.

Speed. The shipped intervals (30 s poll/scrape/evaluation, `for: 5m` on staleness, bench_alert_latency.py
measures them) would make this test take many minutes. Here every interval is 1 s and every `for` of an hour
or less becomes 2 s; longer `for`s (the "never backed up" cases: 48 h and more) stay as shipped and never fire.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.sandbox import RunningSandbox
from tests.helpers.tools import (
    http_get,
    query,
    run_alertmanager,
    run_prometheus,
)
from tests.helpers.waits import wait_until
from vzkeep.config import load_stack_file, stack_file
from vzkeep.connection import ConnectionOptions, connect
from vzkeep.exporter import Exporter, Poller, proxmoxer_get
from vzkeep.exporter.api import NOT_IMPLEMENTED, ApiGet, http_status
from vzkeep.monitoring import DeliveryTiming, rules
from vzkeep.monitoring import alertmanager as am
from vzkeep.monitoring.render import scrape_config
from vzkeep.monitoring.telegram_stub import TelegramMessage, TelegramStub
from vzkeep.plan import plan_stack
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.launch import Running
from vzkeep.sandbox.seed import DEFAULT_SEED, create_jobs, load_seed
from vzkeep.sandbox.server import make_app, serve_app
from vzkeep.sandbox.settings import Settings

VZKEEP = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "vzkeep")
FAST = DeliveryTiming(
    exporter_poll_seconds=1,
    scrape_interval_seconds=1,
    evaluation_interval_seconds=1,
    failed_for_seconds=0,
    group_wait_seconds=1,
    group_interval_seconds=1,
    repeat_interval_seconds=3600,
    delivery_seconds=1,
)
SHORT_FOR = "2s"
LONGEST_SHORTENED_FOR = 3600
PAST_SECONDS = 50 * 3600  # more than the 48 h BackupMissing threshold of a daily job
AHEAD_SECONDS = 30 * 86400  # the second pipeline's cluster clock, against the wall clock
CHAT_ID = -1001234567890
BOT_TOKEN = "123456:e2e-fake-token"
LOCKED_VMID, LOCKED_NAME = 101, "postgres"
STEP_TIMEOUT = 60
FAST_DISK = 1024**4  # bytes per simulated second: one second per guest


def prod_backup(sb: Sandbox) -> list[str]:
    """What the prod job does, run now on both nodes (POST /nodes/{node}/vzdump with the job's options)."""
    params = {"pool": "prod", "storage": "backup-prod", "mode": "snapshot", "compress": "zstd"}
    return [sb.vzdump(node, params, "root@pam") for node in ("pve1", "pve2")]


def sync_clock(sb: Sandbox) -> None:
    """Move the sandbox clock up to the wall clock (it only moves forward). Wall clock on purpose in this
    module: the real Prometheus and Alertmanager watching the sandbox run in real time."""
    behind = time.time() - sb.now()
    if behind > 0:
        sb.advance(behind)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The default seed, started 50 h ago; prod backed up then; the clock then brought to now with no run."""
    state = tmp_path_factory.mktemp("e2e") / "sandbox"
    seed = load_seed(DEFAULT_SEED, state)
    seed.cluster.clock_epoch = time.time() - PAST_SECONDS
    sb = Sandbox.create(state, seed.cluster, speed=1.0, settings=Settings(throughput=FAST_DISK))
    create_jobs(make_app(sb, state), seed)
    upids = prod_backup(sb)
    assert all(u.startswith("UPID:") for u in upids)
    for node in ("pve1", "pve2"):
        sb.node_down(node)
    sync_clock(sb)
    for node in ("pve1", "pve2"):
        sb.node_up(node)
    server = serve_app(make_app(sb, state), state, "127.0.0.1", 0)
    running = Running(server, sb, state, True)
    try:
        sandbox = RunningSandbox(running)
        sandbox.grant_exporter_role()  # PVEAuditor alone sees no backup volume (Storage.pm check_volume_access)
        yield sandbox
    finally:
        running.stop()


def fast_rules(document: dict[str, Any]) -> dict[str, Any]:
    """The rendered rules with every short `for` cut to 2 s (see the module docstring)."""
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule and _seconds(rule["for"]) <= LONGEST_SHORTENED_FOR:
                rule["for"] = SHORT_FOR
    return document


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


@contextlib.contextmanager
def monitoring(work: Path, exporter_address: str) -> Iterator[dict[str, Any]]:
    """Prod's rules in a real Prometheus scraping ``exporter_address``, a real Alertmanager, a fake Telegram."""
    thresholds = plan_stack(load_stack_file(stack_file("prod"))).thresholds
    (work / "prod.rules.yml").write_text(
        rules.to_yaml(fast_rules(rules.env_rules_document(thresholds, timing=FAST)))
    )
    with TelegramStub() as telegram:
        config = am.alertmanager_config(am.TelegramTarget(CHAT_ID, BOT_TOKEN, api_url=telegram.url), FAST)
        (work / "alertmanager.yml").write_text(am.to_yaml(config))
        (work / "alertmanager.yml").chmod(0o600)
        with run_alertmanager(work / "alertmanager.yml") as alertmanager:
            prometheus_config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["prod.rules.yml"],
                "scrape_configs": [scrape_config([exporter_address], FAST)],
                "alerting": {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
                    ]
                },
            }
            (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
            with run_prometheus(work) as prometheus:
                yield {"telegram": telegram, "prometheus": prometheus.url, "work": work}


@pytest.fixture(scope="module")
def stack(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("monitoring")
    log = work / "exporter.log"
    exporter = subprocess.Popen(
        [
            VZKEEP,
            "exporter",
            "--sandbox",
            str(sandbox.sandbox_json),
            "--read-only",
            "--listen",
            "127.0.0.1:0",  # the system picks the port; the exporter's first log line says which
            "--interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={**os.environ, "VZKEEP_ENDPOINT": ""},
    )
    try:
        serving = wait_until(lambda: re.search(r"serving http://(\S+)/metrics", log.read_text()), 30,
                             "the exporter to say where it serves")
        exporter_address = serving.group(1)
        wait_until(lambda: http_get(f"http://{exporter_address}/metrics")[0] == 200, 30, "the exporter")
        with monitoring(work, exporter_address) as found:
            yield found
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    assert BOT_TOKEN not in log.read_text()


def firing(prom: str, alert: str, **labels: str) -> bool:
    matchers = "".join(f',{k}="{v}"' for k, v in labels.items())
    return bool(query(prom, f'ALERTS{{alertname="{alert}",alertstate="firing"{matchers}}}'))


def message_with(telegram: TelegramStub, *needles: str, after: int = 0) -> TelegramMessage:
    def matches(m: TelegramMessage) -> bool:
        return telegram.messages.index(m) >= after and all(n in m.text for n in needles)

    return telegram.wait_for_message(matches, timeout=STEP_TIMEOUT)


def test_no_backup_for_48_hours_alerts_in_telegram(stack: dict[str, Any]) -> None:
    message = message_with(stack["telegram"], "BackupMissing", "environment: prod", "traefik (vmid 100)")
    assert message.chat_id == str(CHAT_ID)
    assert message.parse_mode == "HTML"
    assert message.token == BOT_TOKEN
    assert "FIRING" in message.text


def test_a_locked_guest_fails_its_backup_and_telegram_names_it(
    sandbox: RunningSandbox, stack: dict[str, Any]
) -> None:
    telegram, prom = stack["telegram"], stack["prometheus"]
    wait_until(lambda: firing(prom, "BackupMissing", vmid="100"), STEP_TIMEOUT, "BackupMissing first")
    before = len(telegram.messages)
    sandbox.sandbox.lock_guest(LOCKED_VMID, "backup")
    prod_backup(sandbox.sandbox)
    wait_until(
        lambda: firing(prom, "BackupFailed", vmid=str(LOCKED_VMID)), STEP_TIMEOUT, "BackupFailed firing"
    )
    message = message_with(
        telegram, "BackupFailed", f"{LOCKED_NAME} (vmid {LOCKED_VMID})", "environment: prod", after=before
    )
    assert "FIRING" in message.text
    # The other guests of the same multi-guest tasks were backed up: their BackupMissing resolved, and only
    # the locked guest fails.
    wait_until(
        lambda: not firing(prom, "BackupMissing", vmid="100"), STEP_TIMEOUT, "BackupMissing 100 to resolve"
    )
    failed = query(prom, 'ALERTS{alertname="BackupFailed",alertstate="firing"}')
    assert {r["metric"]["vmid"] for r in failed} == {str(LOCKED_VMID)}


def test_storage_above_80_percent_alerts_in_telegram(sandbox: RunningSandbox, stack: dict[str, Any]) -> None:
    telegram = stack["telegram"]
    before = len(telegram.messages)
    storage = sandbox.sandbox.cluster.storages["backup-prod"]
    used = sandbox.sandbox.storage_status("backup-prod", "pve1")["used"]
    sandbox.sandbox.fill_storage("backup-prod", int(storage.capacity_bytes * 0.85) - used, "pve1")
    message = message_with(
        telegram, "BackupStorageAbove80Percent", "storage: backup-prod", "environment: prod", after=before
    )
    assert "FIRING" in message.text


def test_every_alert_resolves_after_recovery(sandbox: RunningSandbox, stack: dict[str, Any]) -> None:
    telegram, prom = stack["telegram"], stack["prometheus"]
    before = len(telegram.messages)
    sandbox.sandbox.fill_storage("backup-prod", 0, "pve1")
    sandbox.sandbox.lock_guest(LOCKED_VMID, None)
    prod_backup(sandbox.sandbox)
    wait_until(lambda: not query(prom, 'ALERTS{alertstate="firing"}'), STEP_TIMEOUT, "every alert to resolve")
    message_with(telegram, "Backup alerts resolved", "prod", after=before)

    def resolved(alert: str) -> bool:
        # Alertmanager may flush the resolutions of one env group in more than one message.
        return any(alert in m.text and "resolved" in m.text for m in telegram.messages[before:])

    alerts = ("BackupFailed", "BackupStorageAbove80Percent")
    wait_until(lambda: all(resolved(a) for a in alerts), STEP_TIMEOUT, f"resolved messages naming {alerts}")
    assert all(resolved(a) for a in alerts)


# --- a cluster whose clock is 30 days ahead --------------------------------------------------------------


class SandboxClock:
    """``GET /nodes/{node}/time`` answered from the sandbox's clock while the sandbox does not serve it (PVE's
    501 for an unknown route); once it does, its own answer is used."""

    def __init__(self, get: ApiGet, sandbox: Sandbox) -> None:
        self.get = get
        self.sandbox = sandbox
        self.raw = getattr(get, "raw", None)

    def __call__(self, path: str, **params: Any) -> Any:
        try:
            return self.get(path, **params)
        except Exception as exc:
            if not (path.endswith("/time") and http_status(exc) == NOT_IMPLEMENTED):
                raise
        now = self.sandbox.now()
        return {"time": now, "localtime": now + 3600, "timezone": "Europe/Paris"}


def utc_minute(seconds: float) -> str:
    """How the alert texts write a time: "2026-12-22 01:00 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


@pytest.fixture(scope="module")
def ahead(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prod backed up at a cluster time 30 days ahead of the wall clock, then 50 h passed with both nodes
    down (no run), the clock running on in real time; the exporter, Prometheus and Alertmanager watch it."""
    state = tmp_path_factory.mktemp("e2e-ahead") / "sandbox"
    seed = load_seed(DEFAULT_SEED, state)
    seed.cluster.clock_epoch = time.time() + AHEAD_SECONDS
    sb = Sandbox.create(state, seed.cluster, speed=1.0, settings=Settings(throughput=FAST_DISK))
    create_jobs(make_app(sb, state), seed)
    upids = prod_backup(sb)
    backed_up = {u: sb.now() for u in upids}
    for node in ("pve1", "pve2"):
        sb.node_down(node)
    sb.advance(PAST_SECONDS)
    for node in ("pve1", "pve2"):
        sb.node_up(node)
    server = serve_app(make_app(sb, state), state, "127.0.0.1", 0)
    running = Running(server, sb, state, True)
    work = tmp_path_factory.mktemp("monitoring-ahead")
    try:
        # The admin token: this pipeline is about time; what each token may see is test_exporter_privileges'.
        api = connect(ConnectionOptions(sandbox=state / "sandbox.json"))
        poller = Poller(SandboxClock(proxmoxer_get(api), sb))
        with Exporter(poller, "127.0.0.1:0", interval=1) as exporter:
            wait_until(lambda: exporter.loop.polls > 0, 30, "the exporter's first poll")
            with monitoring(work, exporter.address) as found:
                yield {**found, "sandbox": sb, "exporter": exporter, "backed_up": backed_up}
    finally:
        running.stop()


def test_the_cluster_clock_is_published_and_ahead(ahead: dict[str, Any]) -> None:
    snapshot = ahead["exporter"].poller.snapshot
    assert snapshot.clock is not None
    assert snapshot.clock.time - time.time() > AHEAD_SECONDS + PAST_SECONDS - 60
    found = wait_until(lambda: query(ahead["prometheus"], "vzkeep_cluster_time_seconds - time()"), STEP_TIMEOUT,
                       "Prometheus to scrape the cluster's clock")
    assert float(found[0]["value"][1]) > AHEAD_SECONDS


def test_backup_missing_fires_with_a_positive_age_and_the_clusters_date(ahead: dict[str, Any]) -> None:
    sb: Sandbox = ahead["sandbox"]
    newest = max(e["ctime"] for e in sb.listing("backup-prod", "pve1", vmid=100))
    message = message_with(ahead["telegram"], "BackupMissing", "traefik (vmid 100)", "environment: prod")
    # the message holds one block per firing alert of prod (Alertmanager groups by env): traefik's own block
    block = next(b for b in message.text.split("<b>BackupMissing</b>") if "traefik (vmid 100)" in b)
    line = next(x for x in block.splitlines() if x.startswith("last good backup: "))
    # 50 h on the cluster's clock, not "-29d 22h ..." against the wall clock
    found = re.fullmatch(r"last good backup: (.+ UTC) \((\d+)d (\d+)h (\d+)m (\d+)s ago\)", line)
    assert found, line
    assert found.group(1) == utc_minute(newest)
    assert (int(found.group(2)), int(found.group(3))) == (2, 2), line


def test_the_missed_run_fires_with_the_date_of_the_last_run(ahead: dict[str, Any]) -> None:
    message = message_with(ahead["telegram"], "BackupJobMissedRun", "job: vzkeep-prod")
    started = min(ahead["backed_up"].values())
    assert f"last run: {utc_minute(started)}" in message.text, message.text


def test_the_fill_forecast_and_the_80_percent_line_fire(ahead: dict[str, Any]) -> None:
    sb: Sandbox = ahead["sandbox"]
    telegram = ahead["telegram"]
    capacity = sb.cluster.storages["backup-prod"].capacity_bytes
    before = len(telegram.messages)
    # Grow by 1% of the capacity per second up to 60%: full within days at that rate, not over 80% yet.
    used = sb.storage_status("backup-prod", "pve1")["used"]
    for _ in range(int((0.6 * capacity - used) / (0.01 * capacity))):
        sb.fill_storage("backup-prod", int(0.01 * capacity), "pve1")
        if any("BackupStorageFullSoon" in m.text for m in telegram.messages[before:]):
            break
        time.sleep(1)
    message = message_with(telegram, "BackupStorageFullSoon", "storage: backup-prod", after=before)
    assert "FIRING" in message.text
    before = len(telegram.messages)
    used = sb.storage_status("backup-prod", "pve1")["used"]
    sb.fill_storage("backup-prod", int(capacity * 0.85) - used, "pve1")
    message = message_with(telegram, "BackupStorageAbove80Percent", "storage: backup-prod", after=before)
    assert "FIRING" in message.text
