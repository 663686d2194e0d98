"""ExporterHost: the vzkeep exporter, its verify and drill timers, installed on the monitoring host.

The wheel is built from this checkout (`components.wheel`) and copied with `CopyToRemote`; the host
installs it with the dependencies of `locks/exporter.txt`, every file checked against its SHA-256
(`pip --require-hashes`), so nothing comes from an index unpinned and Pulumi's SDKs never reach the
host. The layout and the texts are in `components.exporter_layout`. The service restarts when its
config, unit, token or release change (pulumi-command `triggers`); a new wheel or lock is a new release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from components import exporter_layout as layout
from components.delivery import Delivery, Target
from components.wheel import exporter_wheel

LOCK_FILE = Path("locks") / "exporter.txt"


@dataclass
class ExporterHostArgs:
    root: Path  # the checkout the wheel is built from
    target: Target
    connection: layout.Connection
    listen: str
    poll_seconds: int
    token: pulumi.Input[str] | None  # the exporter's PVE token (a secret Output)
    verify: layout.VerifyJob | None = None
    drill: layout.DrillJob | None = None
    drill_token: pulumi.Input[str] | None = None
    base_dir: str | None = None  # local delivery: every file under this directory, nothing installed


class ExporterHost(pulumi.ComponentResource):
    def __init__(self, name: str, args: ExporterHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vzkeep:backup:ExporterHost", name, None, opts)
        self.args = args
        deliver = Delivery(self, args.target)
        wheel = exporter_wheel(args.root)
        self.release = layout.Release((args.root / LOCK_FILE).read_text(), wheel.filename, wheel.sha256)
        files = [deliver.file(f"{name}-{key}", self._path(path), text, mode=mode)
                 for key, path, text, mode in self._texts()]
        secrets = [(f"{name}-token", f"{layout.CONFIG_DIR}/pve-token", args.token)]
        if args.drill is not None:
            secrets.append((f"{name}-drill-token", f"{layout.CONFIG_DIR}/drill-token", args.drill_token))
        tokens = [deliver.file(resource, self._path(path), pulumi.Output.secret(value).apply(_line), mode="0600",
                               secret=True)
                  for resource, path, value in secrets if value is not None]
        requirements = deliver.file(f"{name}-requirements", self._path(layout.REQUIREMENTS),
                                    self.release.requirements())
        copy = deliver.copy(f"{name}-wheel", pulumi.FileAsset(str(wheel.path)),
                            self._path(self.release.wheel_path), triggers=[wheel.sha256])
        self.paths = [self._path(p) for _, p, _, _ in self._texts()]
        if args.base_dir is not None:  # files only: the admin installs them (README, deliverTo local)
            self.register_outputs({"release": self.release.id, "files": self.paths})
            return
        install = deliver.run(f"{name}-install", layout.install_script(self.release),
                              delete=layout.uninstall_script(), triggers=[self.release.id],
                              depends_on=[requirements, copy])
        self.service = deliver.run(
            f"{name}-service", layout.service_script(args.verify, args.drill), delete=layout.stop_script(),
            triggers=[self.release.id, *(text for _, _, text, _ in self._texts()),
                      *(pulumi.Output.secret(value) for _, _, value in secrets if value is not None)],
            depends_on=[install, *files, *tokens])
        self.register_outputs({"release": self.release.id, "files": self.paths})

    def _texts(self) -> list[tuple[str, str, str, str]]:
        """(resource suffix, path on the host, text, mode) of every file that is not a secret."""
        a = self.args
        config = layout.exporter_config(a.connection, a.listen, poll_seconds=a.poll_seconds,
                                        verify=a.verify is not None, drill=a.drill is not None)
        unit_dir = layout.UNIT_DIR
        texts = [("config", f"{layout.CONFIG_DIR}/exporter.yml", config, "0644"),
                 ("unit", f"{unit_dir}/{layout.EXPORTER_SERVICE}", layout.EXPORTER_UNIT, "0644")]
        if a.verify is not None:
            texts += [
                ("verify-script", f"{layout.CONFIG_DIR}/vzkeep-verify.sh",
                 layout.verify_command(a.verify, a.connection), "0755"),
                ("verify-service", f"{unit_dir}/vzkeep-verify.service",
                 layout.oneshot_unit("vzkeep-verify", "archive verification", timeout="6h", credential="pve-token"),
                 "0644"),
                ("verify-timer", f"{unit_dir}/vzkeep-verify.timer",
                 layout.timer_unit("archive verification", a.verify.schedule), "0644"),
            ]
        if a.drill is not None:
            texts += [
                ("drill-script", f"{layout.CONFIG_DIR}/vzkeep-drill.sh",
                 layout.drill_command(a.drill, a.connection), "0755"),
                ("drill-service", f"{unit_dir}/vzkeep-drill.service",
                 layout.oneshot_unit("vzkeep-drill", "restore drill", timeout="2h", credential="drill-token"), "0644"),
                ("drill-timer", f"{unit_dir}/vzkeep-drill.timer",
                 layout.timer_unit("restore drill", a.drill.schedule), "0644"),
            ]
        return texts

    def _path(self, host_path: str) -> str:
        """The path on the host, or under the local directory (same layout) when delivering locally."""
        if self.args.base_dir is None:
            return host_path
        return f"{self.args.base_dir.rstrip('/')}{host_path}"


def _line(token: str | None) -> str:
    # A token Pulumi cannot read back (an imported one) arrives empty: the delivery refuses an empty file.
    return f"{token}\n" if token else ""
