"""The named ``format``s PVE registers for its API schema, with PVE's own error texts.

The published schema names formats (``"format": "pve-vmid"``) but does not carry their code. Each entry
here is the check PVE registers with ``PVE::JSONSchema::register_format``, cited by file; a check raises
``FormatError`` whose text is PVE's ``die`` message (with its trailing newline, which PVE keeps in the
400 reply: ``"invalid format - value does not look like a valid VM ID\\n"``).

Two kinds, as in pve-common ``PVE/JSONSchema.pm``:
- code formats: a function of the value (``-list`` and ``-opt`` variants are derived by
  ``validation.check_format``, as ``check_format`` does);
- hash formats: a property string (``keep-daily=7,keep-last=3``) described by a schema of its keys,
  optionally followed by a validator. Where the schema inlines such a format elsewhere, or PVE's source
  defines it, the keys are transcribed here; the qemu-server ones are derived from the ``typetext``
  the published schema carries (``schema_get_type_text``), see ``typetext_format``.

Regular expressions keep Perl's ``$`` (end of string or before a final newline), as PVE matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from vzkeep.pve import calendar


class FormatError(Exception):
    """A value a format refuses; ``text`` is PVE's message (the ``$@`` after ``invalid format - ``)."""

    def __init__(self, text: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.errors = dict(errors or {})

    def stringify(self) -> str:
        """``PVE::Exception::stringify``: the message, then one ``key: msg`` line per error."""
        return self.text + "".join(f"{k}: {v}\n" for k, v in sorted(self.errors.items()))


CodeFormat = Callable[[str], Any]


@dataclass(frozen=True)
class HashFormat:
    """A property-string format: the schema of its keys, and PVE's validator run after parsing."""

    properties: Mapping[str, Mapping[str, Any]]
    validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    source: str = ""


@dataclass
class Registry:
    """name -> code or hash format (pve-common ``register_format``/``get_format``)."""

    formats: dict[str, CodeFormat | HashFormat] = field(default_factory=dict)

    def register(self, name: str, fmt: CodeFormat | HashFormat) -> None:
        if name in self.formats:
            raise ValueError(f"JSON schema format '{name}' already registered")
        self.formats[name] = fmt

    def get(self, name: str) -> CodeFormat | HashFormat | None:
        return self.formats.get(name)


FORMATS = Registry()


def code_format(name: str) -> Callable[[CodeFormat], CodeFormat]:
    def decorate(fn: CodeFormat) -> CodeFormat:
        FORMATS.register(name, fn)
        return fn

    return decorate


def perl_split(separator: str, text: str) -> list[str]:
    """Perl's ``split(/sep/, $text)``: like ``str.split`` but trailing empty fields are dropped."""
    fields = re.split(separator, text)
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def perl_true(value: Any) -> bool:
    """Perl truthiness of a scalar: undef, "" and "0" are false."""
    return value is not None and value != "" and str(value) != "0"


def passes(fmt: CodeFormat, value: str) -> bool:
    """Whether a code format accepts ``value`` (the ``$noerr`` form of PVE's verify functions)."""
    try:
        fmt(value)
    except FormatError:
        return False
    return True


def perl_match(pattern: str, value: str, flags: int = 0) -> re.Match[str] | None:
    """``$value =~ m/^…$/``: Python's ``$`` matches like Perl's (end, or before a final newline)."""
    return re.search(pattern, value, flags)


# -- pve-common src/PVE/Tools.pm -------------------------------------------------------------------------

IPV4OCTET = r"(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])"
IPV4RE = rf"(?:(?:{IPV4OCTET}\.){{3}}{IPV4OCTET})"
_H16 = r"(?:[0-9a-fA-F]{1,4})"
_LS32 = rf"(?:(?:{IPV4RE}|{_H16}:{_H16}))"
IPV6RE = (
    "(?:"
    rf"(?:(?:(?:{_H16}:){{6}}){_LS32})|"
    rf"(?:(?:::(?:{_H16}:){{5}}){_LS32})|"
    rf"(?:(?:(?:{_H16})?::(?:{_H16}:){{4}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,3}}{_H16})?::(?:{_H16}:){{1}}){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,4}}{_H16})?::){_LS32})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,5}}{_H16})?::){_H16})|"
    rf"(?:(?:(?:(?:{_H16}:){{0,6}}{_H16})?::))"
    ")"
)
EMAIL_USER_RE = r"[\w\+\-\~]+(\.[\w\+\-\~]+)*"
EMAIL_RE = rf"{EMAIL_USER_RE}@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*"


def split_list(text: str | None) -> list[str]:
    """pve-common ``PVE::Tools::split_list``: NUL-separated, else on commas, semicolons and blanks."""
    text = text or ""
    if "\0" in text:
        return text.split("\0")
    return [part for part in re.split(r"\s+", re.sub(r"[,;]", " ", text).lstrip()) if part != ""]


def parse_host_and_port(address: str) -> bool:
    """pve-common ``PVE::Tools::parse_host_and_port`` (truth value only)."""
    return bool(
        perl_match(rf"^({IPV4RE}|[A-Za-z0-9\-.]+)(?::(\d+))?$", address)
        or perl_match(rf"^\[({IPV6RE}|{IPV4RE}|[A-Za-z0-9\-.]+)\](?::(\d+))?$", address)
        or perl_match(rf"^({IPV6RE})(?:\.(\d+))?$", address)
    )


# -- pve-common src/PVE/JSONSchema.pm ---------------------------------------------------------------------

CONFIGID_RE = r"[a-z][a-z0-9_-]+"
PVE_TAG_RE = r"[a-z0-9_][a-z0-9_\-\+\.]*"
DNS_NAME_RE = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"

FORMATS.register("string", lambda value: value)  # "allow format => 'string-list'"


@code_format("urlencoded")
def verify_urlencoded(value: str) -> str:
    if not perl_match(r"^[-%a-zA-Z0-9_.!~*'()]*$", value):
        raise FormatError(f"invalid urlencoded string: {value}\n")
    return value


@code_format("pve-configid")
def verify_configid(value: str) -> str:
    if not perl_match(rf"^{CONFIGID_RE}$", value, re.IGNORECASE):
        raise FormatError(f"invalid configuration ID '{value}'\n")
    return value


def parse_id(value: str, kind: str) -> str:
    """``parse_id``: shared by storage and ACME plugin IDs."""
    if len(value) < 2:
        raise FormatError(f"{kind} ID '{value}' cannot be shorter than 2 characters\n")
    if not perl_match(r"^[a-z][a-z0-9\-\_\.]*[a-z0-9]$", value, re.IGNORECASE):
        raise FormatError(f"{kind} ID '{value}' contains illegal characters\n")
    return value


@code_format("pve-storage-id")
def parse_storage_id(value: str) -> str:
    return parse_id(value, "storage")


@code_format("pve-bridge-id")
def parse_bridge_id(value: str) -> str:
    if not perl_match(r"^[-_.\w\d]+$", value):
        raise FormatError(f"invalid bridge ID '{value}'\n")
    return value


@code_format("pve-vmid")
def verify_vmid(value: str) -> str:
    if not perl_match(r"^[1-9][0-9]{2,8}$", str(value)):
        raise FormatError("value does not look like a valid VM ID\n")
    return value


@code_format("pve-node")
def verify_node_name(value: str) -> str:
    if not perl_match(r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$", value):
        raise FormatError("value does not look like a valid node name\n")
    return value


def _parse_idmap(text: str, id_format: CodeFormat) -> None:
    """``parse_idmap``: ``1``, ``source:target`` pairs and one default target."""
    entries: dict[str, str] = {}
    default = identity = False
    for entry in split_list(text):
        if entry == "1":
            identity = True
        elif match := perl_match(r"^([^:]+):([^:]+)$", entry):
            try:
                id_format(match.group(1))
                id_format(match.group(2))
            except FormatError as exc:
                raise FormatError(f"entry '{entry}' contains invalid ID - {exc.text}\n") from None
            if match.group(1) in entries:
                raise FormatError(f"duplicate mapping for source '{match.group(1)}'\n")
            entries[match.group(1)] = match.group(2)
        else:
            try:
                id_format(entry)
            except FormatError as exc:
                raise FormatError(f"entry '{entry}' contains invalid ID - {exc.text}\n") from None
            if default:
                raise FormatError("default target ID can only be provided once\n")
            default = True
    if identity and (default or entries):
        raise FormatError("identity mapping cannot be combined with other mappings\n")


def _verify_idpair(id_format: CodeFormat) -> CodeFormat:
    def check(value: str) -> str:
        try:
            _parse_idmap(value, id_format)
        except FormatError as exc:
            raise FormatError(exc.text + "\n") from None  # $verify_idpair: die "$@\n"
        return value

    return check


FORMATS.register("storage-pair", _verify_idpair(parse_storage_id))
FORMATS.register("bridge-pair", _verify_idpair(parse_bridge_id))


@code_format("mac-addr")
def verify_mac_addr(value: str) -> str:
    if not perl_match(r"^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$", value, re.IGNORECASE):
        raise FormatError("value does not look like a valid unicast MAC address\n")
    return value


@code_format("ipv4")
def verify_ipv4(value: str) -> str:
    if not perl_match(rf"^(?:{IPV4RE})$", value):
        raise FormatError("value does not look like a valid IPv4 address\n")
    return value


@code_format("ipv6")
def verify_ipv6(value: str) -> str:
    if not perl_match(rf"^(?:{IPV6RE})$", value):
        raise FormatError("value does not look like a valid IPv6 address\n")
    return value


@code_format("ip")
def verify_ip(value: str) -> str:
    if not perl_match(rf"^(?:(?:{IPV4RE})|(?:{IPV6RE}))$", value):
        raise FormatError("value does not look like a valid IP address\n")
    return value


@code_format("ldap-simple-attr")
def verify_ldap_simple_attr(value: str) -> str:
    if perl_match(r"^[a-zA-Z0-9]+$", value):
        return value
    raise FormatError(f"value '{value}' does not look like a simple ldap attribute name\n")


IPV4_MASKS = frozenset(
    ".".join(str((((1 << 32) - (1 << (32 - bits))) >> shift) & 255) for shift in (24, 16, 8, 0))
    for bits in range(33)
)


@code_format("ipv4mask")
def verify_ipv4mask(value: str) -> str:
    if value not in IPV4_MASKS:
        raise FormatError("value does not look like a valid IP netmask\n")
    return value


def _cidr(value: str, ip_re: str, low: int, high: int) -> bool:
    match = perl_match(rf"^(?:{ip_re})(?:/(\d+))$", value)
    return bool(match) and low < int(match.group(match.lastindex or 1)) <= high


@code_format("CIDRv6")
def verify_cidrv6(value: str) -> str:
    if _cidr(value, IPV6RE, 7, 128):
        return value
    raise FormatError("value does not look like a valid IPv6 CIDR network\n")


@code_format("CIDRv4")
def verify_cidrv4(value: str) -> str:
    if _cidr(value, IPV4RE, 7, 32):
        return value
    raise FormatError("value does not look like a valid IPv4 CIDR network\n")


@code_format("CIDR")
def verify_cidr(value: str) -> str:
    if not (_cidr(value, IPV4RE, 7, 32) or _cidr(value, IPV6RE, 7, 128)):
        raise FormatError("value does not look like a valid CIDR network\n")
    return value


@code_format("pve-ipv4-config")
def verify_ipv4_config(value: str) -> str:
    if perl_match(r"^(?:dhcp|manual)$", value) or _cidr(value, IPV4RE, 7, 32):
        return value
    raise FormatError("value does not look like a valid ipv4 network configuration\n")


@code_format("pve-ipv6-config")
def verify_ipv6_config(value: str) -> str:
    if perl_match(r"^(?:auto|dhcp|manual)$", value) or _cidr(value, IPV6RE, 7, 128):
        return value
    raise FormatError("value does not look like a valid ipv6 network configuration\n")


@code_format("email")
def verify_email(value: str) -> str:
    if not perl_match(rf"^{EMAIL_RE}$", value):
        raise FormatError("value does not look like a valid email address\n")
    return value


@code_format("email-or-username")
def verify_email_or_username(value: str) -> str:
    if not perl_match(rf"^{EMAIL_RE}$", value) and not perl_match(rf"^{EMAIL_USER_RE}$", value):
        raise FormatError("value does not look like a valid email address or user name\n")
    return value


@code_format("dns-name")
def verify_dns_name(value: str) -> str:
    if not perl_match(rf"^({DNS_NAME_RE}\.)*{DNS_NAME_RE}$", value):
        raise FormatError("value does not look like a valid DNS name\n")
    return value


@cache
def _zone_tab() -> frozenset[str]:
    """The zones of ``zone.tab`` (PVE reads /usr/share/zoneinfo/zone.tab; tzdata ships the same file)."""
    candidates = [Path("/usr/share/zoneinfo/zone.tab")]
    try:
        import tzdata

        candidates.append(Path(tzdata.__file__).parent / "zoneinfo" / "zone.tab")
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return frozenset(line.split("\t")[2] for line in lines
                             if line.strip() and not line.lstrip().startswith("#") and line.count("\t") >= 2)
    return frozenset()


# Not vzkeep.pve.values.load_zone on purpose: PVE's API accepts exactly "UTC" and the names listed in
# zone.tab (pve-common src/PVE/JSONSchema.pm pve_verify_timezone), not every name the tz database knows
# (Etc/GMT+1, CET and the links are refused), and answers with its own text.
@code_format("timezone")
def verify_timezone(value: str) -> str:
    if value == "UTC" or value in _zone_tab():
        return value
    raise FormatError(f"invalid time zone '{value}'\n")


@code_format("pve-iface")
def verify_iface(value: str) -> str:
    if not perl_match(r"^[a-z][a-z0-9_]{1,20}([:\.]\d+)?$", value, re.IGNORECASE):
        raise FormatError(f"invalid network interface name '{value}'\n")
    return value


@code_format("pve-vlan-id-or-range")
def verify_vlan_id_or_range(value: str) -> str:
    match = perl_match(r"^(\d+)(?:-(\d+))?$", value)
    if not match:
        raise FormatError(f"invalid VLAN configuration '{value}'\n")
    for tag in filter(None, match.groups()):
        if int(tag) < 2 or int(tag) > 4094:
            raise FormatError(f"invalid VLAN tag '{tag}'\n")
    if match.group(2) and int(match.group(1)) >= int(match.group(2)):
        raise FormatError(f"VLAN range must go from lower to higher tag '{value}'\n")
    return value


@code_format("address")
def verify_address(value: str) -> str:
    try:
        verify_ip(value)
    except FormatError:
        try:
            verify_dns_name(value)
        except FormatError:
            raise FormatError(f"value does not look like a valid address: {value}\n") from None
    return value


def parse_size(value: str) -> int | None:
    """``PVE::JSONSchema::parse_size``: ``10``, ``1.5G``, ``512MiB`` → bytes; None when not a size."""
    match = perl_match(r"^(\d+(\.\d+)?)([KMGT](?:iB)?)?$", value)
    if not match:
        return None
    exponent = {"K": 1, "M": 2, "G": 3, "T": 4}.get((match.group(3) or " ")[0], 0)
    return int(float(match.group(1)) * 1024**exponent)


@code_format("disk-size")
def verify_disk_size(value: str) -> str:
    if parse_size(value) is None:
        raise FormatError(f"value does not look like a valid disk size: {value}\n")
    return value


@code_format("pve-startup-order")
def verify_startup_order(value: str) -> str:
    parts = [p for p in perl_split(",", str(value)) if not perl_match(r"^\s*$", p)]
    ok = perl_true(value) and all(perl_match(r"^(order=)?(\d+)$", p) or perl_match(r"^(up|down)=(\d+)$", p)
                             for p in parts)
    if not ok:
        raise FormatError("unable to parse startup options\n")
    return value


@code_format("pve-tag")
def verify_tag(value: str) -> str:
    if not perl_match(rf"^{PVE_TAG_RE}$", value, re.IGNORECASE):
        raise FormatError("invalid characters in tag\n")
    return value


@code_format("pve-tfa-secret")
def verify_tfa_secret(value: str) -> str:
    if (perl_match(r"^v2-0x[0-9a-fA-F]{16,128}$", value) or perl_match(r"^v2-[A-Z2-7=]{16,128}$", value)
            or perl_match(r"^(?:[A-Z2-7=]{16}|[A-Fa-f0-9]{40})$", value)):
        return value
    raise FormatError("unable to decode TFA secret\n")


@code_format("pve-task-status-type")
def verify_task_status_type(value: str) -> str:
    if perl_match(r"^(ok|error|warning|unknown)$", value, re.IGNORECASE):
        return value
    raise FormatError(f"invalid status '{value}'\n")


_BWLIMIT_OPT = {"optional": 1, "type": "number", "minimum": "0"}
FORMATS.register("bwlimit", HashFormat(
    {k: _BWLIMIT_OPT for k in ("default", "restore", "migration", "clone", "move")},
    source="pve-common src/PVE/JSONSchema.pm $bwlimit_format"))
FORMATS.register("proxmox-remote", HashFormat({
    "host": {"type": "string"},
    "port": {"type": "integer", "optional": 1},
    "apitoken": {"type": "string"},
    "fingerprint": {"type": "string", "pattern": "([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}", "optional": 1},
}, source="pve-common src/PVE/JSONSchema.pm $remote_format"))


# -- pve-common src/PVE/CalendarEvent.pm -----------------------------------------------------------------


@code_format("pve-calendar-event")
def verify_calendar_event(value: str) -> str:
    try:
        calendar.parse(value)
    except calendar.CalendarEventError as exc:
        raise FormatError(exc.pve_message + "\n") from None
    return value


# -- pve-access-control src/PVE/Auth/Plugin.pm, src/PVE/AccessControl.pm -------------------------------

REALM_RE = r"[A-Za-z][A-Za-z0-9\.\-_]+"
USER_RE = r"[^\s:/]+"
GROUPNAME_RE = r"[A-Za-z0-9\.\-_]+"
TOKEN_SUBID_RE = REALM_RE
TOKEN_FULL_RE = rf"(({USER_RE})\@({REALM_RE}))!({TOKEN_SUBID_RE})"


@code_format("pve-realm")
def verify_realm(value: str) -> str:
    if not perl_match(rf"^{REALM_RE}$", value):
        raise FormatError("value does not look like a valid realm\n")
    return value


@code_format("pve-userid")
def verify_username(value: str) -> str:
    """``PVE::Auth::Plugin::verify_username``."""
    value = value or ""
    if len(value) < 3:
        raise FormatError(f"user name '{value}' is too short\n")
    if len(value) > 64:
        raise FormatError(f"user name '{value}' is too long ({len(value)} > 64)\n")
    if perl_match(rf"^({USER_RE})\@({REALM_RE})$", value):
        return value
    raise FormatError(f"value '{value}' does not look like a valid user name\n")


@code_format("pve-tokenid")
def verify_tokenid(value: str) -> str:
    if not perl_match(rf"^{TOKEN_FULL_RE}$", value):
        raise FormatError(f"value '{value}' does not look like a valid token ID\n")
    return value


@code_format("pve-groupid")
def verify_groupname(value: str) -> str:
    if not perl_match(rf"^{GROUPNAME_RE}$", value):
        raise FormatError(f"group name '{value}' contains invalid characters\n")
    return value


@code_format("pve-roleid")
def verify_rolename(value: str) -> str:
    if not perl_match(r"^[A-Za-z0-9\.\-_]+$", value):
        raise FormatError(f"role name '{value}' contains invalid characters\n")
    return value


@code_format("pve-poolid")
def verify_poolname(value: str) -> str:
    if len(perl_split("/", value)) > 3:
        raise FormatError(f"pool name '{value}' nested too deeply (max levels = 3)\n")
    if not perl_match(r"^[A-Za-z0-9\.\-_]+(?:/[A-Za-z0-9\.\-_]+){0,2}$", value):
        raise FormatError(f"pool name '{value}' contains invalid characters\n")
    return value


# ``pve-priv`` depends on the version's privilege list; ``versions`` registers it per version through
# ``privilege_format`` (AccessControl.pm verify_privname: die "invalid privilege '$priv'\n").
def privilege_format(valid: frozenset[str]) -> CodeFormat:
    def verify_privname(value: str) -> str:
        if value not in valid:
            raise FormatError(f"invalid privilege '{value}'\n")
        return value

    return verify_privname


# -- pve-storage src/PVE/Storage/Plugin.pm ---------------------------------------------------------------

# DirPlugin.pm plugindata: "dir includes all other types".
STORAGE_CONTENT_TYPES = frozenset({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import"})

FORMATS.register("prune-backups", HashFormat(
    {"keep-all": {"type": "boolean", "optional": 1},
     **{f"keep-{period}": {"optional": 1, "type": "integer", "minimum": "0"}
        for period in ("last", "hourly", "daily", "weekly", "monthly", "yearly")}},
    validator=lambda parsed: validate_prune_backups(parsed),
    source="pve-storage src/PVE/Storage/Plugin.pm $prune_backups_format, validate_prune_backups"))


def validate_prune_backups(parsed: dict[str, Any]) -> dict[str, Any]:
    res = dict(parsed)
    keep_all = res.pop("keep-all", None)
    if not any(_perl_num(v) > 0 for v in res.values()):
        return {"keep-all": 1}
    if keep_all and str(keep_all) != "0":
        raise FormatError("keep-all cannot be set together with other options.\n")
    return res


def _perl_num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@code_format("pve-storage-path")
def verify_storage_path(value: str) -> str:
    if not perl_match(r"^/[^;\(\)]+", value):
        raise FormatError("value does not look like a valid absolute path\n")
    return value


@code_format("pve-storage-server")
def verify_storage_server(value: str) -> str:
    try:
        verify_ip(value)
    except FormatError:
        try:
            verify_dns_name(value)
        except FormatError:
            raise FormatError("value does not look like a valid server name or IP address\n") from None
    return value


@code_format("pve-storage-vgname")
def parse_lvm_name(value: str) -> str:
    if not perl_match(r"^[a-z0-9][a-z0-9\-\_\.]*[a-z0-9]$", value, re.IGNORECASE):
        raise FormatError(f"lvm name '{value}' contains illegal characters\n")
    return value


@code_format("pve-storage-portal-dns")
def verify_portal_dns(value: str) -> str:
    if not parse_host_and_port(value):
        raise FormatError("value does not look like a valid portal address\n")
    return value


@code_format("pve-storage-content")
def verify_content(value: str) -> str:
    if value == "import" or value in STORAGE_CONTENT_TYPES:
        return value
    raise FormatError(f"invalid content type '{value}'\n")


@code_format("pve-storage-format")
def verify_storage_format(value: str) -> str:
    if not perl_match(r"^(raw|qcow2|vmdk|subvol)$", value):
        raise FormatError(f"invalid format '{value}'\n")
    return value


@code_format("pve-storage-options")
def verify_storage_options(value: str) -> str:
    if not perl_match(r"^\S+$", value):
        raise FormatError(f"invalid options '{value}'\n")
    return value


@code_format("pve-volume-id")
def parse_volume_id(value: str) -> str:
    if perl_match(r"^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$", value, re.IGNORECASE | re.DOTALL):
        return value
    raise FormatError(f"unable to parse volume ID '{value}'\n")


@code_format("pve-dir-override")
def verify_dir_override(value: str) -> str:
    match = perl_match(r"^([a-z]+)=([^.]*(?:\.?[^.]+)+)$", value)
    if match:
        verify_content(match.group(1))
        relative = match.group(2)
        if len(relative) < 1023 and not any(len(part) >= 255 for part in relative.split("/")):
            return value
    raise FormatError(f"invalid override '{value}'\n")


# -- pve-manager PVE/API2/Backup.pm; pve-guest-common src/PVE/VZDump/Common.pm ---------------------------


@code_format("pve-day-of-week")
def verify_day_of_week(value: str) -> str:
    if perl_match(r"^(mon|tue|wed|thu|fri|sat|sun)$", value):
        return value
    raise FormatError(f"invalid day '{value}'\n")


def _verify_backup_fleecing(parsed: dict[str, Any]) -> dict[str, Any]:
    if not parsed.get("storage") and parsed.get("enabled") not in (None, "", 0, "0"):
        raise FormatError("'storage' parameter is required when 'enabled' is set\n")
    return parsed


FORMATS.register("backup-fleecing", HashFormat(
    {"enabled": {"type": "boolean", "default": 0, "optional": 1, "default_key": 1},
     "storage": {"type": "string", "format": "pve-storage-id", "optional": 1}},
    validator=_verify_backup_fleecing, source="pve-guest-common src/PVE/VZDump/Common.pm backup-fleecing"))
FORMATS.register("backup-performance", HashFormat(
    {"max-workers": {"type": "integer", "minimum": 1, "maximum": 256, "default": 16, "optional": 1},
     "pbs-entries-max": {"type": "integer", "minimum": 1, "default": 1048576, "optional": 1}},
    source="pve-guest-common src/PVE/VZDump/Common.pm backup-performance"))


# -- qemu-server src/PVE/QemuServer.pm, src/PVE/QemuServer/Drive.pm, pve-common src/PVE/CpuSet.pm ----------

QEMU_DRIVES = frozenset(
    [f"ide{i}" for i in range(4)] + [f"scsi{i}" for i in range(31)] + [f"virtio{i}" for i in range(16)]
    + [f"sata{i}" for i in range(6)] + ["efidisk0", "tpmstate0"]
)  # Drive.pm $drivedesc_hash without unusedN (is_valid_drivename)


@code_format("pve-cpuset")
def verify_cpuset(value: str) -> str:
    for part in perl_split(",", value):
        match = perl_match(r"^\s*(\d+)(?:-(\d+))?\s*$", part)
        if not match or int(match.group(2) or match.group(1)) < int(match.group(1)):
            raise FormatError("unable to parse cpuset option\n")
    return value


@code_format("pve-hotplug-features")
def verify_hotplug_features(value: str) -> str:
    if value in ("0", "1"):
        return value
    for feature in split_list(value):
        if not perl_match(r"^(network|disk|cpu|memory|usb|cloudinit)$", feature):
            # parse_hotplug_features dies before pve_verify_hotplug_features can word it
            raise FormatError(f"invalid hotplug feature '{feature}'\n")
    return value


@code_format("pve-volume-id-or-absolute-path")
def verify_volume_id_or_absolute_path(value: str) -> str:
    if value.startswith("/"):
        return value
    return parse_volume_id(value)


@code_format("pve-volume-id-or-qm-path")
def verify_volume_id_or_qm_path(value: str) -> str:
    if value in ("none", "cdrom"):
        return value
    return verify_volume_id_or_absolute_path(value)


@code_format("pve-qm-bootdisk")
def verify_bootdisk(value: str) -> str:
    if value in QEMU_DRIVES:
        return value
    raise FormatError(f"invalid boot disk '{value}'\n")


# -- pve-container src/PVE/LXC/Config.pm -----------------------------------------------------------------


@code_format("lxc-ip-with-ll-iface")
def verify_ip_with_ll_iface(value: str) -> str:
    match = perl_match(r"^(fe80:[^%]+)%(.*)$", value)
    if match:
        try:
            verify_ip(match.group(1))
            verify_iface(match.group(2))
            return value
        except FormatError:
            pass
    return verify_ip(value)


@code_format("pve-ct-timezone")
def verify_ct_timezone(value: str) -> str:
    if value == "host":
        return value
    return verify_timezone(value)


@code_format("pve-lxc-mp-string")
def verify_lxc_mp_string(value: str) -> str:
    if (perl_match(r"/\.\.?/", value) or perl_match(r"/\.\.?$", value) or perl_match(r"^\.\./", value)):
        raise FormatError(f"{value} contains illegal character sequences\n")
    return value


@code_format("pve-lxc-dev-string")
def verify_lxc_dev_string(value: str) -> str:
    if perl_match(r"/\.\.?(?:/|$)", value) or not perl_match(r"^/dev/", value):
        raise FormatError(f"{value} is not a valid device path\n")
    return value


# -- hash formats known only by their typetext ------------------------------------------------------------

TYPETEXT_ITEM = re.compile(
    r"(?P<open>\[)?,?(?:\[(?P<default>[\w-]+)=\]|(?P<key>[\w-]+)=)<(?P<type>[^>]*)>(?P<close>\])?")
ENUM_WORD = re.compile(r"[A-Za-z/][\w/.\-]*")


def typetext_format(typetext: str, source: str) -> HashFormat:
    """A property-string format rebuilt from its ``typetext`` (pve-common ``generate_typetext``).

    ``generate_typetext`` writes each key as ``key=<type>`` (``[key=]<type>`` for the default key),
    wraps optional keys in ``[…]``, and types as ``<1|0>`` (boolean), ``<integer>``, ``<number>``, the
    enum values when there are at most three, else ``<enum>`` or the key's format description. Keys,
    optionality, the default key, booleans, integers, numbers and short enums are therefore checked
    exactly; a value behind ``<enum>`` or a description is accepted as a string.
    """
    properties: dict[str, dict[str, Any]] = {}
    for item in TYPETEXT_ITEM.finditer(typetext):
        name = item.group("default") or item.group("key")
        spec: dict[str, Any] = {"type": "string"}
        kind = item.group("type")
        if kind == "1|0":
            spec = {"type": "boolean"}
        elif kind in ("integer", "number"):
            spec = {"type": kind}
        elif "|" in kind and all(ENUM_WORD.fullmatch(word) for word in kind.split("|")):
            spec["enum"] = kind.split("|")
        if item.group("open") and item.group("close"):
            spec["optional"] = 1
        if item.group("default"):
            spec["default_key"] = 1
        properties[name] = spec
    return HashFormat(properties, source=source)


for _name, _typetext, _file in (
    ("pve-qm-boot", "[[legacy=]<[acdn]{1,4}>] [,order=<device[;device...]>]", "src/PVE/QemuServer.pm $boot_fmt"),
    ("pve-qm-cicustom", "[meta=<volume>] [,network=<volume>] [,user=<volume>] [,vendor=<volume>]",
     "src/PVE/QemuServer.pm $cicustom_fmt"),
    ("pve-qm-ipconfig", "[gw=<GatewayIPv4>] [,gw6=<GatewayIPv6>] [,ip=<IPv4Format/CIDR>] [,ip6=<IPv6Format/CIDR>]",
     "src/PVE/QemuServer/Network.pm $ipconfig_fmt"),
    ("pve-qm-rng", "[source=]</dev/urandom|/dev/random|/dev/hwrng> [,max_bytes=<integer>] [,period=<integer>]",
     "src/PVE/QemuServer/RNG.pm $rng_fmt"),
    ("pve-qm-smbios1", "[base64=<1|0>] [,family=<Base64 encoded string>] [,manufacturer=<Base64 encoded string>] "
     "[,product=<Base64 encoded string>] [,serial=<Base64 encoded string>] [,sku=<Base64 encoded string>] "
     "[,uuid=<UUID>] [,version=<Base64 encoded string>]", "src/PVE/QemuServer.pm $smbios1_fmt"),
    ("pve-qm-watchdog", "[[model=]<i6300esb|ib700>] [,action=<enum>]", "src/PVE/QemuServer.pm $watchdog_fmt"),
    ("pve-qemu-sev-fmt", "[type=]<sev-type> [,allow-smt=<1|0>] [,kernel-hashes=<1|0>] [,no-debug=<1|0>] "
     "[,no-key-sharing=<1|0>]", "src/PVE/QemuServer/CPUConfig.pm $sev_fmt"),
    ("pve-qemu-tdx-fmt", "[type=]<tdx-type> ,attestation=<1|0> [,vsock-cid=<integer>] [,vsock-port=<integer>]",
     "src/PVE/QemuServer/CPUConfig.pm $tdx_fmt"),
    ("pve-qm-hostpci", "[[host=]<HOSTPCIID[;HOSTPCIID2...]>] [,device-id=<hex id>] [,driver=<vfio|keep>] "
     "[,legacy-igd=<1|0>] [,mapping=<mapping-id>] [,mdev=<string>] [,pcie=<1|0>] [,rombar=<1|0>] "
     "[,romfile=<string>] [,sub-device-id=<hex id>] [,sub-vendor-id=<hex id>] [,vendor-id=<hex id>] "
     "[,x-vga=<1|0>]", "src/PVE/QemuServer/PCI.pm $hostpci_fmt"),
    ("pve-vm-cpu-conf", "[[cputype=]<string>] [,flags=<+FLAG[;-FLAG...]>] [,guest-phys-bits=<integer>] "
     "[,hidden=<1|0>] [,hv-vendor-id=<vendor-id>] [,phys-bits=<8-64|host>] [,reported-model=<enum>]",
     "src/PVE/QemuServer/CPUConfig.pm $cpu_fmt"),
):
    FORMATS.register(_name, typetext_format(_typetext, f"qemu-server {_file} (keys from the schema's typetext)"))


# pve-qm-ide is $ide_fmt (Drive.pm), the format the schema inlines for ide[n]: ``versions`` resolves it
# per schema through ``INLINE_ALIASES``.
INLINE_ALIASES = {"pve-qm-ide": ("POST /nodes/{node}/qemu", "ide0")}
