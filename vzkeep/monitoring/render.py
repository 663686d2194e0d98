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

DEFAULT_EXPORTER_TARGET = "localhost:9120"


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


def render_monitoring(thresholds: Thresholds, out_dir: Path, options: RenderOptions) -> list[RenderedFile]:
    """Write every file this stack delivers and return them (paths only: contents may hold a secret)."""
    written = [_write_env_rules(thresholds, out_dir, options)]
    if options.exporter_host:
        written += _write_exporter_host_files(out_dir, options)
    if options.telegram is not None:
        config_path = out_dir / "alertmanager" / "alertmanager.yml"
        write_private(config_path, am.to_yaml(am.alertmanager_config(options.telegram, options.timing)))
        written.append(RenderedFile(config_path, "alertmanager", private=True))
    return written


def _write_env_rules(thresholds: Thresholds, out_dir: Path, options: RenderOptions) -> RenderedFile:
    document = rules.env_rules_document(
        thresholds, drills=options.drills, state_bucket=options.state_bucket,
        runbook_base=options.runbook_base, timing=options.timing,
    )
    path = out_dir / "prometheus" / "rules" / rules.rule_file_name(thresholds.env)
    write_atomic(path, rules.to_yaml(document))
    return RenderedFile(path, "rules")


def _write_exporter_host_files(out_dir: Path, options: RenderOptions) -> list[RenderedFile]:
    written: list[RenderedFile] = []
    global_rules = out_dir / "prometheus" / "rules" / rules.GLOBAL_RULE_FILE
    write_atomic(global_rules, rules.to_yaml(
        rules.global_rules_document(runbook_base=options.runbook_base, timing=options.timing)))
    written.append(RenderedFile(global_rules, "rules"))

    scrape = out_dir / "prometheus" / "scrape-vzkeep.yml"
    header = "# Add this job under scrape_configs: in prometheus.yml (generated by vzkeep monitoring render).\n"
    document = {"scrape_configs": [scrape_config(options.exporter_targets, options.timing)]}
    write_atomic(scrape, header + yaml.safe_dump(document, sort_keys=False))
    written.append(RenderedFile(scrape, "scrape"))

    board = out_dir / "grafana" / "dashboards" / dashboard.FILE_NAME
    write_atomic(board, json.dumps(dashboard.build_dashboard(), indent=2) + "\n")
    written.append(RenderedFile(board, "dashboard"))
    return written
