"""Which alerts fire right now: a throwaway Prometheus evaluating our rules against an exporter.

Used by the demo to show the alerts a week in the sandbox raises, with the real rule engine rather
than a re-implementation of the rules. Needs the `prometheus` binary (Debian package `prometheus`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from vzkeep.monitoring import EXPORTER_JOB
from vzkeep.net import free_port
from vzkeep.processes import stop_process

EVALUATION_SECONDS = 1  # every group's interval in a preview: an answer now, not in the shipped 30 s


class PrometheusMissing(RuntimeError):
    """The `prometheus` binary is not installed."""


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | pending
    labels: dict[str, str]
    summary: str


def evaluate_alerts(rule_texts: Sequence[str], exporter_address: str, *, timeout: float = 30.0) -> list[Alert]:
    """Start Prometheus scraping `exporter_address` with the given rule files, wait for a rule evaluation
    after a healthy scrape, and return the alerts it holds (firing or pending)."""
    with RulePreview(rule_texts, exporter_address) as preview:
        return preview.alerts(timeout=timeout)


class RulePreview:
    """A throwaway Prometheus for as long as the `with` lasts: it scrapes the exporter every 2 s,
    evaluates the rules every second, and, given `alertmanager` (host:port), sends the alerts that fire
    to it as a monitoring host's Prometheus does (its `alerting` section)."""

    def __init__(self, rule_texts: Sequence[str], exporter_address: str, *, alertmanager: str | None = None
                 ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusMissing("install the `prometheus` package to see which alerts fire")
        self._binary = binary
        self._rule_texts = list(rule_texts)
        self._exporter = exporter_address
        self._alertmanager = alertmanager
        self._tmp = tempfile.TemporaryDirectory(prefix="vzkeep-alerts-")
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> RulePreview:
        root = Path(self._tmp.name)
        names = []
        for i, text in enumerate(self._rule_texts):
            (root / f"rules-{i}.yml").write_text(_every_second(text))
            names.append(f"rules-{i}.yml")
        config: dict = {
            # Scrape every 2 s with a 2 s timeout: a loaded machine must not fail scrapes (see below).
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s",
                       "evaluation_interval": f"{EVALUATION_SECONDS}s"},
            "rule_files": names,
            "scrape_configs": [{"job_name": EXPORTER_JOB, "honor_labels": True,
                                "static_configs": [{"targets": [self._exporter]}]}],
        }
        if self._alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [self._alertmanager]}]}]}
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self._process = subprocess.Popen(
            [self._binary, "--config.file=prometheus.yml", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)
        self._tmp.cleanup()

    def alerts(self, *, after: float = 0.0, timeout: float = 30.0) -> list[Alert]:
        """The alerts (firing or pending) as of a rule evaluation that followed a healthy scrape made after
        `after` (epoch seconds: what the exporter published by then is seen)."""
        return _wait_for_alerts(self.url, timeout, after)


def _every_second(rule_text: str) -> str:
    """The shipped groups evaluate every 30 s (their own `interval`); a preview wants an answer now."""
    document = yaml.safe_load(rule_text)
    for group in document.get("groups", []):
        group["interval"] = f"{EVALUATION_SECONDS}s"
    return yaml.safe_dump(document, sort_keys=False)


def _wait_for_alerts(url: str, timeout: float, after: float = 0.0) -> list[Alert]:
    """The alerts as of a rule evaluation that began once a healthy scrape made after `after` was stored.

    Prometheus' scrape loop marks the target scraped (the targets API) before it commits the samples, `up`
    among them, and an evaluation that begins in between sees none of them; a failed scrape marks every
    series stale. So: wait until `up` of a healthy scrape made after `after` can be queried, then for every
    group to begin an evaluation an interval after that (the API shows when an evaluation began; it reads the
    data as of its scheduled tick, which may be earlier), and keep the alerts only if no scrape failed since.
    """
    deadline = time.monotonic() + timeout
    stored: tuple[float, float] | None = None  # a healthy scrape made after `after`: its start, when seen stored
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            if stored is None:
                healthy = [at for at, ok in _scrapes(url, after) if ok]
                stored = (min(healthy), time.time()) if healthy else None
                continue
            groups = _get(f"{url}/api/v1/rules")["groups"]
            evaluated = min((_epoch(g.get("lastEvaluation", "")) for g in groups), default=0.0)
            if evaluated <= stored[1] + EVALUATION_SECONDS:
                continue
            alerts = [_alert(a) for a in _get(f"{url}/api/v1/alerts")["alerts"]]
            failed = [at for at, ok in _scrapes(url, stored[0]) if not ok]
        except OSError:
            continue  # not listening yet
        if not failed:
            return alerts
        after, stored = max(failed), None  # start again from a healthy scrape after the failed one
    raise TimeoutError(f"Prometheus did not evaluate the rules after a healthy scrape within {timeout:.0f} s")


def _scrapes(url: str, after: float) -> list[tuple[float, bool]]:
    """(start, healthy) of each stored scrape of the exporter that began after `after`: its `up` samples."""
    query = urllib.parse.urlencode({"query": f'up{{job="{EXPORTER_JOB}"}}[5m]'})
    series = _get(f"{url}/api/v1/query?{query}")["result"]
    return [(float(at), value == "1") for s in series for at, value in s["values"] if float(at) > after]


def _epoch(rfc3339: str) -> float:
    """A time of Prometheus' API: Go's RFC 3339 with nanoseconds, in Prometheus' local zone (its TZ), so with
    an offset that must be kept; Go's zero time for never."""
    if not rfc3339 or rfc3339.startswith("0001"):
        return 0.0
    return datetime.fromisoformat(rfc3339).timestamp()  # Python 3.11 reads the offset and the nanoseconds


def _alert(raw: dict) -> Alert:
    labels = dict(raw.get("labels", {}))
    return Alert(name=labels.pop("alertname", "?"), state=raw.get("state", "?"), labels=labels,
                 summary=raw.get("annotations", {}).get("summary", ""))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        payload = json.loads(reply.read())
    return payload["data"]
