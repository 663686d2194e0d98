"""BackupMonitoring under mocks: what each stack delivers, secrets kept secret, and the local files for real."""

from __future__ import annotations

import hashlib
import stat
import subprocess

import pytest

from tests.helpers.stacks import ROOT, mutated, write_stack
from tests.helpers.tools import require_tool
from vzkeep.policy_check import unwrap_secrets
from vzkeep.preview import is_secret, run_stack_file

REMOTE = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
LOCAL = "command:local:Command"
BOT_TOKEN = "123456:AAE-fake-telegram-token"
PVE_TOKEN = "vzkeep-exporter@pve!exporter=11111111-2222-3333-4444-555555555555"
SECRETS = {"vzkeep:telegramBotToken": {"secure": "v1:tg"}, "vzkeep:drillApiToken": {"secure": "v1:drill"},
           "vzkeep:sshPrivateKey": {"secure": "v1:ssh"}, "vzkeep:s3SecretKey": {"secure": "v1:s3"}}


def deliveries(run, kind=REMOTE):
    """The commands of the stack's BackupMonitoring and of its ExporterHost."""
    owners = {r.urn for r in run.registrations if r.type in ("vzkeep:backup:BackupMonitoring",
                                                             "vzkeep:backup:ExporterHost")}
    return [r for r in run.of_type(kind) if r.parent in owners]


def with_secrets(tmp_path, name, **changes):
    path = write_stack(tmp_path, name, mutated(name, {**SECRETS, **changes}))
    return run_stack_file(path, root=ROOT)


def short(run, kind=REMOTE):
    prefix = f"{run.stack}-monitoring-"
    return {r.name.removeprefix(prefix): r for r in deliveries(run, kind)}


def test_an_environment_stack_delivers_its_rules_to_the_prometheus_host():
    run = run_stack_file(ROOT / "Pulumi.prod.yaml")
    [rules] = deliveries(run)
    inputs = unwrap_secrets(rules.inputs)
    path = "/etc/prometheus/rules.d/vzkeep-prod.rules.yml"
    assert f"mv -f -- \"$tmp\" {path}" in inputs["create"] and "chmod 0644" in inputs["create"]
    assert "systemctl reload prometheus.service" in inputs["create"], "Prometheus loads the new rules"
    assert inputs["connection"]["host"] == "prometheus.home.arpa"
    assert "alert: BackupFailed" in inputs["stdin"] and 'env="prod"' in inputs["stdin"]
    assert f"rm -f -- {path}" in inputs["delete"]


