"""Alertmanager route and Telegram receiver: amtool accepts the rendered config and routes backup alerts to
Telegram; a real Alertmanager posts an HTML message to a fake Bot API on 127.0.0.1; the whole chain
(exporter → Prometheus → rules → Alertmanager → Telegram) delivers a failed backup; the token stays in the
0600 file and out of every output."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.metrics import exposition
from tests.helpers.thresholds import PROD
from tests.helpers.tools import (
    StaticExporter,
    http_post_json,
    run_alertmanager,
    run_prometheus,
    run_tool,
)
from vzkeep.monitoring import SHIPPED_TIMING, DeliveryTiming, render
from vzkeep.monitoring import alertmanager as am
from vzkeep.monitoring.telegram_stub import TelegramMessage, TelegramStub

TOKEN = "7000000001:AAH-test-token-never-logged_x9"
CHAT = -1001234567890
FAST = DeliveryTiming(scrape_interval_seconds=1, evaluation_interval_seconds=1, group_wait_seconds=1,
                      group_interval_seconds=1)


def rendered(tmp_path: Path, api_url: str | None = None, timing: DeliveryTiming = SHIPPED_TIMING) -> Path:
    options = render.RenderOptions(
        exporter_host=True, telegram=am.TelegramTarget(chat_id=CHAT, bot_token=TOKEN, api_url=api_url),
        timing=timing,
    )
    written = render.render_monitoring(PROD, tmp_path, options)
    return next(f.path for f in written if f.kind == "alertmanager")


def test_rendered_config_passes_amtool_check(tmp_path: Path) -> None:
    result = run_tool("amtool", "check-config", str(rendered(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


ROUTES = [  # (description, labels, receiver)
    ("failed backup", {"alertname": "BackupFailed", "component": "backup", "env": "prod", "vmid": "101"},
     am.RECEIVER),
    ("exporter down", {"alertname": "VzkeepExporterDown", "component": "backup", "env": "all"}, am.RECEIVER),
    ("storage above 80%", {"alertname": "BackupStorageAbove80Percent", "component": "backup", "env": "lab"},
     am.RECEIVER),
    ("someone else's alert", {"alertname": "NodeDown", "severity": "critical"}, am.NULL_RECEIVER),
    ("other component", {"alertname": "DiskFull", "component": "storage", "env": "prod"}, am.NULL_RECEIVER),
]


@pytest.mark.parametrize("case", ROUTES, ids=lambda c: c[0])
def test_amtool_routes_alerts_by_component(tmp_path: Path, case: tuple[str, dict[str, str], str]) -> None:
    _, labels, receiver = case
    config = rendered(tmp_path)
    args = [f"{key}={value}" for key, value in labels.items()]
    result = run_tool("amtool", "config", "routes", "test", f"--config.file={config}",
                      f"--verify.receivers={receiver}", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_token_file_is_private_even_when_an_older_file_was_not(tmp_path: Path) -> None:
    target = tmp_path / "alertmanager" / "alertmanager.yml"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    target.chmod(0o644)
    path = rendered(tmp_path)
    assert path == target
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert TOKEN in path.read_text()  # 0.25 has no bot_token_file: the file is the only place it lives
    others = [p for p in tmp_path.rglob("*") if p.is_file() and p != path]
    assert others and all(TOKEN not in p.read_text() for p in others)


def test_shipped_timing_delivers_a_failure_within_120_seconds(tmp_path: Path) -> None:
    # poll 30 + scrape 30 + evaluation 30 + for 0 + max(group_wait 10, group_interval 20) + delivery 5
    assert SHIPPED_TIMING.worst_case_failure_seconds() == 115
    config = yaml.safe_load(rendered(tmp_path).read_text())
    route = config["route"]["routes"][0]
    assert (route["group_wait"], route["group_interval"], route["group_by"]) == ("10s", "20s", ["env"])
    rules_doc = yaml.safe_load((tmp_path / "prometheus" / "rules" / "vzkeep-prod.rules.yml").read_text())
    assert rules_doc["groups"][0]["interval"] == "30s"
    failed = next(r for r in rules_doc["groups"][0]["rules"] if r["alert"] == "BackupFailed")
    assert "for" not in failed
    scrape = yaml.safe_load((tmp_path / "prometheus" / "scrape-vzkeep.yml").read_text())["scrape_configs"][0]
    assert (scrape["scrape_interval"], scrape["honor_labels"]) == ("30s", True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chat_id": 0, "bot_token": TOKEN}, "chat_id"),
        ({"chat_id": CHAT, "bot_token": "  "}, "token is empty"),
        ({"chat_id": CHAT, "bot_token": TOKEN, "parse_mode": "Html"}, "parse_mode"),
    ],
    ids=["zero chat id", "empty token", "unknown parse mode"],
)
def test_telegram_target_rejects_what_alertmanager_would(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        am.TelegramTarget(**kwargs)
    assert TOKEN not in str(error.value)


def test_token_is_redacted_in_repr_and_previews() -> None:
    target = am.TelegramTarget(chat_id=CHAT, bot_token=TOKEN)
    assert TOKEN not in repr(target)
    preview = am.to_yaml(am.redacted(am.alertmanager_config(target)))
    assert TOKEN not in preview and am.REDACTED in preview
    assert TOKEN in am.to_yaml(am.alertmanager_config(target))  # the original is untouched


# --- a real Alertmanager posting to the fake Bot API ---------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def backup_alert(ends: dt.datetime | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    alert: dict[str, Any] = {
        "labels": {"alertname": "BackupFailed", "component": "backup", "env": "prod", "vmid": "101",
                   "name": "db<main>", "severity": "critical"},
        "annotations": {"summary": "Backup of db (vmid 101) in prod failed", "age": "1d 20h 0m 0s",
                        "runbook_url": "docs/runbooks/alerts.md#backupfailed"},
        "startsAt": iso(now - dt.timedelta(minutes=1)),
    }
    if ends is not None:
        alert["endsAt"] = iso(ends)
    return alert


@pytest.fixture
def telegram() -> Iterator[TelegramStub]:
    with TelegramStub() as fake:
        yield fake


def test_alertmanager_sends_an_html_message_naming_guest_and_env(tmp_path: Path, telegram: TelegramStub) -> None:
    config = rendered(tmp_path, api_url=telegram.url, timing=FAST)
    with run_alertmanager(config, ["--log.level=debug"]) as server:
        status, body = http_post_json(f"{server.url}/api/v2/alerts", [backup_alert()])
        assert status == 200, body
        firing = telegram.wait_for_message(lambda m: "FIRING" in m.text)
        http_post_json(f"{server.url}/api/v2/alerts", [backup_alert(ends=dt.datetime.now(dt.UTC))])
        resolved = telegram.wait_for_message(lambda m: "resolved" in m.text)
        log = server.log_text()
    assert (firing.token, firing.chat_id, firing.parse_mode) == (TOKEN, str(CHAT), "HTML")
    for expected in ("<b>BackupFailed</b>", "guest: db&lt;main&gt; (vmid 101)", "environment: prod",
                     "status: FIRING", "last good backup: 1d 20h 0m 0s ago", "runbook: docs/runbooks/alerts.md"):
        assert expected in firing.text, firing.text
    assert "Backup alerts resolved" in resolved.text and "status: resolved" in resolved.text
    assert "Telegram message successfully published" in log  # it did log at debug level...
    assert TOKEN not in log  # ...without the token


# --- the whole chain ----------------------------------------------------------------------------------------


def prometheus_config(tmp_path: Path, exporter: StaticExporter, alertmanager_url: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules/*.rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [render.scrape_config([exporter.address], FAST)],
    }
    directory = tmp_path / "prometheus"
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    return directory


def is_backup_failed_for_db(message: TelegramMessage) -> bool:
    return "BackupFailed" in message.text and "vmid 101" in message.text


def test_failed_backup_reaches_telegram_through_prometheus(tmp_path: Path, telegram: TelegramStub) -> None:
    config = rendered(tmp_path, api_url=telegram.url, timing=FAST)
    started = round(time.time())  # wall clock on purpose: a real Prometheus evaluates the rules at its own time
    with (
        StaticExporter(exposition(started)) as exporter,  # prod's db (101): last attempt failed, 44 h old
        run_alertmanager(config) as alertmanager,
        run_prometheus(prometheus_config(tmp_path, exporter, alertmanager.url)),
    ):
        message = telegram.wait_for_message(is_backup_failed_for_db, timeout=60)
    assert "<b>prod</b>" in message.text
    assert "guest: db (vmid 101)" in message.text
    # the age and the date were computed by Prometheus from the exporter's timestamp (44 h ago)
    assert "last good backup: " in message.text and " ago)" in message.text, message.text
    line = next(x for x in message.text.splitlines() if x.startswith("last good backup: "))
    when = dt.datetime.strptime(line.removeprefix("last good backup: ").split(" UTC")[0], "%Y-%m-%d %H:%M")
    assert 0 <= (started - 44 * 3600) - when.replace(tzinfo=dt.UTC).timestamp() < 60, line
    assert "(1d 20h 0m" in line or "(1d 19h 59m" in line, line
    assert "vmid 100" not in message.text and "vmid 102" not in message.text  # healthy guests stay quiet


# --- the CLI ------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.monitoring.yaml"):
        (root / name).write_text((REPO / name).read_text())
    return root


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner

    from vzkeep.cli import app

    return CliRunner().invoke(app, ["monitoring", "render", "--root", str(root), *args], env=env)


def test_cli_refuses_a_telegram_stack_without_token(stack_root: Path) -> None:
    result = cli(stack_root, "-s", "monitoring", "-o", str(stack_root / "out"), env={"VZKEEP_TELEGRAM_BOT_TOKEN": ""})
    assert result.exit_code == 2
    assert "--bot-token-file" in result.output and "VZKEEP_TELEGRAM_BOT_TOKEN" in result.output
    assert not (stack_root / "out" / "alertmanager").exists()


def test_cli_renders_the_exporter_host_stack_without_printing_the_token(stack_root: Path) -> None:
    out = stack_root / "out"
    result = cli(stack_root, "-s", "monitoring", "-o", str(out), "--json", env={"VZKEEP_TELEGRAM_BOT_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    files = {Path(f["path"]).relative_to(out).as_posix(): (f["kind"], f["mode"])
             for f in json.loads(result.output)["files"]}
    assert files == {
        "prometheus/rules/vzkeep-monitoring.rules.yml": ("rules", "0644"),
        "prometheus/rules/vzkeep-global.rules.yml": ("rules", "0644"),
        "prometheus/scrape-vzkeep.yml": ("scrape", "0644"),
        "grafana/dashboards/vzkeep-backups.json": ("dashboard", "0644"),
        "alertmanager/alertmanager.yml": ("alertmanager", "0600"),
    }
    config = yaml.safe_load((out / "alertmanager" / "alertmanager.yml").read_text())
    telegram = config["receivers"][1]["telegram_configs"][0]
    assert (telegram["chat_id"], telegram["bot_token"]) == (CHAT, TOKEN)


def test_cli_token_file_wins_and_an_env_stack_gets_only_its_rules(stack_root: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    out = stack_root / "out"
    assert cli(stack_root, "-s", "monitoring", "-o", str(out), "--bot-token-file", str(token_file)).exit_code == 0
    assert f"bot_token: {TOKEN}\n" in (out / "alertmanager" / "alertmanager.yml").read_text()
    result = cli(stack_root, "-s", "prod", "-o", str(tmp_path / "prod-out"), "--json")
    assert result.exit_code == 0, result.output
    kinds = [f["kind"] for f in json.loads(result.output)["files"]]
    assert kinds == ["rules"]


def test_cli_unknown_stack_is_a_usage_error(stack_root: Path) -> None:
    result = cli(stack_root, "-s", "staging")
    assert result.exit_code == 2
    assert "Pulumi.staging.yaml" in result.output
