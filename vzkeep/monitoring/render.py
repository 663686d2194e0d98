"""Write a stack's monitoring files to a directory (what `vzkeep monitoring render` and the monitoring stack
deliver):

    <out>/prometheus/rules/vzkeep-<env>.rules.yml    always: the environment's alerts
    <out>/prometheus/rules/vzkeep-global.rules.yml   exporter host only: exporter down, guests in no pool
    <out>/prometheus/scrape-vzkeep.yml               exporter host only: the scrape job to merge
    <out>/alertmanager/alertmanager.yml              stack with Telegram settings: route + receiver, mode 0600
    <out>/grafana/dashboards/vzkeep-backups.json     exporter host only

Files are written atomically (temp file + rename) so Prometheus never loads half a rule file, and the file
holding the bot token is created 0600 before a single byte is written (no window where it is readable).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vzkeep.monitoring import EXPORTER_JOB, SHIPPED_TIMING, DeliveryTiming, Thresholds, dashboard, rules
from vzkeep.monitoring import alertmanager as am

DEFAULT_EXPORTER_TARGET = "localhost:9868"  # `vzkeep exporter --listen` default port


@dataclass(frozen=True)
class RenderedFile:
    path: Path
    kind: str  # rules | scrape | alertmanager | dashboard
    private: bool = False  # holds a secret: mode 0600


@dataclass(frozen=True)
class RenderOptions:
    """What the stack settings decide beyond the thresholds."""

    exporter_host: bool = False  # this stack also delivers the global rules, route and dashboard
    telegram: am.TelegramTarget | None = None
    state_bucket: bool = False
    drills: bool | None = None  # None: from the thresholds (a positive drill_stale_after_seconds)
    runbook_base: str = rules.DEFAULT_RUNBOOK_BASE
    exporter_targets: Sequence[str] = (DEFAULT_EXPORTER_TARGET,)
    timing: DeliveryTiming = SHIPPED_TIMING


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``; the temp file gets ``mode`` at creation (mkstemp makes it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: Path, text: str) -> None:
    """A file holding a secret: 0600 from creation to rename, and 0600 if an older file was wider."""
    write_atomic(path, text, mode=0o600)


def scrape_config(targets: Sequence[str], timing: DeliveryTiming = SHIPPED_TIMING) -> dict[str, Any]:
    """The Prometheus scrape job for the vzkeep exporter.

    ``honor_labels``: the job metrics carry their own ``job`` label (the PVE backup job id, issue 5); without
    it Prometheus renames that label ``exported_job`` and every job alert would match nothing.
    """
    return {
        "job_name": EXPORTER_JOB,
        "honor_labels": True,
        "scrape_interval": f"{timing.scrape_interval_seconds}s",
        "scrape_timeout": f"{min(10, timing.scrape_interval_seconds)}s",
        "static_configs": [{"targets": list(targets)}],
    }


@dataclass(frozen=True)
class FileText:
    """One file a stack delivers, before it is written: where it goes and what it holds."""

    relative_path: str
    text: str
    kind: str  # rules | scrape | dashboard | alertmanager
    private: bool = False


def monitoring_texts(thresholds: Thresholds, options: RenderOptions) -> list[FileText]:
    """Every file this stack delivers, in memory (the Pulumi component delivers these over SSH)."""
    texts = [FileText(f"prometheus/rules/{rules.rule_file_name(thresholds.env)}", rules.to_yaml(
        rules.env_rules_document(thresholds, drills=options.drills, state_bucket=options.state_bucket,
                                 runbook_base=options.runbook_base, timing=options.timing)), "rules")]
    if options.exporter_host:
        texts += _exporter_host_texts(options)
    if options.telegram is not None:
        texts.append(FileText("alertmanager/alertmanager.yml", alertmanager_text(options.telegram, options.timing),
                              "alertmanager", private=True))
    return texts


def alertmanager_text(target: am.TelegramTarget, timing: DeliveryTiming = SHIPPED_TIMING) -> str:
    return am.to_yaml(am.alertmanager_config(target, timing))


def render_monitoring(thresholds: Thresholds, out_dir: Path, options: RenderOptions) -> list[RenderedFile]:
    """Write every file this stack delivers and return them (paths only: contents may hold a secret)."""
    written = []
    for item in monitoring_texts(thresholds, options):
        path = out_dir / item.relative_path
        if item.private:
            write_private(path, item.text)
        else:
            write_atomic(path, item.text)
        written.append(RenderedFile(path, item.kind, private=item.private))
    return written


def _exporter_host_texts(options: RenderOptions) -> list[FileText]:
    header = "# Add this job under scrape_configs: in prometheus.yml (generated by vzkeep monitoring render).\n"
    scrape = {"scrape_configs": [scrape_config(options.exporter_targets, options.timing)]}
    return [
        FileText(f"prometheus/rules/{rules.GLOBAL_RULE_FILE}", rules.to_yaml(
            rules.global_rules_document(runbook_base=options.runbook_base, timing=options.timing)), "rules"),
        FileText("prometheus/scrape-vzkeep.yml", header + yaml.safe_dump(scrape, sort_keys=False), "scrape"),
        FileText(f"grafana/dashboards/{dashboard.FILE_NAME}", json.dumps(dashboard.build_dashboard(), indent=2) + "\n",
                 "dashboard"),
    ]