def test_the_exporter_host_delivers_route_dashboard_targets_exporter_and_timers(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    by_name = short(run)
    assert set(by_name) == {
        "vzkeep-monitoring-rules", "vzkeep-global-rules", "scrape-vzkeep", "scrape-targets", "vzkeep-backups",
        "alertmanager", "exporter-config", "exporter-unit", "exporter-token", "exporter-requirements",
        "exporter-verify-script", "exporter-verify-service", "exporter-verify-timer",
        "exporter-drill-script", "exporter-drill-service", "exporter-drill-timer", "exporter-drill-token",
        "exporter-install", "exporter-service"}
    alertmanager = by_name["alertmanager"].inputs
    assert is_secret(alertmanager["stdin"]) and alertmanager["logging"] == "none"
    assert "chmod 0600" in alertmanager["create"]
    for token in ("exporter-token", "exporter-drill-token"):
        inputs = by_name[token].inputs
        assert is_secret(inputs["stdin"]) and inputs["logging"] == "none" and "chmod 0600" in inputs["create"]
        assert "nothing to write" in inputs["create"], "an empty token is refused, not written"
    unit = unwrap_secrets(by_name["exporter-unit"].inputs)["stdin"]
    assert "LoadCredential=pve-token:/etc/vzkeep/pve-token" in unit and "--token-file %d/pve-token" in unit
    assert "ExecStart=/opt/vzkeep/current/bin/vzkeep exporter" in unit
    timer = unwrap_secrets(by_name["exporter-verify-timer"].inputs)["stdin"]
    assert "OnCalendar=Sun 05:00" in timer
    config = unwrap_secrets(by_name["exporter-config"].inputs)["stdin"]
    assert "verify-results: /var/lib/vzkeep/verify.sqlite" in config
    assert "drill-results: /var/lib/vzkeep/drills.json" in config
    service = by_name["exporter-service"]
    names = {d.rsplit("::", 1)[-1] for d in service.dependencies}
    assert {"monitoring-monitoring-exporter-install", "monitoring-monitoring-exporter-unit",
            "monitoring-monitoring-exporter-config", "monitoring-monitoring-exporter-token"} <= names


def test_the_exporter_is_installed_from_the_wheel_of_this_checkout_and_the_lock(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    [copy] = deliveries(run, COPY)
    wheel = copy.inputs["source"].path
    sha = hashlib.sha256(open(wheel, "rb").read()).hexdigest()  # noqa: SIM115
    assert copy.inputs["remotePath"] == f"/opt/vzkeep/dist/{sha[:16]}/vzkeep-0.1.0-py3-none-any.whl"
    assert copy.inputs["triggers"] == [sha]
    by_name = short(run)
    requirements = unwrap_secrets(by_name["exporter-requirements"].inputs)["stdin"]
    assert requirements.startswith((ROOT / "locks/exporter.txt").read_text().rstrip())
    assert requirements.rstrip().endswith(f"vzkeep @ file://{copy.inputs['remotePath']} --hash=sha256:{sha}")
    pinned = {line.split("==")[0] for line in requirements.splitlines() if "==" in line and not line[0].isspace()}
    assert pinned and not {p for p in pinned if p.startswith(("pulumi", "grpcio", "protobuf"))}, \
        "the Pulumi SDKs and grpc stay off the exporter host"
    install = by_name["exporter-install"]
    assert {d.rsplit("::", 1)[-1] for d in install.dependencies} >= {
        "monitoring-monitoring-exporter-requirements", "monitoring-monitoring-exporter-wheel"}
    create = unwrap_secrets(install.inputs)["create"]
    assert "--require-hashes" in create and "--no-deps" in create and "--only-binary=:all:" in create
    # A new wheel or lock is a new release: the install runs again and the service restarts.
    release = unwrap_secrets(install.inputs)["triggers"][0]
    assert release in unwrap_secrets(by_name["exporter-service"].inputs)["triggers"]


def test_the_service_restarts_when_config_unit_token_or_release_change(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    by_name = short(run)
    triggers = by_name["exporter-service"].inputs["triggers"]
    assert is_secret(triggers), "the tokens are among the triggers: the whole list stays a secret"
    plain = unwrap_secrets(triggers)
    for name in ("exporter-config", "exporter-unit", "exporter-verify-timer", "exporter-drill-script"):
        assert unwrap_secrets(by_name[name].inputs)["stdin"] in plain, name
    assert "[secret]" in plain, "the drill token (a secret the mocks show as a placeholder) is a trigger"
    changed = with_secrets(tmp_path, "monitoring", **{"vzkeep:monitoring.exporterListen": "0.0.0.0:9868"})
    assert unwrap_secrets(short(changed)["exporter-service"].inputs)["triggers"] != plain


def test_secrets_appear_only_inside_secret_values(tmp_path):
    run = with_secrets(tmp_path, "monitoring")
    for reg in run.registrations:
        plain = {k: v for k, v in reg.inputs.items() if not is_secret(v)}
        assert "[secret]" not in repr(plain), f"{reg.name} exposes a secret input in clear"


def test_local_delivery_writes_real_files_that_the_real_tools_accept(tmp_path):
    require_tool("promtool")
    out = tmp_path / "delivered"
    run = with_secrets(tmp_path, "monitoring", **{"vzkeep:monitoring.deliverTo": "local",
                                                  "vzkeep:monitoring.localDir": str(out)})
    for command in deliveries(run, LOCAL):
        inputs = unwrap_secrets(command.inputs)
        secret = is_secret(command.inputs.get("stdin"))
        if secret and "alertmanager" in inputs["create"]:
            continue  # rendered inside Output.apply from the token; the file is checked with amtool below
        # Mocks cannot read the token the provider would return: stand in for it.
        stdin = f"{PVE_TOKEN}\n" if secret else inputs.get("stdin", "")
        subprocess.run(["sh", "-c", inputs["create"]], input=stdin, text=True, check=True, cwd=tmp_path)
    rules = sorted((out / "prometheus/rules").glob("*.yml"))
    assert [p.name for p in rules] == ["vzkeep-global.rules.yml", "vzkeep-monitoring.rules.yml"]
    check = subprocess.run(["promtool", "check", "rules", *map(str, rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    exporter = out / "exporter"
    token_file = exporter / "etc/vzkeep/pve-token"
    assert token_file.read_text() == f"{PVE_TOKEN}\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "exporter --config" in (exporter / "etc/systemd/system/vzkeep-exporter.service").read_text()
    assert len(list((exporter / "opt/vzkeep/dist").glob("*/vzkeep-*.whl"))) == 1
    assert not list(tmp_path.rglob(".vzkeep.*")), "no temporary file is left behind"


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


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("vzkeep:monitoring.verify.schedule", "Sun 05:00\nExecStartPre=/bin/evil", "must match"),
    ("vzkeep:monitoring.verify.dirs", ["relative/dump"], "absolute path"),
    ("vzkeep:monitoring.verify.dirs", ["/mnt/../etc"], "'..'"),
])
def test_timer_settings_that_could_escape_their_line_are_refused(tmp_path, key, value, allowed):
    from vzkeep.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        with_secrets(tmp_path, "monitoring", **{key: value})
    assert caught.value.key.startswith(key) and allowed in str(caught.value)


def test_the_documented_prometheus_wiring_loads_the_delivered_files(tmp_path):
    """README "Wire Prometheus once": its snippet, with the files the stack delivers, passes promtool, and
    its job matches the scrape job `vzkeep monitoring render` writes."""
    import re

    import yaml

    from vzkeep.monitoring.render import scrape_config

    require_tool("promtool")
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Wire Prometheus once**"):]
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    [job] = snippet["scrape_configs"]
    rendered = scrape_config(["127.0.0.1:9868"])
    assert {k: v for k, v in job.items() if k != "file_sd_configs"} == {
        k: v for k, v in rendered.items() if k != "static_configs"}
    run = with_secrets(tmp_path, "monitoring", **{"vzkeep:monitoring.deliverTo": "local",
                                                  "vzkeep:monitoring.localDir": str(tmp_path / "out")})
    for command in deliveries(run, LOCAL):
        inputs = unwrap_secrets(command.inputs)
        if "prometheus/" in inputs["create"]:
            subprocess.run(["sh", "-c", inputs["create"]], input=inputs["stdin"], text=True, check=True)
    # The same config, pointed at where the local delivery put the files.
    text = yaml.safe_dump(snippet).replace("/etc/prometheus/rules.d", str(tmp_path / "out/prometheus/rules"))
    text = text.replace("/etc/prometheus/vzkeep-targets.yml", str(tmp_path / "out/prometheus/vzkeep-targets.yml"))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 2 rule files found" in check.stdout and "WARNING" not in check.stdout + check.stderr
    targets = yaml.safe_load((tmp_path / "out/prometheus/vzkeep-targets.yml").read_text())
    assert targets == [{"targets": ["127.0.0.1:9868"]}]
