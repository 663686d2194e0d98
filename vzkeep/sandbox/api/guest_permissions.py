"""Which privilege each guest configuration key needs, beyond the method's own check.

qemu-server ``src/PVE/API2/Qemu.pm`` ``$check_vm_modify_config_perm`` (with its option groups) and
pve-container ``src/PVE/LXC.pm`` ``check_ct_modify_config_perm``; ``check_vm_perm`` (pve-access-control
``RPCEnvironment.pm``) accepts the privilege on the guest's pool instead of on ``/vms/<vmid>``.
Drives, serial/usb/PCI devices and mount points need value-dependent checks PVE makes elsewhere; the
sandbox checks the disk privilege for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from vzkeep.sandbox.api.errors import ApiError, die
from vzkeep.sandbox.api.formats import QEMU_DRIVES
from vzkeep.sandbox.api.router import Request

ROOT = "root@pam"
QEMU_GROUPS = {
    "VM.Config.CPU": {"cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus"},
    "VM.Config.Memory": {"memory", "balloon", "shares", "allow-ksm"},
    "VM.Config.HWType": {"acpi", "hotplug", "kvm", "machine", "runningmachine", "scsihw", "smbios1", "tablet", "vga",
                         "watchdog", "audio0", "rng0"},
    "VM.Config.Options": {"agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime",
                          "migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate", "startup",
                          "tdf", "template"},
    "VM.PowerMgmt": {"freeze"},
    "VM.Config.Disk": {"boot", "bootdisk", "vmstatestorage"},
}
CLOUDINIT = {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys"}


def check_vm_perm(req: Request, vmid: int, pool: str | None, privs: list[str], any_: bool = False) -> None:
    env = req.rpcenv
    if pool and env.check_full(req.authid, f"/pool/{pool}", privs, any_, noerr=True):
        return
    env.check_full(req.authid, f"/vms/{vmid}", privs, any_)


def check_qemu_keys(req: Request, vmid: int, pool: str | None, keys: Iterable[str]) -> None:
    """``$check_vm_modify_config_perm``."""
    if req.authid == ROOT:
        return
    for key in keys:
        if key in QEMU_DRIVES or key == "cdrom" or key == "tags" or re.match(
                r"^(?:unused|serial|usb|hostpci|virtiofs)\d+$", key):
            continue  # checked value-dependently elsewhere (drives, devices) or by tag rules
        group = next((priv for priv, keys_ in QEMU_GROUPS.items() if key in keys_), None)
        if group or re.match(r"^numa\d+$", key):
            check_vm_perm(req, vmid, pool, [group or "VM.Config.CPU"])
            if key == "startup":
                req.require("/", "Sys.Modify")
        elif re.match(r"^net\d+$", key) or key == "running-nets-host-mtu":
            check_vm_perm(req, vmid, pool, ["VM.Config.Network"])
        elif key in CLOUDINIT or re.match(r"^ipconfig\d+$", key):
            check_vm_perm(req, vmid, pool, ["VM.Config.Cloudinit", "VM.Config.Network"], any_=True)
        elif key == "vmstate":
            check_vm_perm(req, vmid, pool, ["VM.Config.Disk", "VM.PowerMgmt"])
        else:
            raise die(f"only root can set '{key}' config\n")


def check_lxc_keys(req: Request, vmid: int, pool: str | None, keys: Iterable[str]) -> None:
    """``check_ct_modify_config_perm`` (mount points: the disk privilege; tags: the options privilege)."""
    if req.authid == ROOT:
        return
    for key in keys:
        if key in ("cores", "cpuunits", "cpulimit"):
            check_vm_perm(req, vmid, pool, ["VM.Config.CPU"])
        elif key == "rootfs" or re.match(r"^mp\d+$", key):
            check_vm_perm(req, vmid, pool, ["VM.Config.Disk"])
        elif key in ("memory", "swap"):
            check_vm_perm(req, vmid, pool, ["VM.Config.Memory"])
        elif re.match(r"^net\d+$", key) or key in ("nameserver", "searchdomain", "hostname"):
            check_vm_perm(req, vmid, pool, ["VM.Config.Network"])
        elif re.match(r"^dev\d+$", key):
            raise perm_text("configuring device passthrough is only allowed for root@pam")
        elif key == "hookscript":
            raise perm_text("changing the hookscript is only allowed for root@pam")
        else:
            check_vm_perm(req, vmid, pool, ["VM.Config.Options"])


def perm_text(what: str) -> ApiError:
    return ApiError(403, f"Permission check failed ({what})")
