"""``PUT /nodes/{node}/{qemu|lxc}/{vmid}/config``: what ``qm set`` / ``pct set`` call (synchronous,
returns null). The schema checks every key and format; this module keeps what the handlers add.

Matched to qemu-server ``src/PVE/API2/Qemu.pm`` (``update_vm`` → ``$update_vm_api``) and
pve-container ``src/PVE/API2/LXC/Config.pm`` (``update_vm``):
- nothing to set or delete dies ``no options specified``; ``skiplock`` is root's (VMs);
- each key needs its privilege (``guest_permissions``);
- network devices are stored normalised (``print_property_string`` of the parsed value: a VM's
  ``virtio=<MAC>,bridge=…``, a CT's ``name=eth0,…,type=veth``), a missing MAC is generated;
- ``tags`` are split, lower-cased, de-duplicated and sorted, joined with ``;`` (pve-guest-common
  ``GuestHelpers::get_unique_tags``);
- ``delete`` of a key not set only warns; a key both set and deleted is a 400;
- ``digest`` mismatch: ``checksum mismatch (file change by other user?)`` for a VM,
  ``detected modified configuration - file changed by other user? Try again.`` for a CT; a locked
  guest refuses (``VM is locked (backup)``) unless ``skiplock``.
Other keys are kept as given in the guest's configuration.
"""

from __future__ import annotations

import re
from typing import Any

from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.common import guest_on_node, node_or_fail, now
from vzkeep.sandbox.api.errors import die, param_error
from vzkeep.sandbox.api.formats import HashFormat, split_list
from vzkeep.sandbox.api.guest_permissions import check_lxc_keys, check_qemu_keys
from vzkeep.sandbox.api.guests import config_digest, guest_config
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.api.validation import print_property_string
from vzkeep.sandbox.guestconfig import mac_address, unnamed
from vzkeep.sandbox.model import Guest

NET_RE = re.compile(r"net(\d+)$")
LOCK_FILE = {"qemu": "/var/lock/qemu-server/lock-{vmid}.conf", "lxc": "/run/lock/lxc/pve-config-{vmid}.lock"}
NOT_CONFIG = ("node", "vmid", "delete", "digest", "skiplock", "revert")


def normalise_net(req: Request, guest: Guest, key: str, value: str, at: float) -> str:
    """``print_net(parse_net(v))`` / ``print_lxc_network(parse_lxc_network(v))``: a missing MAC is made."""
    fmt = req.api.properties[key]["format"] if req.api is not None else {}
    net = req.version.checker.parse_property_string(HashFormat(fmt), value, key)
    mac_key = "macaddr" if guest.type == "qemu" else "hwaddr"
    net.setdefault(mac_key, mac_address(guest.vmid, f"{key}-{at}"))
    if guest.type == "lxc":
        net["type"] = "veth"
    return print_property_string(net, fmt)


def normalise_tags(text: str) -> list[str]:
    """``get_unique_tags``: split_list, lower-cased, unique, sorted case-insensitively."""
    return sorted({t.lower() for t in re.split(r"[,;\s]+", text) if t})


def _split_delete(req: Request, settings: dict[str, Any]) -> list[str]:
    deleted = split_list(req.params.get("delete"))
    for key in deleted:
        if key in settings:
            raise param_error({"delete": f"you can't use '-{key}' and -delete {key}' at the same time"})
        if key not in (req.api.properties if req.api is not None else {}) or key in NOT_CONFIG:
            raise param_error({"delete": f"unknown option '{key}'"})
    return deleted


def _take_lock_fault(req: Request, guest_type: str) -> None:
    if req.app.sandbox.faults.take("config-update") is not None:
        # lock_config (10 s) while another operation holds the config lock (pve-common Tools.pm lock_file)
        raise die(f"can't lock file '{LOCK_FILE[guest_type].format(vmid=req.params['vmid'])}' - got timeout")


def _update(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> None:
        node = req.params["node"]
        node_or_fail(req, node)
        settings = {k: v for k, v in req.params.items() if k not in NOT_CONFIG}
        if req.params.get("skiplock") and req.authid != "root@pam":
            raise param_error({"skiplock": "Only root may use this option."})
        if not settings and not req.params.get("delete"):
            raise die("no options specified\n")
        deleted = _split_delete(req, settings)
        existing = guest_on_node(req, node, guest_type, req.params["vmid"]) if guest_type == "qemu" else None
        check = check_qemu_keys if guest_type == "qemu" else check_lxc_keys
        check(req, int(req.params["vmid"]), existing.pool if existing else None, [*deleted, *settings])
        with req.app.cluster.lock:
            if guest_type == "lxc":
                _take_lock_fault(req, guest_type)  # pct: the lock is taken before the config is read
            guest = guest_on_node(req, node, guest_type, req.params["vmid"])
            _check_digest_and_lock(req, guest)
            if guest_type == "qemu":
                _take_lock_fault(req, guest_type)
            with configuration.guest(req.app.sandbox, guest.vmid) as draft:
                apply_update(req, draft, settings, deleted, now(req))
        return None

    return handler


def _check_digest_and_lock(req: Request, guest: Guest) -> None:
    digest = req.params.get("digest")
    current = config_digest(guest_config(guest))
    if guest.type == "qemu":
        if digest and digest != current:
            raise die("checksum mismatch (file change by other user?)\n")
        if guest.lock and not req.params.get("skiplock"):
            raise die(f"VM is locked ({guest.lock})\n")
    else:
        if guest.lock:
            raise die(f"CT is locked ({guest.lock})\n")
        if digest and digest != current:
            raise die("detected modified configuration - file changed by other user? Try again.\n")


def apply_update(req: Request, guest: Guest, settings: dict[str, Any], deleted: list[str], at: float) -> None:
    """Write the change into the guest (its whole config from now on, so deletions stick)."""
    name_key = "name" if guest.type == "qemu" else "hostname"
    if not guest.full_config:
        skip = {"digest", "lock", "tags", name_key}
        guest.config = {k: str(v) for k, v in guest_config(guest).items() if k not in skip}
        guest.full_config = True
    for key in deleted:  # a key that is not set: PVE only warns ("cannot delete … not set")
        if key == "tags":
            guest.tags = []
        elif key == name_key:
            guest.name = unnamed(guest)
        else:
            guest.config.pop(key, None)
    for key, value in settings.items():
        if key == "tags":
            guest.tags = normalise_tags(str(value))
        elif key == name_key:
            guest.name = str(value)
        elif NET_RE.match(key):
            guest.config[key] = normalise_net(req, guest, key, str(value), at)
        else:
            guest.config[key] = str(value)


def register(handlers: Handlers) -> None:
    for kind in ("qemu", "lxc"):
        handlers.add("PUT", f"/nodes/{{node}}/{kind}/{{vmid}}/config")(_update(kind))
