"""Alertmanager route and Telegram receiver for vzkeep's alerts (``component="backup"``).

Target: Alertmanager 0.25 (Debian 12). Its ``telegram_configs`` has no ``bot_token_file`` (added in 0.26),
so the rendered file holds the token inline (Alertmanager 0.25 ``config/notifiers.go`` TelegramConfig;
``bot_token_file`` came with 0.26, CHANGELOG.md #3226): ``render.py`` writes it
with mode 0600 and nothing here ever prints it; use ``redacted()`` for anything shown to a person.
0.25's templates also lack ``humanizeDuration``/``since``, so a backup's age and date come from the ``age`` and
``last_backup`` annotations that Prometheus computes (rules.py), on the cluster's clock, instead of being
computed here on Alertmanager's (which would show a negative age for a cluster whose clock is ahead).

Homelab choices (one admin, one phone):
- group by ``env``: a night where several prod guests fail gives one message listing them, not ten;
- ``group_wait`` 10 s and ``group_interval`` 20 s keep a failure within the 120 s budget even when the
  env's group already notified (see ``vzkeep.monitoring.DeliveryTiming``);
- ``repeat_interval`` 12 h: a still-broken backup is repeated morning and evening, not every 4 h at night;
- ``send_resolved``: the admin learns that a retry fixed it without opening Grafana;
- "storage above 80%" silences "storage full soon" for the same storage: one problem, one message.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from vzkeep.monitoring import SHIPPED_TIMING, DeliveryTiming

RECEIVER = "vzkeep-telegram"
NULL_RECEIVER = "null"
BACKUP_MATCHER = 'component="backup"'
GROUP_BY = ("env",)
REDACTED = "<secret>"
PARSE_MODES = ("HTML", "Markdown", "MarkdownV2")

# Go template rendered by Alertmanager's HTML engine: labels and annotations are HTML-escaped by it, the tags
# written here are kept (Alertmanager 0.25 CHANGELOG.md: HTML template engine with parse_mode HTML, #3183). One
# block per alert: guest, environment, status, and for backup alerts when the last good backup was made.
TELEGRAM_MESSAGE = """\
{{ if eq .Status "firing" }}🔴 <b>{{ len .Alerts.Firing }} backup alert(s) firing</b>\
{{ else }}✅ <b>Backup alerts resolved</b>{{ end }} in <b>{{ .CommonLabels.env }}</b>
{{ range .Alerts }}
<b>{{ .Labels.alertname }}</b> ({{ .Labels.severity }})
{{ if .Labels.vmid }}guest: {{ if .Labels.name }}{{ .Labels.name }}{{ else }}unnamed{{ end }} \
(vmid {{ .Labels.vmid }})
{{ end }}{{ if .Labels.storage }}storage: {{ .Labels.storage }}
{{ end }}{{ if .Labels.job }}job: {{ .Labels.job }}
{{ end }}environment: {{ .Labels.env }}
status: {{ if eq .Status "firing" }}FIRING{{ else }}resolved{{ end }}
{{ if .Annotations.age }}last good backup: {{ if eq .Annotations.age "never" }}never\
{{ else if .Annotations.last_backup }}{{ .Annotations.last_backup }} ({{ .Annotations.age }} ago)\
{{ else }}{{ .Annotations.age }} ago{{ end }}
{{ end }}{{ if .Annotations.last_run }}last run: {{ .Annotations.last_run }}
{{ end }}{{ .Annotations.summary }}
runbook: {{ .Annotations.runbook_url }}
{{ end }}"""


@dataclass(frozen=True)
class TelegramTarget:
    """Where to send: chat id (an integer in 0.25, group ids are negative), the bot token (a secret) and,
    for tests or a proxy, the Bot API base URL (Alertmanager's ``api_url``)."""

    chat_id: int
    bot_token: str
    api_url: str | None = None
    parse_mode: str = "HTML"

    def __post_init__(self) -> None:
        if not self.chat_id:
            raise ValueError("telegram chat_id must be a non-zero integer (Alertmanager 0.25 rejects 0)")
        if not self.bot_token.strip():
            raise ValueError("telegram bot token is empty")
        if self.parse_mode not in PARSE_MODES:
            raise ValueError(f"telegram parse_mode {self.parse_mode!r} is not one of {', '.join(PARSE_MODES)}")

    def __repr__(self) -> str:  # keeps the token out of tracebacks and logs
        return f"TelegramTarget(chat_id={self.chat_id}, bot_token={REDACTED!r}, api_url={self.api_url!r})"


def backup_route(timing: DeliveryTiming = SHIPPED_TIMING) -> dict[str, Any]:
    """The sub-route to add under an existing Alertmanager's root route."""
    return {
        "receiver": RECEIVER,
        "matchers": [BACKUP_MATCHER],
        "group_by": list(GROUP_BY),
        "group_wait": f"{timing.group_wait_seconds}s",
        "group_interval": f"{timing.group_interval_seconds}s",
        "repeat_interval": f"{timing.repeat_interval_seconds // 3600}h",
        "continue": False,
    }


def telegram_receiver(target: TelegramTarget) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bot_token": target.bot_token,
        "chat_id": target.chat_id,
        "parse_mode": target.parse_mode,
        "send_resolved": True,
        "message": TELEGRAM_MESSAGE,
    }
    if target.api_url:
        config["api_url"] = target.api_url
    return {"name": RECEIVER, "telegram_configs": [config]}


def inhibit_rules() -> list[dict[str, Any]]:
    return [
        {
            "source_matchers": [BACKUP_MATCHER, 'alertname="BackupStorageAbove80Percent"'],
            "target_matchers": [BACKUP_MATCHER, 'alertname="BackupStorageFullSoon"'],
            "equal": ["env", "storage"],
        },
        {
            "source_matchers": [BACKUP_MATCHER, 'alertname="DrillFailed"'],
            "target_matchers": [BACKUP_MATCHER, 'alertname="DrillStale"'],
            "equal": ["env", "vmid"],
        },
    ]


def alertmanager_config(target: TelegramTarget, timing: DeliveryTiming = SHIPPED_TIMING) -> dict[str, Any]:
    """A complete alertmanager.yml: vzkeep's route, other alerts to a receiver that drops them.

    Holds the bot token: write it only with ``vzkeep.atomic.write_private`` (0600), show it only ``redacted()``.
    """
    return {
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": list(GROUP_BY),
            "routes": [backup_route(timing)],
        },
        "receivers": [{"name": NULL_RECEIVER}, telegram_receiver(target)],
        "inhibit_rules": inhibit_rules(),
    }


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config with every bot token replaced, fit for logs, previews and ``--json`` output."""
    clean = copy.deepcopy(dict(config))
    for receiver in clean.get("receivers", []):
        for telegram in receiver.get("telegram_configs", []):
            if "bot_token" in telegram:
                telegram["bot_token"] = REDACTED
    return clean


def to_yaml(config: Mapping[str, Any]) -> str:
    header = (
        "# Generated by `vzkeep monitoring render`. Holds the Telegram bot token: keep it mode 0600\n"
        "# (Alertmanager 0.25 has no bot_token_file).\n"
    )
    return header + yaml.safe_dump(dict(config), sort_keys=False, width=1000, allow_unicode=True)
