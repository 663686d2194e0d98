"""BackupMonitoring under mocks: what each stack delivers, secrets kept secret, and the local files for real."""

from __future__ import annotations

import stat
import subprocess

import pytest

from tests.stacks import ROOT, mutated, write_stack
from tests.tools import require_tool
from vzkeep.policy_check import unwrap_secrets
from vzkeep.preview import is_secret, run_stack_file

REMOTE = "command:remote:Command"
LOCAL = "command:local:Command"
BOT_TOKEN = "123456:AAE-fake-telegram-token"
PVE_TOKEN = "vzkeep@pve!exporter=11111111-2222-3333-4444-555555555555"


def deliveries(run, kind=REMOTE):
    return [r for r in run.of_type(kind) if r.parent.endswith("BackupMonitoring::" + f"{run.stack}-monitoring")]


def with_secrets(tmp_path, name, **changes):
    secrets = {"vzkeep:telegramBotToken": {"secure": "v1:tg"}, "vzkeep:exporterApiToken": {"secure": "v1:pve"},
               "vzkeep:sshPrivateKey": {"secure": "v1:ssh"}, "vzkeep:s3SecretKey": {"secure": "v1:s3"}}
    path = write_stack(tmp_path, name, mutated(name, {**secrets, **changes}))
    return run_stack_file(path, root=ROOT)


def test_an_environment_stack_delivers_its_rules_to_the_prometheus_host():
    run = run_stack_file(ROOT / "Pulumi.prod.yaml")
    [rules] = deliveries(run)
    inputs = unwrap_secrets(rules.inputs)
    assert inputs["create"] == "install -D -m 0644 /dev/stdin /etc/prometheus/rules.d/vzkeep-prod.rules.yml"
    assert inputs["connection"]["host"] == "prometheus.home.arpa"
    assert "alert: BackupFailed" in inputs["stdin"] and 'env="prod"' in inputs["stdin"]
    assert inputs["delete"] == "rm -f /etc/prometheus/rules.d/vzkeep-prod.rules.yml"


def test_the_exporter_host_delivers_route_dashboard_exporter_and_starts_it(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    by_name = {r.name.removeprefix("monitoring-monitoring-"): r for r in deliveries(run)}
    assert set(by_name) == {"vzkeep-monitoring-rules", "vzkeep-global-rules", "scrape-vzkeep", "vzkeep-backups",
                            "alertmanager", "exporter-config", "exporter-token", "exporter-unit",
                            "exporter-service"}
    alertmanager = by_name["alertmanager"].inputs
    assert is_secret(alertmanager["stdin"]) and alertmanager["logging"] == "none"
    assert "install -D -m 0600" in alertmanager["create"]
    token = by_name["exporter-token"].inputs
    assert is_secret(token["stdin"]) and "-m 0600" in token["create"]
    unit = unwrap_secrets(by_name["exporter-unit"].inputs)["stdin"]
    assert "LoadCredential=pve-token:/etc/vzkeep/pve-token" in unit and "--token-file %d/pve-token" in unit
    service = by_name["exporter-service"]
    assert {d.rsplit("::", 1)[-1] for d in service.dependencies} >= {
        "monitoring-monitoring-exporter-unit", "monitoring-monitoring-exporter-config"}


def test_secrets_appear_only_inside_secret_values(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    for reg in run.registrations:
        plain = {k: v for k, v in reg.inputs.items() if not is_secret(v)}
        assert "[secret]" not in repr(plain), f"{reg.name} exposes a secret input in clear"


def test_local_delivery_writes_real_files_that_the_real_tools_accept(tmp_path):
    require_tool("promtool")
    require_tool("amtool")
    out = tmp_path / "delivered"
    run = with_secrets(tmp_path, "monitoring", **{"vzkeep:monitoring.deliverTo": "local",
                                                  "vzkeep:monitoring.localDir": str(out)})
    for command in deliveries(run, LOCAL):
        inputs = unwrap_secrets(command.inputs)
        secret = is_secret(command.inputs.get("stdin"))
        if secret and "alertmanager" in inputs["create"]:
            continue  # rendered inside Output.apply from the token; the file is checked with amtool below
        # Mocks cannot decrypt: the one other secret file is the PVE token, stand in for it.
        stdin = f"{PVE_TOKEN}\n" if secret else inputs.get("stdin", "")
        subprocess.run(["bash", "-c", inputs["create"]], input=stdin, text=True, check=True, cwd=tmp_path)
    rules = sorted((out / "prometheus/rules").glob("*.yml"))
    assert [p.name for p in rules] == ["vzkeep-global.rules.yml", "vzkeep-monitoring.rules.yml"]
    check = subprocess.run(["promtool", "check", "rules", *map(str, rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    token_file = out / "exporter/pve-token"
    assert token_file.read_text() == f"{PVE_TOKEN}\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "exporter --config" in (out / "exporter/vzkeep-exporter.service").read_text()


def test_alertmanager_file_rendered_from_the_secret_passes_amtool(tmp_path):
    require_tool("amtool")
    from vzkeep.monitoring.alertmanager import TelegramTarget
    from vzkeep.monitoring.render import alertmanager_text

    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_text(TelegramTarget(chat_id=-1001234567890, bot_token=BOT_TOKEN)))
    check = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_ssh_delivery_needs_a_host(tmp_path):
    from vzkeep.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        with_secrets(tmp_path, "lab", **{"vzkeep:monitoring.sshHost": None})
    assert caught.value.key == "vzkeep:monitoring" and "sshHost" in str(caught.value)
