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


def unnamed(guest: Guest) -> str:
    """The name PVE shows for a guest whose config has none (``vmstatus``: ``VM 100`` / ``CT100``)."""
    return f"VM {guest.vmid}" if guest.type == "qemu" else f"CT{guest.vmid}"


def _default_config(guest: Guest) -> dict[str, str]:
    # The disks are local-lvm (LVM-thin) volumes, named vm-<vmid>-disk-N for VMs and CTs alike (pve-storage
    # src/PVE/Storage/Plugin.pm find_free_diskname: "subvol-" only for the subvol format, which LVM-thin
    # lacks). The MACs are mac_address's, so a restored guest's config matches what GET showed.
    disk = f"local-lvm:vm-{guest.vmid}-disk-0"
    if guest.type == "qemu":
        return {
            "name": guest.name, "memory": "2048", "cores": "2", "sockets": "1", "ostype": "l26",
            "scsihw": "virtio-scsi-single", "boot": "order=scsi0",
            "scsi0": f"{disk},iothread=1,size={size_text(guest.disk_bytes)}",
            "net0": f"virtio={mac_address(guest.vmid)},bridge=vmbr0",
        }
    return {
        "hostname": guest.name, "memory": "512", "cores": "1", "swap": "512", "arch": "amd64",
        "ostype": "debian", "unprivileged": "1", "rootfs": f"{disk},size={size_text(guest.disk_bytes)}",
        "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac_address(guest.vmid)},ip=dhcp,type=veth",
    }


def guest_config_values(guest: Guest) -> dict[str, str]:
    """The guest's ``<vmid>.conf`` as key → value: PVE's defaults for the keys a seed leaves out with
    ``Guest.config`` over them (or ``Guest.config`` alone once ``Guest.full_config`` is set, without a name
    PVE would not have), its tags and its lock. ``GET …/config`` shows exactly this (plus ``digest``);
    vzdump embeds it without ``lock`` (``guest_config_text``)."""
    if guest.full_config:
        name_key = "name" if guest.type == "qemu" else "hostname"
        conf = {name_key: guest.name} if guest.name != unnamed(guest) else {}
    else:
        conf = _default_config(guest)
    conf.update({str(k): str(v) for k, v in guest.config.items()})
    if guest.type == "lxc" and conf.get("unprivileged") == "0":
        # pve-container src/PVE/API2/LXC.pm create_vm writes the key only for an unprivileged CT
        del conf["unprivileged"]
    if guest.tags:
        conf["tags"] = ";".join(guest.tags)
    if guest.lock:
        conf["lock"] = guest.lock
    return conf


def guest_config_text(guest: Guest) -> str:
    """``qemu-server.conf`` / ``etc/vzdump/pct.conf`` as vzdump embeds it: the config without its lock
    (pve-container src/PVE/VZDump/LXC.pm assemble; qemu-server src/PVE/VZDump/QemuServer.pm skips
    ``lock:``), keys sorted as PVE writes them, and for VMs the restore map hint."""
    conf = guest_config_values(guest)
    conf.pop("lock", None)
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
