"""Conformance of the sandbox's API with PVE's published schema, for PVE 9.1.3 and 8.4.0.

For every route the sandbox serves and every parameter the schema gives it, values are generated from
the schema's own rules; what PVE answers is derived here, independently of the sandbox's code, from
those rules and the error texts of pve-common ``src/PVE/JSONSchema.pm`` (``check_prop`` order: type,
format, pattern, maxLength, minLength, maximum, minimum, enum) and of the formats PVE registers
(``FORMAT_CASES``, each transcribed from the Perl source it cites). Then:
- a value the schema rejects gets 400 ``Parameter verification failed.`` with exactly that parameter's
  message; an unknown parameter, a missing required one, a ``requires`` left unmet likewise;
- a value the schema accepts passes;
- the auditor token (PVEAuditor on ``/``) gets PVE's 403 text wherever the method's ``perm`` declaration
  asks for a privilege PVEAuditor lacks (privilege lists from pve-access-control ``AccessControl.pm``);
- every served GET answers in the shape its ``returns`` schema declares (PVE's result verification).
Everything runs in-process; a few checks repeat over HTTPS.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.sandbox import running_sandbox
from vzkeep.sandbox.api.access.auth import ROOT, Principal
from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.launch import open_or_create
from vzkeep.sandbox.server import SandboxApp, make_app

VERSIONS = ("9", "8")
DAY = 86400
BOGUS = "vzkeep-bogus"
AUDITOR = Principal("prometheus@pve!monitoring", token=True)

# PVEAuditor = every "audit" privilege of AccessControl.pm $privgroups (pve-access-control 9.0.7 / 8.2.2).
AUDITOR_PRIVILEGES = {
    "9": {"VM.Audit", "VM.GuestAgent.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit", "Pool.Audit",
          "Mapping.Audit"},
    "8": {"VM.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit", "Pool.Audit", "Mapping.Audit"},
}
REQUIRES_TEXT = {  # JSONSchema.pm check_object (0f0e791 changed the wording in 9.x)
    "9": "missing property required by '{key}'",
    "8": "missing property - '{key}' requires this property",
}
UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"

# name -> (a value PVE accepts, a value it refuses, the refusal's ``die`` text), per the source cited.
FORMAT_CASES: dict[str, tuple[str, str, str]] = {
    # pve-common src/PVE/JSONSchema.pm
    "CIDR": ("10.0.0.0/24", "10.0.0.0", "value does not look like a valid CIDR network\n"),
    "address": ("10.0.0.1", "a_b", "value does not look like a valid address: a_b\n"),
    "dns-name": ("host.example", "-bad", "value does not look like a valid DNS name\n"),
    "email": ("ops@example.org", "not-an@email@x", "value does not look like a valid email address\n"),
    "email-or-username": ("ops", "a@b@c", "value does not look like a valid email address or user name\n"),
    "pve-configid": ("net0", "0abc", "invalid configuration ID '0abc'\n"),
    "pve-node": ("pve1", "pve_1", "value does not look like a valid node name\n"),
    "pve-vmid": ("100", "99", "value does not look like a valid VM ID\n"),
    "pve-startup-order": ("order=1,up=30", "first", "unable to parse startup options\n"),
    "pve-tag": ("prod", "-x", "invalid characters in tag\n"),
    "pve-task-status-type": ("ok", "fine", "invalid status 'fine'\n"),
    "urlencoded": ("abc%20d", "a b", "invalid urlencoded string: a b\n"),
    "storage-pair": ("local", "0bad", "entry '0bad' contains invalid ID - storage ID '0bad' contains illegal "
                                      "characters\n\n\n"),
    "pve-storage-id": ("local", "0local", "storage ID '0local' contains illegal characters\n"),
    "ip": ("10.0.0.1", "999.1.1.1", "value does not look like a valid IP address\n"),
    # pve-common src/PVE/CalendarEvent.pm (the parser's own reason follows; test_calendar checks it)
    "pve-calendar-event": ("daily", "daily 02:00", "invalid calendar event 'daily 02:00' - "),
    # pve-access-control src/PVE/Auth/Plugin.pm, src/PVE/AccessControl.pm
    "pve-realm": ("pve", "1pve", "value does not look like a valid realm\n"),
    "pve-userid": ("root@pam", "root", "value 'root' does not look like a valid user name\n"),
    "pve-tokenid": ("root@pam!t1", "root@pam", "value 'root@pam' does not look like a valid token ID\n"),
    "pve-groupid": ("admins", "gr!p", "group name 'gr!p' contains invalid characters\n"),
    "pve-roleid": ("Reader", "b@d", "role name 'b@d' contains invalid characters\n"),
    "pve-poolid": ("prod", "a/b/c/d", "pool name 'a/b/c/d' nested too deeply (max levels = 3)\n"),
    "pve-priv": ("VM.Audit", "VM.Fly", "invalid privilege 'VM.Fly'\n"),
    # pve-storage src/PVE/Storage/Plugin.pm
    "pve-storage-content": ("backup", "movies", "invalid content type 'movies'\n"),
    "pve-storage-options": ("vers=4.2", "a b", "invalid options 'a b'\n"),
    "pve-storage-path": ("/mnt/backup", "relative/path", "value does not look like a valid absolute path\n"),
    "pve-storage-portal-dns": ("10.0.0.1:3260", "bad!", "value does not look like a valid portal address\n"),
    "pve-storage-server": ("nas.home.arpa", "-nas", "value does not look like a valid server name or IP address\n"),
    "pve-storage-vgname": ("pve", "-vg", "lvm name '-vg' contains illegal characters\n"),
    "pve-volume-id": ("local:backup/vzdump-qemu-100-2025_01_01-00_00_00.vma.zst", "novolume",
                      "unable to parse volume ID 'novolume'\n"),
    "pve-dir-override": ("backup=bk/dumps", "backup", "invalid override 'backup'\n"),
    # pve-manager PVE/API2/Backup.pm
    "pve-day-of-week": ("mon", "funday", "invalid day 'funday'\n"),
    # qemu-server src/PVE/QemuServer.pm, src/PVE/QemuServer/Drive.pm
    "pve-cpuset": ("0-3,5", "3-1", "unable to parse cpuset option\n"),
    "pve-hotplug-features": ("network,disk", "gpu", "invalid hotplug feature 'gpu'\n"),
    "pve-qm-bootdisk": ("scsi0", "scsi99", "invalid boot disk 'scsi99'\n"),
    "pve-volume-id-or-qm-path": ("local-lvm:vm-100-disk-0", "novolume", "unable to parse volume ID 'novolume'\n"),
    "pve-volume-id-or-absolute-path": ("/dev/sdb", "novolume", "unable to parse volume ID 'novolume'\n"),
    # pve-container src/PVE/LXC/Config.pm
    "lxc-ip-with-ll-iface": ("fe80::1%eth0", "999.1.1.1", "value does not look like a valid IP address\n"),
    "pve-ct-timezone": ("host", "Mars/Olympus", "invalid time zone 'Mars/Olympus'\n"),
    "pve-lxc-mp-string": ("/mnt/data", "/mnt/../etc", "/mnt/../etc contains illegal character sequences\n"),
    "pve-lxc-dev-string": ("/dev/ttyUSB0", "/tmp/x", "/tmp/x is not a valid device path\n"),
}
# Property-string formats known by name (registered as hashes): any unknown key is refused the same way.
HASH_FORMATS = {"prune-backups", "backup-fleecing", "backup-performance", "pve-qm-ide", "pve-qm-boot",
                "pve-qm-cicustom", "pve-qm-hostpci", "pve-qm-ipconfig", "pve-qm-rng", "pve-qm-smbios1",
                "pve-qm-watchdog", "pve-qemu-sev-fmt", "pve-qemu-tdx-fmt", "pve-vm-cpu-conf"}
# Hash formats with required keys: a minimal valid value (the keys from their typetext, the values from
# qemu-server: SEV types std/es/snp, TDX type tdx, RNG sources, a drive's ``none``).
HASH_VALID = {"pve-qm-ide": "none", "pve-qemu-sev-fmt": "type=std", "pve-qemu-tdx-fmt": "type=tdx,attestation=1",
              "pve-qm-rng": "source=/dev/urandom"}
BAD_KEY = f"invalid key in comma-separated list property: {BOGUS}\n"
VALID_WORDS = ("vzkeep", "02:00", "a1", "vmbr0", "eth0", "ab", "1", "0", "local", "10", "x", "A1", "on")
INVALID_WORDS = ("", " ", "!!", "a b", "\t", "-", "0x")


def perl_number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def python_pattern(pattern: str) -> re.Pattern[str]:
    """A Perl ``m/^…$/`` pattern for Python (``(?^:…)`` is Perl's stringified ``qr//``)."""
    return re.compile("^" + re.sub(r"\(\?\^([a-z]*):", lambda m: f"(?{m.group(1)}:", pattern) + "$")


def format_case(fmt: str) -> tuple[str, str, str] | None:
    """(valid, invalid, die text) for a named format, with ``-list``/``-opt`` derived as check_format does."""
    match = re.match(r"^(.*?)(?:-(list|opt))?$", fmt)
    assert match is not None
    name, kind = match.group(1), match.group(2)
    case = FORMAT_CASES.get(name)
    if case is None:
        return None
    valid, invalid, text = case
    if kind == "list":
        return f"{valid},{valid}", f"{valid} {invalid}", text
    return case


def valid_value(prop: dict[str, Any]) -> str | None:
    """A value the schema accepts for ``prop`` (None when this test cannot make one)."""
    kind, fmt = prop.get("type"), prop.get("format")
    if prop.get("enum"):
        return str(prop["enum"][0])
    if kind == "boolean":
        return "1"
    if kind in ("integer", "number"):
        if fmt == "pve-vmid":
            return "100"
        low = prop.get("minimum")
        value = int(float(low)) if low is not None else 1
        return str(value)
    if isinstance(fmt, dict):
        parts = []
        for key, sub in fmt.items():
            if sub.get("alias") or sub.get("optional"):
                continue
            sub_value = valid_value(sub)
            if sub_value is None:
                return None
            parts.append(f"{key}={sub_value}")
        return ",".join(parts)
    if isinstance(fmt, str):
        if fmt in HASH_FORMATS:
            return HASH_VALID.get(fmt, "")  # the others have only optional keys: an empty string is valid
        case = format_case(fmt)
        return None if case is None else case[0]
    for word in VALID_WORDS:
        if prop.get("pattern") and not python_pattern(prop["pattern"]).match(word):
            continue
        if prop.get("maxLength") is not None and len(word) > int(prop["maxLength"]):
            continue
        if prop.get("minLength") is not None and len(word) < int(prop["minLength"]):
            continue
        return word
    return None


def invalid_values(prop: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, PVE's message) pairs, each refused by the first rule check_prop applies to it."""
    kind, fmt = prop.get("type"), prop.get("format")
    if kind in ("integer", "number", "boolean"):
        word = "maybe" if kind == "boolean" else "abc"
        out = [(word, f"type check ('{kind}') failed - got '{word}'")]
        if kind != "boolean" and not fmt and not prop.get("enum"):
            if prop.get("maximum") is not None:
                out.append((perl_number(float(prop["maximum"]) + 1),
                            f"value must have a maximum value of {perl_number(prop['maximum'])}"))
            if prop.get("minimum") is not None:
                out.append((perl_number(float(prop["minimum"]) - 1),
                            f"value must have a minimum value of {perl_number(prop['minimum'])}"))
        return out
    if isinstance(fmt, dict) or (isinstance(fmt, str) and fmt in HASH_FORMATS):
        return [(f"{BOGUS}=1", "invalid format - " + BAD_KEY)]
    if isinstance(fmt, str):
        case = format_case(fmt)
        return [] if case is None else [(case[1], "invalid format - " + case[2])]
    if prop.get("pattern"):
        regex = python_pattern(prop["pattern"])
        word = next((w for w in INVALID_WORDS if not regex.match(w)), None)
        return [] if word is None else [(word, "value does not match the regex pattern")]
    if prop.get("enum"):
        values = ", ".join(str(v) for v in prop["enum"])
        return [(BOGUS, f"value '{BOGUS}' does not have a value in the enumeration '{values}'")]
    if prop.get("maxLength") is not None:
        limit = int(prop["maxLength"])
        return [("x" * (limit + 1), f"value may only be {limit} characters long")]
    if prop.get("minLength"):
        limit = int(prop["minLength"])
        return [("", f"value must be at least {limit} characters long")]
    return []


# -- the sandbox under test ---------------------------------------------------------------------------------


@dataclass
class World:
    version: str
    app: SandboxApp
    uri: dict[str, str]
    counts: dict[str, int] = field(default_factory=lambda: {"routes": 0, "params": 0, "invalid": 0, "valid": 0,
                                                             "no_invalid_value": 0, "permission": 0})

    def path(self, template: str, route: str | None = None) -> str:
        """``template`` with the URI values of ``route`` (default: itself); a container route names CT 100."""
        values = dict(self.uri)
        values["vmid"] = "100" if "/lxc/" in (route or template) else "101"
        return re.sub(r"\{([a-z_-]+)\}", lambda m: values[m.group(1)], template)

    def prepare(self, method: str, template: str, params: dict[str, Any], who: Principal = ROOT) -> ApiError | None:
        try:
            self.app.api.prepare(method, self.path(template), dict(params), who)
        except ApiError as exc:
            return exc
        return None


@pytest.fixture(scope="module", params=VERSIONS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="vzkeep-conformance-") as tmp:
        state = Path(tmp) / "state"
        sandbox, _ = open_or_create(state, stepped=True, start_epoch=1764547200, pve_version=request.param)
        sandbox.advance(DAY)
        app = make_app(sandbox, state, verify_results=True)
        volume = sandbox.listing("backup-prod", "pve1")[0]["volid"]
        upid = app.call("GET", "/nodes/pve1/tasks").items[0]["upid"]
        uri = {"node": "pve1", "storage": "backup-prod", "volume": volume, "upid": upid, "id": "vzkeep-prod",
               "roleid": "PVEAuditor", "userid": "root@pam", "tokenid": "vzkeep", "poolid": "prod"}
        yield World(request.param, app, uri)


def base_params(world: World, method: Any) -> dict[str, str]:
    """The method's required body parameters, each with a valid value (URI parameters come from the path)."""
    placeholders = set(re.findall(r"\{([a-z_-]+)\}", method.path))
    params = {}
    for name, prop in method.properties.items():
        if name in placeholders or prop.get("optional"):
            continue
        value = valid_value(prop)
        assert value is not None, f"{method.key}: cannot make a valid {name}"
        params[name] = value
    return params


def test_every_served_route_is_in_the_schema_and_unserved_ones_are_501(world: World) -> None:
    served = world.app.api.served
    assert served and set(served) <= set(world.app.version.schema.methods)
    unserved = next(k for k in sorted(world.app.version.schema.methods) if k not in served and "{" not in k)
    method, path = unserved.split(" ", 1)
    with pytest.raises(ApiError) as err:
        world.app.call(method, path)
    assert (err.value.status, err.value.message) == (501, f"Method '{method} {path}' not implemented")


def test_every_parameter_of_every_served_route_is_checked_as_pve_checks_it(world: World) -> None:
    problems: list[str] = []
    for key, method in sorted(world.app.api.served.items()):
        world.counts["routes"] += 1
        placeholders = set(re.findall(r"\{([a-z_-]+)\}", method.path))
        base = base_params(world, method)
        error = world.prepare(method.method, method.path, base)
        if error is not None:
            problems.append(f"{key}: valid required parameters refused: {error.status} {error.errors or error.message}")
            continue
        _check_unknown_and_missing(world, method, base, placeholders, problems)
        for name, prop in method.properties.items():
            if name in placeholders:
                continue
            world.counts["params"] += 1
            _check_parameter(world, method, base, name, prop, problems)
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"
    assert world.counts["invalid"] > 1000 and world.counts["valid"] > 1000, world.counts


def _check_unknown_and_missing(world: World, method: Any, base: dict[str, str], placeholders: set[str],
                               problems: list[str]) -> None:
    error = world.prepare(method.method, method.path, {**base, BOGUS: "1"})
    if error is None or error.status != 400 or error.errors != {BOGUS: UNKNOWN}:
        problems.append(f"{method.key}: unknown parameter: {error and (error.status, error.errors)}")
    for name in base:
        error = world.prepare(method.method, method.path, {k: v for k, v in base.items() if k != name})
        if error is None or error.errors != {name: MISSING}:
            problems.append(f"{method.key}: missing {name}: {error and (error.status, error.errors)}")


def _check_parameter(world: World, method: Any, base: dict[str, str], name: str, prop: dict[str, Any],
                     problems: list[str]) -> None:
    extra = {}
    requires = prop.get("requires")
    if isinstance(requires, str):
        extra[requires] = valid_value(method.properties[requires]) or "vzkeep"
    for value, message in invalid_values(prop):
        world.counts["invalid"] += 1
        error = world.prepare(method.method, method.path, {**base, **extra, name: value})
        got = (error.status, error.errors) if error else None
        text = (error.errors or {}).get(name, "") if error else ""
        exact = (error is not None and error.status == 400 and set(error.errors or {}) == {name}
                 and (text == message or (message.endswith(" - ") and text.startswith(message))))
        if not exact:
            problems.append(f"{method.key} {name}={value!r}: expected 400 {message!r}, got {got}")
    if not invalid_values(prop):
        world.counts["no_invalid_value"] += 1
    value = valid_value(prop)
    if value is not None:
        world.counts["valid"] += 1
        error = world.prepare(method.method, method.path, {**base, **extra, name: value})
        if error is not None:
            problems.append(f"{method.key} {name}={value!r}: refused: {error.status} {error.errors or error.message}")
    if isinstance(requires, str) and value is not None and requires not in base:
        error = world.prepare(method.method, method.path, {**base, name: value})
        expected = {requires: REQUIRES_TEXT[world.version].format(key=name)}
        if error is None or error.errors != expected:
            problems.append(f"{method.key} {name} without {requires}: {error and error.errors} != {expected}")


def test_the_auditor_gets_pves_403_where_a_perm_check_asks_for_more_than_auditing(world: World) -> None:
    held = AUDITOR_PRIVILEGES[world.version]
    problems = []
    for key, method in sorted(world.app.api.served.items()):
        perm = method.permissions or {}
        check = perm.get("check")
        if not check or check[0] != "perm":
            continue  # "user => all", or a composite test (userid-param, userid-group…): test_sandbox_access
        world.counts["permission"] += 1
        template, privs, *options = check[1:]
        any_of = dict(zip(options[::2], options[1::2], strict=False)).get("any")
        path = world.path(template, method.path)
        if any_of:
            expected = None if held & set(privs) else f"Permission check failed ({path}, {'|'.join(privs)})\n"
        else:
            missing = [p for p in privs if p not in held]
            expected = f"Permission check failed ({path}, {missing[0]})\n" if missing else None
        error = world.prepare(method.method, method.path, base_params(world, method), AUDITOR)
        got = error.message if error is not None and error.status == 403 else None
        if (got or None) != expected and not (expected is None and error is None):
            problems.append(f"{key}: expected {expected!r}, got {error and (error.status, error.message)}")
    assert not problems, "\n".join(problems)
    assert world.counts["permission"] >= 30


GET_PARAMS = {
    "GET /cluster/jobs/schedule-analyze": {"schedule": "daily"},
    "GET /nodes/{node}/storage/{storage}/prunebackups": {"prune-backups": "keep-last=1"},
    "GET /access/users": {"full": "1"},
}


def test_every_served_get_answers_in_its_schemas_shape(world: World) -> None:
    gets = [m for k, m in sorted(world.app.api.served.items()) if m.method == "GET"]
    for method in gets:
        params = GET_PARAMS.get(method.key, {})
        world.app.call("GET", world.path(method.path), params)  # verify_results: raises on a wrong shape
    assert len(gets) >= 45


def test_configuration_writes_answer_in_their_schemas_shape(world: World) -> None:
    """A configuration tool's round trip: storage, pool, role, user, token, ACL, job; each reply checked."""
    call = world.app.call
    assert call("POST", "/storage", {"storage": "nas2", "type": "nfs", "server": "nas.home.arpa",
                                     "export": "/volume1/pve", "content": "backup"}) == {"storage": "nas2",
                                                                                          "type": "nfs"}
    assert call("PUT", "/storage/nas2", {"prune-backups": "keep-daily=3"})["storage"] == "nas2"
    call("POST", "/pools", {"poolid": "staging", "comment": "x"})
    call("PUT", "/pools", {"poolid": "staging", "storage": "nas2"})
    call("POST", "/access/roles", {"roleid": "Reader", "privs": "VM.Audit,Datastore.Audit"})
    call("POST", "/access/users", {"userid": "ops@pve", "password": "correct-horse", "comment": "ops"})
    token = call("POST", "/access/users/ops@pve/token/ci", {"privsep": "1"})
    assert token["full-tokenid"] == "ops@pve!ci" and token["info"]["privsep"] == 1
    call("PUT", "/access/acl", {"path": "/storage/nas2", "roles": "Reader", "tokens": "ops@pve!ci"})
    call("POST", "/cluster/backup", {"id": "job-staging", "schedule": "03:00", "pool": "staging", "storage": "nas2"})
    call("DELETE", "/cluster/backup/job-staging")
    call("DELETE", "/access/users/ops@pve/token/ci")
    call("DELETE", "/storage/nas2")  # also leaves the pool (AccessControl.pm remove_storage_access)
    call("DELETE", "/pools", {"poolid": "staging"})


def test_over_https_the_errors_keep_their_shapes(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        auth = {"Authorization": "PVEAPIToken=" + sb.admin_token}
        reply = requests.post(sb.url + "/cluster/backup", data={"schedule": "daily", "all": "1", BOGUS: "1"},
                              headers=auth, verify=False, timeout=30)
        assert reply.status_code == 400 and reply.json() == {
            "data": None, "message": "Parameter verification failed.\n", "errors": {BOGUS: UNKNOWN}}
        reply = requests.post(sb.url + "/storage", data={"storage": "x1", "type": "dir", "path": "/x"},
                              headers={"Authorization": "PVEAPIToken=" + sb.auditor_token}, verify=False, timeout=30)
        assert (reply.status_code, reply.json()["message"]) == (
            403, "Permission check failed (/storage, Datastore.Allocate)\n")
        reply = requests.get(sb.url + "/nodes/pve1/hardware/pci", headers=auth, verify=False, timeout=30)
        assert (reply.status_code, reply.json()["message"]) == (
            501, "Method 'GET /nodes/pve1/hardware/pci' not implemented\n")
