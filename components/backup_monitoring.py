"""BackupMonitoring: deliver the stack's monitoring files where Prometheus, Alertmanager and Grafana read them.

Every environment stack delivers its alert rules. The stack with `exporterHost` also delivers the
global rules, the scrape job, the Grafana dashboard, the Alertmanager route with its Telegram
receiver, and the exporter itself (systemd unit, config, read-only PVE token). Files are rendered by
`vzkeep.monitoring.render` (the same code as `vzkeep monitoring render`) and written by
pulumi-command, over SSH or into a local directory. A file holding a secret is built inside an
Output, so it stays a Pulumi secret, is written 0600 and its command logs nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from vzkeep.config import MonitoringSettings
from vzkeep.monitoring.alertmanager import TelegramTarget
from vzkeep.monitoring.render import RenderOptions, alertmanager_text, monitoring_texts
from vzkeep.plan import StackPlan

EXPORTER_DIR = "/etc/vzkeep"
EXPORTER_VENV = "/opt/vzkeep"
EXPORTER_UNIT = "/etc/systemd/system/vzkeep-exporter.service"


@dataclass
class BackupMonitoringArgs:
    plan: StackPlan
    settings: MonitoringSettings
    pve_endpoint: str
    telegram_bot_token: pulumi.Input[str] | None = None
    exporter_api_token: pulumi.Input[str] | None = None
    ssh_private_key: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class _File:
    name: str  # child resource name suffix
    path: str
    content: pulumi.Input[str]
    mode: str = "0644"
    secret: bool = False


class BackupMonitoring(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: BackupMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupMonitoring", name, None, opts)
        self.args = args
        files = self._rendered_files() + (self._exporter_files() if args.settings.exporter_host else [])
        self.deliveries = [self._deliver(name, f) for f in files]
        if args.settings.exporter_host:
            self.deliveries.append(self._start_exporter(name, depends_on=self.deliveries))
        self.paths = [f.path for f in files]
        self.register_outputs({"files": self.paths, "deliverTo": args.settings.deliver_to})

    # -- what is delivered --------------------------------------------------------------------------

    def _rendered_files(self) -> list[_File]:
        s = self.args.settings
        options = RenderOptions(exporter_host=s.exporter_host, exporter_targets=(s.exporter_listen,))
        files = [_File(_stem(text.relative_path), self._target(text.relative_path), text.text)
                 for text in monitoring_texts(self.args.plan.thresholds, options)]
        telegram = s.telegram
        if telegram is not None and self.args.telegram_bot_token is not None:
            config = pulumi.Output.secret(self.args.telegram_bot_token).apply(
                lambda token: alertmanager_text(TelegramTarget(chat_id=telegram.chat_id, bot_token=token)))
            files.append(_File("alertmanager", self._target("alertmanager/alertmanager.yml"), config,
                               mode="0600", secret=True))
        return files

    def _target(self, relative_path: str) -> str:
        """Where a rendered file goes: the same layout locally, the configured paths over SSH."""
        s = self.args.settings
        if s.deliver_to == "local":
            return f"{s.local_dir.rstrip('/')}/{relative_path}"
        directory, _, base = relative_path.rpartition("/")
        return {
            "prometheus/rules": f"{s.rules_dir.rstrip('/')}/{base}",
            "prometheus": s.scrape_config,
            "alertmanager": s.alertmanager_config,
            "grafana/dashboards": f"{s.dashboards_dir.rstrip('/')}/{base}",
        }[directory]

    def _exporter_files(self) -> list[_File]:
        s = self.args.settings
        base = f"{s.local_dir.rstrip('/')}/exporter" if s.deliver_to == "local" else EXPORTER_DIR
        config = "\n".join([
            "# vzkeep exporter (delivered by the monitoring stack); see docs/exporter.md.",
            "# The unit passes --token-file from systemd's credentials directory (LoadCredential).",
            f"endpoint: {self.args.pve_endpoint}",
            f"fingerprint: {s.exporter_fingerprint}" if s.exporter_fingerprint else "insecure: false",
            f"listen: {s.exporter_listen}",
            "drill-results: /var/lib/vzkeep/drills.json",  # written by `vzkeep drill` on this host
            "interval: 30",  # DeliveryTiming.exporter_poll_seconds: the 120 s failure-to-Telegram budget
        ]) + "\n"
        files = [_File("exporter-config", f"{base}/exporter.yml", config)]
        if self.args.exporter_api_token is not None:
            token = pulumi.Output.secret(self.args.exporter_api_token).apply(lambda t: f"{t}\n")
            files.append(_File("exporter-token", f"{base}/pve-token", token, mode="0600", secret=True))
        unit = _EXPORTER_UNIT.format(venv=EXPORTER_VENV, config=f"{base}/exporter.yml", token=f"{base}/pve-token")
        files.append(_File("exporter-unit", f"{base}/vzkeep-exporter.service" if s.deliver_to == "local"
                           else EXPORTER_UNIT, unit))
        return files

    # -- how it is delivered ------------------------------------------------------------------------

    def _deliver(self, name: str, f: _File) -> pulumi.Resource:
        create = f"install -D -m {f.mode} /dev/stdin {shlex.quote(f.path)}"
        delete = f"rm -f {shlex.quote(f.path)}"
        return self._command(f"{name}-{f.name}", create, delete, stdin=f.content, quiet=f.secret)

    def _start_exporter(self, name: str, depends_on: list[pulumi.Resource]) -> pulumi.Resource:
        s = self.args.settings
        if s.deliver_to == "local":
            script = f"echo 'exporter files are in {s.local_dir}/exporter: install them on the monitoring host'"
        else:
            script = _START_EXPORTER.format(venv=EXPORTER_VENV, package=shlex.quote(s.exporter_package))
        return self._command(f"{name}-exporter-service", script, None, depends_on=depends_on)

    def _command(self, resource_name: str, create: str, delete: str | None, *,
                 stdin: pulumi.Input[str] | None = None, quiet: bool = False,
                 depends_on: list[pulumi.Resource] | None = None) -> pulumi.Resource:
        s = self.args.settings
        opts = pulumi.ResourceOptions(parent=self, depends_on=depends_on)
        if s.deliver_to == "local":
            return command.local.Command(
                resource_name, create=create, delete=delete, stdin=stdin,
                logging=command.local.Logging.NONE if quiet else None, opts=opts)
        return command.remote.Command(
            resource_name,
            connection=command.remote.ConnectionArgs(host=s.ssh_host, user=s.ssh_user,
                                                     private_key=self.args.ssh_private_key),
            create=create, delete=delete, stdin=stdin,
            logging=command.remote.Logging.NONE if quiet else None, opts=opts)


def _stem(relative_path: str) -> str:
    """`prometheus/rules/vzkeep-prod.rules.yml` -> `vzkeep-prod-rules`: a stable child name per file."""
    return relative_path.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace(".", "-")


_EXPORTER_UNIT = """[Unit]
Description=vzkeep backup exporter for Prometheus
After=network-online.target

[Service]
# The token file is root-only (0600); systemd hands the unprivileged service a private copy.
LoadCredential=pve-token:{token}
ExecStart={venv}/bin/vzkeep exporter --config {config} --token-file %d/pve-token
DynamicUser=yes
ReadOnlyPaths=/
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

_START_EXPORTER = """set -eu
test -x {venv}/bin/vzkeep || {{ python3 -m venv {venv} && {venv}/bin/pip install --quiet {package}; }}
systemctl daemon-reload
systemctl enable --now vzkeep-exporter.service
systemctl reload prometheus prometheus-alertmanager 2>/dev/null || true
"""
