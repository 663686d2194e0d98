"""BackupMonitoring: deliver the stack's monitoring files where Prometheus, Alertmanager and Grafana read them.

Every environment stack delivers its alert rules. The stack with `exporterHost` also delivers the
global rules, the scrape job and its targets file, the Grafana dashboard, the Alertmanager route with
its Telegram receiver, and the exporter itself with its timers (`ExporterHost`). Files are rendered
by `vzkeep.monitoring.render` (the same code as `vzkeep monitoring render`) and written by
pulumi-command, over SSH or into a local directory (`components.delivery`). A file holding a secret
is built inside an Output, so it stays a Pulumi secret, travels on stdin, is written 0600 and its
command logs nothing.

Prometheus reads the rules and the targets once its `prometheus.yml` names them: the one-time step
of the README ("Wire Prometheus once"), which a test checks with promtool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import yaml

from components import exporter_layout as layout
from components import shell
from components.delivery import Delivery, Target
from components.exporter_host import ExporterHost, ExporterHostArgs
from vzkeep.config import MonitoringSettings, ProviderSettings
from vzkeep.monitoring import SHIPPED_TIMING
from vzkeep.monitoring.alertmanager import TelegramTarget
from vzkeep.monitoring.render import RenderOptions, alertmanager_text, monitoring_texts
from vzkeep.plan import StackPlan


@dataclass
class BackupMonitoringArgs:
    plan: StackPlan
    settings: MonitoringSettings
    provider: ProviderSettings
    root: Path  # the checkout: the exporter's wheel is built from it
    telegram_bot_token: pulumi.Input[str] | None = None
    exporter_token: pulumi.Input[str] | None = None
    drill_token: pulumi.Input[str] | None = None
    ssh_private_key: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class _File:
    name: str  # child resource name suffix
    path: str
    content: pulumi.Input[str]
    mode: str = "0644"
    secret: bool = False
    reload: str | None = None


class BackupMonitoring(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: BackupMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:BackupMonitoring", name, None, opts)
        self.args = args
        s = args.settings
        local = s.deliver_to == "local"
        target = Target(host=None) if local else Target(host=s.ssh_host, user=s.ssh_user,
                                                        private_key=args.ssh_private_key)
        deliver = Delivery(self, target)
        files = self._rendered_files()
        self.deliveries = [deliver.file(f"{name}-{f.name}", f.path, f.content, mode=f.mode, secret=f.secret,
                                        reload=f.reload) for f in files]
        self.paths = [f.path for f in files]
        self.exporter = self._exporter(name, target) if s.exporter_host else None
        if self.exporter is not None:
            self.paths += self.exporter.paths
        self.register_outputs({"files": self.paths, "deliverTo": s.deliver_to})

    # -- what is delivered --------------------------------------------------------------------------

    def _rendered_files(self) -> list[_File]:
        s = self.args.settings
        options = RenderOptions(exporter_host=s.exporter_host, exporter_targets=(s.exporter_listen,))
        remote = s.deliver_to == "ssh"  # locally nothing is reloaded: the files are for the admin to install
        files = [_File(_stem(text.relative_path), self._target(text.relative_path), text.text,
                       reload=shell.PROMETHEUS_SERVICE if remote and text.kind == "rules" else None)
                 for text in monitoring_texts(self.args.plan.thresholds, options)]
        if s.exporter_host:
            # file_sd: Prometheus rereads it by itself; prometheus.yml's vzkeep job points at it (README).
            targets = yaml.safe_dump([{"targets": [s.exporter_listen]}], sort_keys=False)
            files.append(_File("scrape-targets", self._target("prometheus/vzkeep-targets.yml"), targets))
        telegram = s.telegram
        if telegram is not None and self.args.telegram_bot_token is not None:
            config = pulumi.Output.secret(self.args.telegram_bot_token).apply(
                lambda token: alertmanager_text(TelegramTarget(chat_id=telegram.chat_id, bot_token=token)))
            files.append(_File("alertmanager", self._target("alertmanager/alertmanager.yml"), config,
                               mode="0600", secret=True, reload=shell.ALERTMANAGER_SERVICE if remote else None))
        return files

    def _target(self, relative_path: str) -> str:
        """Where a rendered file goes: the same layout locally, the configured paths over SSH."""
        s = self.args.settings
        if s.deliver_to == "local":
            return f"{s.local_dir.rstrip('/')}/{relative_path}"
        directory, _, base = relative_path.rpartition("/")
        if relative_path == "prometheus/vzkeep-targets.yml":
            return s.scrape_targets
        return {
            "prometheus/rules": f"{s.rules_dir.rstrip('/')}/{base}",
            "prometheus": s.scrape_config,
            "alertmanager": s.alertmanager_config,
            "grafana/dashboards": f"{s.dashboards_dir.rstrip('/')}/{base}",
        }[directory]

    def _exporter(self, name: str, target: Target) -> ExporterHost:
        s, provider = self.args.settings, self.args.provider
        connection = layout.Connection(endpoint=provider.endpoint, fingerprint=s.exporter_fingerprint,
                                       insecure=provider.insecure)
        verify = layout.VerifyJob(s.verify.schedule, tuple(s.verify.dirs)) if s.verify else None
        drill = layout.DrillJob(s.drill.schedule, s.drill.env, s.drill.sample) if s.drill else None
        return ExporterHost(
            f"{name}-exporter",
            ExporterHostArgs(
                root=self.args.root, target=target, connection=connection, listen=s.exporter_listen,
                poll_seconds=SHIPPED_TIMING.exporter_poll_seconds, token=self.args.exporter_token,
                verify=verify, drill=drill, drill_token=self.args.drill_token,
                base_dir=f"{s.local_dir.rstrip('/')}/exporter" if s.deliver_to == "local" else None,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )


def _stem(relative_path: str) -> str:
    """`prometheus/rules/vzkeep-prod.rules.yml` -> `vzkeep-prod-rules`: a stable child name per file."""
    return relative_path.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace(".", "-")
