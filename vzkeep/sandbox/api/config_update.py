"""``PUT /nodes/{node}/{qemu|lxc}/{vmid}/config``: what ``qm set`` / ``pct set`` call (synchronous,
returns null), for the keys the sandbox keeps: ``netN``, ``tags``, ``name``/``hostname``,
``description``, ``onboot``, plus ``delete`` and ``digest`` (and ``skiplock`` for VMs).

Matched to qemu-server ``src/PVE/API2/Qemu.pm`` (``update_vm`` → ``$update_vm_api``, sync) and
pve-container ``src/PVE/API2/LXC/Config.pm`` (``update_vm``), read for this module:
- network devices are property strings checked at parameter verification (HTTP 400, ``invalid format -
  …``) and stored normalised by ``print_property_string``: a VM's ``virtio=<MAC>,bridge=…,link_down=1``
  (model and MAC first, other keys sorted), a CT's ``name=eth0,bridge=…,hwaddr=…,type=veth`` (the required
  ``name`` first). A missing MAC is generated (``parse_net`` / ``parse_lxc_network``);
- ``tags`` are split on ``,;`` and blanks, lower-cased, de-duplicated and sorted, joined with ``;``
  (pve-guest-common ``GuestHelpers::get_unique_tags``, default datacenter tag style);
- ``delete`` of a key that is not set only warns; a key both set and deleted, or an unknown key, is a 400;
- a running guest takes these keys at once: network links are hot-plugged (default ``hotplug`` includes
  ``network``), tags/name/description are "fast plug" options; a locked guest refuses (``VM is locked
  (backup)``), unless ``skiplock`` (VMs, root@pam only);
- ``digest`` mismatch: ``checksum mismatch (file change by other user?)`` for a VM,
  ``detected modified configuration - file changed by other user? Try again.`` for a CT.
Other config keys are not served by the sandbox (400 "not defined in schema"); ``POST …/config`` (async,
a ``qmconfig`` UPID) is not served either (501).
"""

from __future__ import annotations

import re
from typing import Any

from vzkeep.sandbox.api.common import guest_on_node, node_or_fail, now
from vzkeep.sandbox.api.errors import die, param_error, permission_denied
from vzkeep.sandbox.api.guests import config_digest, guest_config, unnamed
from vzkeep.sandbox.api.router import Request, Router
from vzkeep.sandbox.api.schema import NODE, VMID, Param, check_value
from vzkeep.sandbox.guestconfig import mac_address
from vzkeep.sandbox.model import Guest

MAX_NETS = 32  # qemu-server QemuServer.pm $MAX_NETS; pve-container $MAX_LXC_NETWORKS
NET_RE = re.compile(r"net(\d+)$")
CONFIGID_RE = re.compile(r"[a-z][a-z0-9_-]+$", re.IGNORECASE)  # pve-common $CONFIGID_RE
TAG_RE = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*$", re.IGNORECASE)  # pve-common $PVE_TAG_RE
DNS_NAME_RE = re.compile(r"(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$")

# Permission lists (``$vm_config_perm_list``): the caller needs any of them on /vms/{vmid}.
CONFIG_PRIVS = {
    "qemu": ("VM.Config.Disk", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
             "VM.Config.HWType", "VM.Config.Options", "VM.Config.Cloudinit"),
    "lxc": ("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options"),
}
LOCK_FILE = {"qemu": "/var/lock/qemu-server/lock-{vmid}.conf", "lxc": "/run/lock/lxc/pve-config-{vmid}.lock"}


# -- property strings (pve-common JSONSchema.pm parse_property_string / print_property_string) --------


def _mac(text: str) -> str | None:
    # pve_verify_mac_addr: unicast only (the I/G bit clear)
    if re.fullmatch(r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}", text, re.IGNORECASE):
        return None
    return "value does not look like a valid unicast MAC address"


def _bridge(text: str) -> str | None:
    return None if re.fullmatch(r"[-_.\w\d]+", text) else f"invalid bridge ID '{text}'"


NIC_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
              "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
