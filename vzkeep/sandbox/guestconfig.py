"""A guest as its backup sees it: the config vzdump embeds, and where its disk's bytes come from.

The config is what ``qemu-server.conf`` / ``pct.conf`` would hold (qemu-server ``PVE/QemuServer.pm``,
pve-container ``PVE/LXC/Config.pm``), with PVE's defaults for keys a seed leaves out.
"""

from __future__ import annotations

import math
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

from vzkeep.sandbox.diskdata import CLUSTER_SIZE, GIB, GuestDisk, scaled_size
from vzkeep.sandbox.model import Guest
from vzkeep.sandbox.settings import Settings


def mac_address(vmid: int, salt: str = "") -> str:
    """A stable MAC in Proxmox's OUI BC:24:11, from the vmid (and a salt for ``unique`` restores)."""
    digest = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"{vmid}:{salt}").bytes
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def size_text(disk_bytes: int) -> str:
    """A disk's ``size=`` as PVE writes it: whole GiB as ``32G``, else MiB."""
    gib = disk_bytes / GIB
    return f"{int(gib)}G" if gib == int(gib) else f"{max(1, math.ceil(disk_bytes / 1024**2))}M"


def guest_config_text(guest: Guest) -> str:
    """``qemu-server.conf`` / ``pct.conf`` as vzdump embeds it, with the restore map hint for VMs."""
    extra = dict(guest.config)
    if guest.full_config:
        conf = {("name" if guest.type == "qemu" else "hostname"): guest.name}
    elif guest.type == "qemu":
        conf = {
            "boot": "order=scsi0", "cores": "2", "memory": "2048", "name": guest.name,
            "net0": f"virtio={mac_address(guest.vmid)},bridge=vmbr0", "ostype": "l26",
            "scsi0": f"local-lvm:vm-{guest.vmid}-disk-0,size={size_text(guest.disk_bytes)}",
            "scsihw": "virtio-scsi-single",
        }
    else:
        conf = {
            "arch": "amd64", "cores": "1", "hostname": guest.name, "memory": "512",
            "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac_address(guest.vmid)},ip=dhcp,type=veth",
            "ostype": "debian",
            "rootfs": f"local-lvm:vm-{guest.vmid}-disk-0,size={size_text(guest.disk_bytes)}",
            "swap": "512",
        }
    conf.update(extra)
    if guest.tags:
        conf["tags"] = ";".join(guest.tags)
    lines = [f"{k}: {conf[k]}" for k in sorted(conf)]
    if guest.type == "qemu":
        # qemu-server PVE/VZDump/QemuServer.pm archive_vma: one `#qmdump#map:` restore hint per disk
        lines.append("#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:")
    return "\n".join(lines) + "\n"


def guest_disk(guest: Guest, settings: Settings) -> GuestDisk:
    """The guest's generated disk (restored guests read their image instead, see ``disk_chunk_reader``)."""
    return GuestDisk(guest.vmid, guest.generation, scaled_size(guest.disk_bytes, settings.bytes_per_gib))


def disk_chunk_reader(guest: Guest, settings: Settings) -> tuple[int, Callable[[int], bytes]]:
    """(size, read_cluster) of the guest's disk: a restored image file, else generated content."""
    if guest.disk_image and Path(guest.disk_image).exists():
        path = guest.disk_image
        size = Path(path).stat().st_size

        def read_image(index: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(index * CLUSTER_SIZE)
                return f.read(CLUSTER_SIZE)

        return size, read_image
    disk = guest_disk(guest, settings)
    return disk.size, disk.read_cluster
