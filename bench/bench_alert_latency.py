"""Time from a failed backup to the Telegram message, with the SHIPPED intervals (target ≤ 120 s).

The whole path runs for real on 127.0.0.1: sandbox (clock at real speed) → `vzkeep exporter` (CLI, --interval
30) → Prometheus (scrape and evaluation 30 s, the prod rules as rendered) → Alertmanager (the rendered route:
group_wait 10 s, group_interval 20 s) → a fake Telegram Bot API. A failure is injected by locking guest 101
and running the prod backup; the clock starts when the failed vzdump task ends (as PVE would record it) and
stops when the BackupFailed message arrives. Between runs the guest is unlocked and backed up, and the alert
resolves. The worst case the shipped timing allows (scrape, evaluation, `for` and
Alertmanager's group_wait added up: DeliveryTiming.worst_case_failure_seconds) is printed next to the median.

    .venv/bin/python bench/bench_alert_latency.py [RUNS]      # default 3 runs, about 2 minutes each
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.tools import http_get, run_alertmanager, run_prometheus
from vzkeep.config import load_stack_file, stack_file
from vzkeep.monitoring import (
    SHIPPED_TIMING,
    rules,
)
from vzkeep.monitoring import alertmanager as am
from vzkeep.monitoring.render import scrape_config
from vzkeep.monitoring.telegram_stub import TelegramStub
from vzkeep.net import free_port
from vzkeep.plan import plan_stack
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.seed import DEFAULT_SEED, create_jobs, load_seed
from vzkeep.sandbox.server import make_app, serve_app
from vzkeep.sandbox.settings import Settings

VZKEEP = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "vzkeep")
TARGET_SECONDS = 120
LOCKED = 101
GIVE_UP_SECONDS = 600


def prod_backup(sb: Sandbox) -> list[str]:
    params = {"pool": "prod", "storage": "backup-prod", "mode": "snapshot", "compress": "zstd"}
    return [sb.vzdump(node, params, "root@pam") for node in ("pve1", "pve2")]


def failed_task_end(sb: Sandbox, upids: list[str]) -> float:
    """When this run's vzdump tasks end on the (real-speed) sandbox clock; waits until they have ended."""

    def ends() -> list[int]:
        found = []
        for node in ("pve1", "pve2"):
            items, _ = sb.tasks.list_node(node, typefilter="vzdump", source="all", limit=10)
            found += [int(t["endtime"]) for t in items if t["upid"] in upids and t.get("endtime")]
        return found

    wait_for(lambda: len(ends()) == len(upids), "the vzdump tasks to end", 60)
    return float(max(ends()))


def wait_for(predicate: Any, what: str, timeout: float = GIVE_UP_SECONDS, step: float = 0.2) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(step)
    raise SystemExit(f"gave up after {timeout:.0f}s waiting for {what}")


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seed = load_seed(DEFAULT_SEED, work / "sandbox")
        sb = Sandbox.create(work / "sandbox", seed.cluster, speed=1.0, settings=Settings(throughput=1024**4))
        create_jobs(make_app(sb, work / "sandbox"), seed)
        prod_backup(sb)
        server = serve_app(make_app(sb, work / "sandbox"), work / "sandbox", "127.0.0.1", free_port())
        thresholds = plan_stack(load_stack_file(stack_file("prod"))).thresholds
        (work / "prod.rules.yml").write_text(rules.to_yaml(rules.env_rules_document(thresholds)))
        address = f"127.0.0.1:{free_port()}"
        exporter = subprocess.Popen(
            [
                VZKEEP,
                "exporter",
                "--sandbox",
                str(work / "sandbox" / "sandbox.json"),
                "--read-only",
                "--listen",
                address,
                "--interval",
                str(SHIPPED_TIMING.exporter_poll_seconds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "VZKEEP_ENDPOINT": ""},
        )
        try:
            wait_for(lambda: http_get(f"http://{address}/metrics")[0] == 200, "the exporter", 30)
            latencies = run_stack(work, sb, address, runs)
        finally:
            exporter.terminate()
            exporter.wait(timeout=10)
            server.stop()
    t = SHIPPED_TIMING
    bound = t.worst_case_failure_seconds()
    print(
        f"failed backup -> Telegram, shipped intervals (poll {t.exporter_poll_seconds}s, "
        f"scrape {t.scrape_interval_seconds}s, eval {t.evaluation_interval_seconds}s, "
        f"for {t.failed_for_seconds}s, group_wait {t.group_wait_seconds}s, "
        f"group_interval {t.group_interval_seconds}s)"
    )
    print("runs (s): " + ", ".join(f"{x:.1f}" for x in latencies))
    median = statistics.median(latencies)
    print(
        f"median {median:.1f} s, max {max(latencies):.1f} s; worst case by the shipped timing {bound} s; "
        f"target <= {TARGET_SECONDS} s -> {'met' if max(latencies) <= TARGET_SECONDS else 'MISSED'}"
    )


def run_stack(work: Path, sb: Sandbox, exporter_address: str, runs: int) -> list[float]:
    with TelegramStub() as telegram:
        config = am.alertmanager_config(am.TelegramTarget(-100123, "123:bench", api_url=telegram.url))
        (work / "alertmanager.yml").write_text(am.to_yaml(config))
        with run_alertmanager(work / "alertmanager.yml") as alertmanager:
            prometheus_config = {
                "global": {
                    "scrape_interval": f"{SHIPPED_TIMING.scrape_interval_seconds}s",
                    "evaluation_interval": f"{SHIPPED_TIMING.evaluation_interval_seconds}s",
                },
                "rule_files": ["prod.rules.yml"],
                "scrape_configs": [scrape_config([exporter_address])],
                "alerting": {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
                    ]
                },
            }
            (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
            with run_prometheus(work):
                return [one_run(sb, telegram) for _ in range(runs)]


def one_run(sb: Sandbox, telegram: TelegramStub) -> float:
    seen = len(telegram.messages)
    sb.lock_guest(LOCKED, "backup")
    upids = prod_backup(sb)
    failed_at = failed_task_end(sb, upids)
    arrived = wait_for(
        lambda: any("BackupFailed" in m.text and "FIRING" in m.text for m in telegram.messages[seen:]),
        "the BackupFailed message",
    )
    latency = arrived - failed_at
    print(f"  run: {latency:.1f} s", flush=True)
    sb.lock_guest(LOCKED, None)
    seen = len(telegram.messages)
    prod_backup(sb)
    wait_for(lambda: any("resolved" in m.text for m in telegram.messages[seen:]), "the resolved message")
    return latency


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