BOOL = Param(type="boolean")
VLAN = Param(type="integer", minimum=1, maximum=4094)
QEMU_NET = {  # qemu-server src/PVE/QemuServer/Network.pm $net_fmt
    "model": Param(optional=False, enum=NIC_MODELS), "macaddr": Param(format=_mac),
    "bridge": Param(format=_bridge), "queues": Param(type="integer", minimum=0, maximum=64),
    "rate": Param(type="number", minimum=0), "tag": VLAN,
    "trunks": Param(pattern=r"\d+(?:-\d+)?(?:;\d+(?:-\d+)?)*"), "firewall": BOOL, "link_down": BOOL,
    "mtu": Param(type="integer", minimum=1, maximum=65520), "host-tunnel": BOOL,
}
LXC_NET = {  # pve-container src/PVE/LXC/Config.pm $netconf_desc
    "type": Param(enum=("veth",)), "name": Param(optional=False, pattern=r"[-_.\w\d]+"),
    "bridge": Param(pattern=r"[-_.\w\d]+"), "hwaddr": Param(format=_mac),
    "mtu": Param(type="integer", minimum=64, maximum=65535), "ip": Param(), "gw": Param(), "ip6": Param(),
    "gw6": Param(), "firewall": BOOL, "tag": VLAN, "trunks": Param(pattern=r"\d+(?:;\d+)*"),
    "rate": Param(type="number"), "link_down": BOOL, "host-managed": BOOL,
}


class FormatError(ValueError):
    """The text after ``invalid format - `` in PVE's 400."""


def parse_property_string(fmt: dict[str, Param], data: str, path: str) -> dict[str, str]:
    """Split ``data`` like PVE (NIC model names are key aliases: ``virtio=<MAC>``), then check each key."""
    res: dict[str, str] = {}
    for part in data.split(","):
        if not part.strip():
            continue
        match = re.fullmatch(r"([^=]+)=(.+)", part, re.DOTALL)
        if match:
            key, value = match.groups()
            if key in res:
                raise FormatError(f"duplicate key in comma-separated list property: {key}")
            if fmt is QEMU_NET and key in NIC_MODELS:
                if "model" in res:
                    raise FormatError("key alias 'model' is already defined")
                res["model"], key = key, "macaddr"
                if key in res:
                    raise FormatError(f"key '{key}' is already defined (via alias)")
            if key not in fmt:
                raise FormatError(f"invalid key in comma-separated list property: {key}")
            res[key] = value
        elif "=" not in part:
            if fmt is not QEMU_NET:
                raise FormatError("value without key, but schema does not define a default key")
            if "model" in res:
                raise FormatError("duplicate key in comma-separated list property: model")
            res["model"] = part
        else:
            raise FormatError("missing key in comma-separated list property")
    _check_object(fmt, res, path)
    return res


def _check_object(fmt: dict[str, Param], res: dict[str, str], path: str) -> None:
    errors = {}
    for key, value in res.items():
        converted, problem = check_value(value, fmt[key])
        if problem:
            errors[f"{path}.{key}"] = problem
        elif fmt[key].type == "boolean":
            res[key] = str(converted)  # parse_boolean: stored as 1/0
    errors.update({f"{path}.{k}": "property is missing and it is not optional"
                   for k, spec in fmt.items() if not spec.optional and k not in res})
    if errors:
        raise FormatError("format error\n" + "\n".join(f"{k}: {v}" for k, v in sorted(errors.items())))


def print_property_string(fmt: dict[str, Param], data: dict[str, str]) -> str:
    """Default key first (a VM's ``model=<MAC>``), then required keys, then the rest, sorted."""
    parts = []
    done = set()
    if fmt is QEMU_NET:
        parts.append(f"{data['model']}={data['macaddr']}")
        done |= {"model", "macaddr"}
    for key in sorted(data, key=lambda k: (fmt[k].optional, k)):
        if key not in done:
            parts.append(f"{key}={data[key]}")
    return ",".join(parts)


def normalise_net(guest: Guest, key: str, value: str, at: float) -> str:
    """``print_net(parse_net(v))`` / ``print_lxc_network(parse_lxc_network(v))``: a missing MAC is made."""
    fmt = QEMU_NET if guest.type == "qemu" else LXC_NET
    net = parse_property_string(fmt, value, key)
    mac_key = "macaddr" if guest.type == "qemu" else "hwaddr"
    net.setdefault(mac_key, mac_address(guest.vmid, f"{key}-{at}"))
    if guest.type == "lxc":
        net["type"] = "veth"
    return print_property_string(fmt, net)


def normalise_tags(text: str) -> list[str]:
    """``get_unique_tags``: split_list, lower-cased, unique, sorted case-insensitively."""
    return sorted({t.lower() for t in re.split(r"[,;\s]+", text) if t})


# -- parameter checks (run by the router before the handler: HTTP 400) ------------------------------------


def _format_of(check):  # type: ignore[no-untyped-def]
    def run(text: str) -> str | None:
        try:
            check(text)
        except FormatError as exc:
            return str(exc)
        return None

    return run


