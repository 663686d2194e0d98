"""Which alerts fire right now: a throwaway Prometheus evaluating our rules against an exporter.

Used by the demo to show the alerts a week in the sandbox raises, with the real rule engine rather
than a re-implementation of the rules. Needs the `prometheus` binary (Debian package `prometheus`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from vzkeep.monitoring import EXPORTER_JOB


class PrometheusMissing(RuntimeError):
    """The `prometheus` binary is not installed."""


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | pending
    labels: dict[str, str]
    summary: str


def evaluate_alerts(rule_texts: Sequence[str], exporter_address: str, *, timeout: float = 30.0) -> list[Alert]:
    """Start Prometheus scraping `exporter_address` every second with the given rule files, wait for two
    rule evaluations after the first scrape, and return the alerts it holds (firing or pending)."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusMissing("install the `prometheus` package to see which alerts fire")
    with tempfile.TemporaryDirectory(prefix="vzkeep-alerts-") as tmp:
        root = Path(tmp)
        names = []
        for i, text in enumerate(rule_texts):
            (root / f"rules-{i}.yml").write_text(text)
            names.append(f"rules-{i}.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": names,
            "scrape_configs": [{"job_name": EXPORTER_JOB, "honor_labels": True,
                                "static_configs": [{"targets": [exporter_address]}]}],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        process = subprocess.Popen(
            [binary, "--config.file=prometheus.yml", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            return _wait_for_alerts(f"http://127.0.0.1:{port}", timeout)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for_alerts(url: str, timeout: float) -> list[Alert]:
    """Wait until every rule group has been evaluated twice after the first successful scrape."""
    deadline = time.monotonic() + timeout
    scraped_at: float | None = None
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            if scraped_at is None:
                scraped_at = time.time() if _scraped(url) else None
                continue
            groups = _get(f"{url}/api/v1/rules")["groups"]
        except OSError:
            continue  # not listening yet
        evaluated = [_epoch(g.get("lastEvaluation", "")) for g in groups]
        if groups and min(evaluated) > scraped_at + 1.5:  # evaluation interval 1 s: at least one more pass
            return [_alert(a) for a in _get(f"{url}/api/v1/alerts")["alerts"]]
    raise TimeoutError(f"Prometheus did not evaluate the rules within {timeout:.0f} s")


def _epoch(rfc3339: str) -> float:
    """Prometheus' timestamps carry nanoseconds; datetime takes microseconds."""
    if not rfc3339 or rfc3339.startswith("0001"):
        return 0.0
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00").timestamp()


def _scraped(url: str) -> bool:
    result = _get(f"{url}/api/v1/query?query=up%7Bjob%3D%22{EXPORTER_JOB}%22%7D")["result"]
    return bool(result) and result[0]["value"][1] == "1"


def _alert(raw: dict) -> Alert:
    labels = dict(raw.get("labels", {}))
    return Alert(name=labels.pop("alertname", "?"), state=raw.get("state", "?"), labels=labels,
                 summary=raw.get("annotations", {}).get("summary", ""))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        payload = json.loads(reply.read())
    return payload["data"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
