"""Every string setting that reaches a delivered command is data, never shell code.

Each such setting gets shell metacharacters that would each create a marker file if a shell ever
evaluated them; the delivered scripts then run for real (sh, in a temp directory) and no marker may
appear, while every file lands at its literal path and every argument arrives unchanged.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
from pathlib import Path

import yaml

from tests.helpers.stacks import ROOT, mutated, write_stack
from vzkeep.policy_check import unwrap_secrets
from vzkeep.preview import is_secret, run_stack_file

TOKEN = "vzkeep-exporter@pve!exporter=00000000-0000-0000-0000-000000000000"
SECRETS = {"vzkeep:telegramBotToken": {"secure": "v1:tg"}, "vzkeep:drillApiToken": {"secure": "v1:drill"},
           "vzkeep:sshPrivateKey": {"secure": "v1:ssh"}, "vzkeep:s3SecretKey": {"secure": "v1:s3"}}


def hostile(tmp: Path, tag: str) -> str:
    """A path-safe string holding every way a shell could be made to run `touch <marker>`."""
    marker = tmp / f"pwned-{tag}"
    return (f"{tag} $(touch {marker}-dollar) `touch {marker}-tick`;touch {marker}-semi&&touch {marker}-and"
            f"|touch {marker}-pipe 'q\" ${{HOME}} * ?")


def run_all(commands, tmp: Path, stub_bin: Path) -> None:
    for command in commands:
        inputs = unwrap_secrets(command.inputs)
        stdin = f"{TOKEN}\n" if is_secret(command.inputs.get("stdin")) else inputs.get("stdin") or ""
        done = subprocess.run(["sh", "-c", inputs["create"]], input=stdin, text=True, capture_output=True, cwd=tmp,
                              env={"PATH": f"{stub_bin}:/usr/bin:/bin", "HOME": str(tmp)}, check=False)
        assert done.returncode == 0, f"{command.name}: {done.stderr}"


def stub_bin(tmp: Path) -> Path:
    """`systemctl` and the installed `vzkeep` replaced by recorders of their arguments (JSON lines)."""
    directory = tmp / "stub-bin"
    directory.mkdir()
    for name in ("systemctl", "vzkeep"):
        path = directory / name
        path.write_text(f"#!/usr/bin/env python3\nimport json, sys\nopen({str(tmp / (name + '.argv'))!r}, 'a')"
                        f".write(json.dumps(sys.argv[1:]) + '\\n')\n")
        path.chmod(0o755)
    return directory


def no_marker(tmp: Path) -> None:
    """No marker file anywhere (the literal directories contain the marker's name, followed by more text)."""
    marker = re.compile(r"pwned-\w+-(dollar|tick|semi|and|pipe)|pwned-url")
    markers = [p for p in tmp.rglob("pwned-*") if marker.fullmatch(p.name)]
    assert markers == []


def test_local_delivery_treats_the_directory_as_data(tmp_path):
    out = tmp_path / hostile(tmp_path, "localdir")
    path = write_stack(tmp_path, "monitoring", mutated("monitoring", {
        **SECRETS, "vzkeep:monitoring.deliverTo": "local", "vzkeep:monitoring.localDir": str(out)}))
    run = run_stack_file(path, root=ROOT)
    commands = run.of_type("command:local:Command")
    assert len(commands) > 10
    run_all(commands, tmp_path, stub_bin(tmp_path))
    no_marker(tmp_path)
    assert (out / "prometheus/rules/vzkeep-monitoring.rules.yml").is_file()
    token = out / "exporter/etc/vzkeep/pve-token"
    assert token.read_text() == f"{TOKEN}\n" and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert list((out / "exporter/opt/vzkeep/dist").glob("*/vzkeep-*.whl"))


def test_ssh_delivery_paths_scripts_and_config_treat_every_setting_as_data(tmp_path):
    base = tmp_path / "host"
    paths = {key: f"{base}/{key}/{hostile(tmp_path, key)}" for key in
             ("rulesDir", "dashboardsDir", "scrapeConfig", "alertmanagerConfig", "scrapeTargets")}
    dirs = [f"/mnt/{hostile(tmp_path, 'verify1')}", f"/srv/{hostile(tmp_path, 'verify2')}"]
    endpoint = f"https://pve1.home.arpa:8006/?a=$(touch${{IFS}}{tmp_path}/pwned-url)&b=`id`;c='x'"
    listen = "127.0.0.1:9868\ninsecure: true"
    path = write_stack(tmp_path, "monitoring", mutated("monitoring", {
        **SECRETS, **{f"vzkeep:monitoring.{k}": v for k, v in paths.items()},
        "vzkeep:monitoring.verify.dirs": dirs, "vzkeep:monitoring.exporterListen": listen,
        "proxmoxve:endpoint": endpoint}))
    run = run_stack_file(path, root=ROOT)
    commands = run.of_type("command:remote:Command")
    # Every file delivered under a configured path, run for real; the exporter host's own files go to
    # fixed paths (/etc/vzkeep, /opt/vzkeep): their contents are checked below instead.
    configured = [c for c in commands if str(base) in unwrap_secrets(c.inputs)["create"]]
    assert len(configured) >= 6
    stubs = stub_bin(tmp_path)
    run_all(configured, tmp_path, stubs)
    no_marker(tmp_path)
    assert Path(paths["rulesDir"], "vzkeep-monitoring.rules.yml").is_file()
    assert Path(paths["alertmanagerConfig"]).is_file() and Path(paths["scrapeTargets"]).is_file()
    assert yaml.safe_load(Path(paths["scrapeTargets"]).read_text()) == [{"targets": [listen]}]

    by_name = {c.name.removeprefix("monitoring-monitoring-exporter-"): unwrap_secrets(c.inputs) for c in commands}
    config = yaml.safe_load(by_name["config"]["stdin"])
    assert (config["endpoint"], config["listen"], config["insecure"]) == (endpoint, listen, False)
    for script, expected in (
        ("verify-script", ["verify", "--endpoint", endpoint, "--results", "/var/lib/vzkeep/verify.sqlite",
                           "--dir", dirs[0], "--dir", dirs[1], "--token-file", f"{tmp_path}/credentials/pve-token"]),
        ("drill-script", ["drill", "--endpoint", endpoint, "--sample", "1", "--results",
                          "/var/lib/vzkeep/drills.json", "--token-file", f"{tmp_path}/credentials/pve-token"]),
    ):
        text = by_name[script]["stdin"].replace("/opt/vzkeep/current/bin/vzkeep", shlex.quote(str(stubs / "vzkeep")))
        done = subprocess.run(["sh", "-c", text], text=True, capture_output=True, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": f"{tmp_path}/credentials"},
                              check=False)
        assert done.returncode == 0, done.stderr
        argv = json.loads((tmp_path / "vzkeep.argv").read_text().splitlines()[-1])
        assert argv == expected
    no_marker(tmp_path)