def _check_net(guest_type: str, key: str):  # type: ignore[no-untyped-def]
    fmt = QEMU_NET if guest_type == "qemu" else LXC_NET
    return _format_of(lambda text: parse_property_string(fmt, text, key))


def _check_tags(text: str) -> None:
    for tag in re.split(r"[,;\s]+", text.strip()):
        if tag and not TAG_RE.match(tag):
            raise FormatError("invalid characters in tag")


def _check_configids(text: str) -> None:
    for key in re.split(r"[,;\s]+", text.strip()):
        if key and not CONFIGID_RE.match(key):
            raise FormatError(f"invalid configuration ID '{key}'")


def _check_dns_name(text: str) -> None:
    if not DNS_NAME_RE.match(text):
        raise FormatError("value does not look like a valid DNS name")


def schema(guest_type: str) -> dict[str, Param]:
    name_key = "name" if guest_type == "qemu" else "hostname"
    params = {
        "node": NODE, "vmid": VMID, "delete": Param(format=_format_of(_check_configids)),
        "digest": Param(max_length=40), "tags": Param(format=_format_of(_check_tags)),
        "description": Param(max_length=8192), "onboot": BOOL, name_key: Param(format=_format_of(_check_dns_name)),
        **{f"net{i}": Param(format=_check_net(guest_type, f"net{i}")) for i in range(MAX_NETS)},
    }
    if guest_type == "qemu":
        params["skiplock"] = BOOL
    return params


# -- the update --------------------------------------------------------------------------------------


def _privilege(key: str) -> str:
    return "VM.Config.Network" if NET_RE.match(key) else "VM.Config.Options"


def _check_key_permissions(req: Request, keys: list[str]) -> None:
    """``check_vm_modify_config_perm``: network devices need VM.Config.Network, the rest VM.Config.Options."""
    for key in keys:
        if not req.principal.can(_privilege(key)):
            raise permission_denied(f"/vms/{req.params['vmid']}", _privilege(key))


NOT_CONFIG = ("node", "vmid", "delete", "digest", "skiplock")


def _split_delete(req: Request, guest_type: str, settings: dict[str, Any]) -> list[str]:
    deleted = [k for k in re.split(r"[,;\s]+", str(req.params.get("delete", "")).strip()) if k]
    for key in deleted:
        if key in settings:
            raise param_error({"delete": f"you can't use '-{key}' and -delete {key}' at the same time"})
        if key not in schema(guest_type) or key in NOT_CONFIG:
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
        if req.params.get("skiplock") and req.principal.userid != "root@pam":
            raise param_error({"skiplock": "Only root may use this option."})
        if not settings and not req.params.get("delete"):
            raise die("no options specified")
        deleted = _split_delete(req, guest_type, settings)
        _check_key_permissions(req, [*deleted, *settings])
        cluster = req.app.cluster
        with cluster.lock:
            if guest_type == "lxc":
                _take_lock_fault(req, guest_type)  # pct: the lock is taken before the config is read
            guest = guest_on_node(req, node, guest_type, req.params["vmid"])
            _check_digest_and_lock(req, guest)
            if guest_type == "qemu":
                _take_lock_fault(req, guest_type)
            apply_update(guest, settings, deleted, now(req))
        return None

    return handler


def _check_digest_and_lock(req: Request, guest: Guest) -> None:
    digest = req.params.get("digest")
    current = config_digest(guest_config(guest))
    if guest.type == "qemu":
        if digest and digest != current:
            raise die("checksum mismatch (file change by other user?)")
        if guest.lock and not req.params.get("skiplock"):
            raise die(f"VM is locked ({guest.lock})")
    else:
        if guest.lock:
            raise die(f"CT is locked ({guest.lock})")
        if digest and digest != current:
            raise die("detected modified configuration - file changed by other user? Try again.")


def apply_update(guest: Guest, settings: dict[str, Any], deleted: list[str], at: float) -> None:
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
            guest.config[key] = normalise_net(guest, key, str(value), at)
        else:
            guest.config[key] = str(value)


def register(router: Router) -> None:
    for kind in ("qemu", "lxc"):
        # the method's check: any of $vm_config_perm_list on /vms/{vmid} (checked before the parameters)
        router.add("PUT", f"/nodes/{{node}}/{kind}/{{vmid}}/config", schema(kind),
                   perm=("/vms/{vmid}", "|".join(CONFIG_PRIVS[kind])))(_update(kind))
