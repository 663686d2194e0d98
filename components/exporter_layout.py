"""What the monitoring stack puts on the exporter host: paths, systemd units, scripts, all as text.

Layout (a fresh Debian host with python3; `python3-venv` is installed if missing):

    /opt/vzkeep/dist/<sha>/vzkeep-<version>-py3-none-any.whl   the wheel built from the checkout
    /opt/vzkeep/requirements.txt      locks/exporter.txt + the wheel, every line pinned with a SHA-256
    /opt/vzkeep/releases/<release>/   one virtualenv per (lock, wheel); <release> hashes both
    /opt/vzkeep/current -> releases/<release>   switched atomically once the release is installed
    /etc/vzkeep/exporter.yml          the exporter's config (no secret)
    /etc/vzkeep/pve-token             the exporter's PVE token, 0600, handed to the service by systemd
    /etc/vzkeep/drill-token           the drill's PVE token, 0600 (when drills are scheduled)
    /etc/vzkeep/vzkeep-verify.sh, vzkeep-drill.sh    what the timers run (arguments quoted once, here)
    /etc/systemd/system/vzkeep-exporter.service
    /etc/systemd/system/vzkeep-{verify,drill}.{service,timer}
    /var/lib/vzkeep/verify.sqlite, drills.json       results the timers write and the exporter publishes

Nothing here imports Pulumi: the same texts are checked by the tests on a real sshd and by systemd-analyze.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

import yaml

from components import shell

ROOT = "/opt/vzkeep"
CURRENT = f"{ROOT}/current"
REQUIREMENTS = f"{ROOT}/requirements.txt"
CONFIG_DIR = "/etc/vzkeep"
UNIT_DIR = "/etc/systemd/system"
STATE_DIR = "/var/lib/vzkeep"
VERIFY_RESULTS = f"{STATE_DIR}/verify.sqlite"
DRILL_RESULTS = f"{STATE_DIR}/drills.json"
EXPORTER_SERVICE = "vzkeep-exporter.service"
TIMERS = ("vzkeep-verify", "vzkeep-drill")


@dataclass(frozen=True)
class Release:
    """One installable version of the exporter: the lock file plus the wheel."""

    lock_text: str
    wheel_filename: str
    wheel_sha256: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.lock_text}\0{self.wheel_sha256}".encode()).hexdigest()[:16]

    @property
    def wheel_path(self) -> str:
        return f"{ROOT}/dist/{self.wheel_sha256[:16]}/{self.wheel_filename}"

    def requirements(self) -> str:
        """The lock, plus the wheel itself pinned by its hash: pip checks every file it installs."""
        return (f"{self.lock_text.rstrip()}\n# The vzkeep wheel built from the checkout by `pulumi up`.\n"
                f"vzkeep @ file://{self.wheel_path} --hash=sha256:{self.wheel_sha256}\n")


@dataclass(frozen=True)
class Connection:
    """How the exporter, verify and drill reach PVE (the stack's `proxmoxve:endpoint`)."""

    endpoint: str
    fingerprint: str | None
    insecure: bool


@dataclass(frozen=True)
class VerifyJob:
    schedule: str
    dirs: tuple[str, ...]


@dataclass(frozen=True)
class DrillJob:
    schedule: str
    env: str | None
    sample: int


def install_script(release: Release) -> str:
    """Install `release` in its own virtualenv, then switch `current` to it; an older one keeps running
    until then, and a failed install leaves it in place (the next `pulumi up` retries)."""
    target = f"{ROOT}/releases/{release.id}"
    pip = [f"{target}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--require-hashes", "--only-binary=:all:", "-r", REQUIREMENTS]
    return shell.script(
        f"release={shlex.quote(target)}",
        'if [ ! -e "$release/.complete" ]; then',
        "  python3 -c 'import ensurepip, venv' 2>/dev/null || {",
        "    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }",
        '  rm -rf -- "$release"',
        '  python3 -m venv "$release"',
        f"  {shell.joined(pip)}",
        '  "$release/bin/vzkeep" --help >/dev/null',
        '  touch "$release/.complete"',
        "fi",
        f'ln -sfn "$release" {shlex.quote(CURRENT + ".new")}',
        f"mv -T {shlex.quote(CURRENT + '.new')} {shlex.quote(CURRENT)}",
        f'for old in {shlex.quote(ROOT)}/releases/*; do [ "$old" = "$release" ] || rm -rf -- "$old"; done',
        f'for old in {shlex.quote(ROOT)}/dist/*; do',
        f'  [ "$old" = {shlex.quote(release.wheel_path.rsplit("/", 1)[0])} ] || rm -rf -- "$old"; done',
    )


def uninstall_script() -> str:
    return shell.script(f"rm -rf -- {shlex.quote(ROOT)}")


def service_script(verify: VerifyJob | None, drill: DrillJob | None) -> str:
    """Load the units, (re)start the exporter, enable the configured timers and disable the others."""
    lines = ["systemctl daemon-reload", f"systemctl enable {EXPORTER_SERVICE}", f"systemctl restart {EXPORTER_SERVICE}"]
    for name, job in zip(TIMERS, (verify, drill), strict=True):
        if job is not None:
            lines.append(f"systemctl enable --now {name}.timer")
        else:
            lines.append(f"systemctl disable --now {name}.timer 2>/dev/null || true")
    return shell.script(*lines)


def stop_script() -> str:
    units = [EXPORTER_SERVICE, *(f"{name}.timer" for name in TIMERS)]
    return shell.script(f"systemctl disable --now {' '.join(units)} 2>/dev/null || true")


def exporter_config(connection: Connection, listen: str, *, poll_seconds: int, verify: bool, drill: bool) -> str:
    """`vzkeep exporter --config` (docs/exporter.md); the token comes from systemd's credentials."""
    config: dict[str, object] = {"endpoint": connection.endpoint}
    if connection.fingerprint:
        config["fingerprint"] = connection.fingerprint
    else:
        config["insecure"] = connection.insecure
    config["listen"] = listen
    config["interval"] = poll_seconds
    if verify:
        config["verify-results"] = VERIFY_RESULTS
    if drill:
        config["drill-results"] = DRILL_RESULTS
    header = "# vzkeep exporter, delivered by the monitoring stack (pulumi up); see docs/exporter.md.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


EXPORTER_UNIT = f"""[Unit]
Description=vzkeep backup exporter for Prometheus
Wants=network-online.target
After=network-online.target

[Service]
# The token file is root-only (0600); systemd hands the unprivileged service a private copy.
LoadCredential=pve-token:{CONFIG_DIR}/pve-token
ExecStart={CURRENT}/bin/vzkeep exporter --config {CONFIG_DIR}/exporter.yml --token-file %d/pve-token
DynamicUser=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def timer_unit(what: str, schedule: str) -> str:
    # Persistent: a run missed while the host was off happens at boot (verify and drill only read or
    # use scratch guests; backup jobs themselves stay without catch-up).
    return f"""[Unit]
Description=vzkeep {what} on a schedule

[Timer]
OnCalendar={schedule}
Persistent=true
RandomizedDelaySec=5min

[Install]
WantedBy=timers.target
"""


def oneshot_unit(name: str, what: str, *, timeout: str, credential: str | None = None) -> str:
    credential_line = f"LoadCredential=pve-token:{CONFIG_DIR}/{credential}\n" if credential else ""
    return f"""[Unit]
Description=vzkeep {what}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
{credential_line}ExecStart={CONFIG_DIR}/{name}.sh
StateDirectory=vzkeep
StateDirectoryMode=0755
UMask=0022
TimeoutStartSec={timeout}
ProtectSystem=strict
ReadWritePaths={STATE_DIR}
PrivateTmp=yes
NoNewPrivileges=yes
"""


def _connected(command: str, connection: Connection) -> list[str]:
    """`vzkeep COMMAND` reaching PVE as the exporter does (its endpoint and certificate pin)."""
    argv = [f"{CURRENT}/bin/vzkeep", command, "--endpoint", connection.endpoint]
    if connection.fingerprint:
        argv += ["--fingerprint", connection.fingerprint]
    elif connection.insecure:
        argv.append("--insecure")
    return argv


# The token systemd hands the service (LoadCredential=pve-token:...), never in the script itself.
_TOKEN_FILE = '--token-file "$CREDENTIALS_DIRECTORY/pve-token"'


def verify_command(job: VerifyJob, connection: Connection) -> str:
    """`vzkeep verify` over the directories where this host sees the archives, connected with the exporter's
    token: PVE says which storage each archive is on (its volid, what the exporter publishes results by)
    and the zone of the node that wrote it (the name/time check), so no result is anonymous or unchecked."""
    argv = [*_connected("verify", connection), "--results", VERIFY_RESULTS]
    for directory in job.dirs:
        argv += ["--dir", directory]
    return ("#!/bin/sh\n# Run by vzkeep-verify.service; delivered by the monitoring stack.\n"
            f"exec {shell.joined(argv)} {_TOKEN_FILE}\n")


def drill_command(job: DrillJob, connection: Connection) -> str:
    """`vzkeep drill` with the drill token systemd hands over in $CREDENTIALS_DIRECTORY."""
    argv = [*_connected("drill", connection), "--sample", str(job.sample), "--results", DRILL_RESULTS]
    if job.env:
        argv += ["--env", job.env]
    return ("#!/bin/sh\n# Run by vzkeep-drill.service; delivered by the monitoring stack.\n"
            f"exec {shell.joined(argv)} {_TOKEN_FILE}\n")
