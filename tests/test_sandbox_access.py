"""PVE's permission model in the sandbox: users, roles, ACLs with propagation, pools, API tokens with and
without privilege separation, per-volume filtering of storage content, and the ``/access`` API.

Expected values come from pve-access-control (``src/PVE/AccessControl.pm`` roles and ``write_user_config``,
``src/PVE/RPCEnvironment.pm``, ``src/PVE/API2/*.pm``) and pve-storage (``src/PVE/Storage.pm``
``check_volume_access``), transcribed here, never from the sandbox's code.
"""

from __future__ import annotations

import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.sandbox import running_sandbox
from vzkeep.sandbox.api.access.auth import ROOT, Principal
from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.launch import open_or_create
from vzkeep.sandbox.server import SandboxApp, make_app

DAY = 86400
AUDITOR = Principal("prometheus@pve!monitoring", token=True)
CONTENT = "/nodes/pve1/storage/backup-prod/content"
# AccessControl.pm $privgroups "audit" lists (pve-access-control 9.0.7 / 8.2.2)
PVE_AUDITOR = {
    "9": {"VM.Audit", "VM.GuestAgent.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit", "Pool.Audit",
          "Mapping.Audit"},
    "8": {"VM.Audit", "Sys.Audit", "Datastore.Audit", "SDN.Audit", "Pool.Audit", "Mapping.Audit"},
}
# PVEVMUser = the VM "user" and "audit" lists
PVE_VM_USER = {
    "9": {"VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.GuestAgent.FileRead",
          "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite", "VM.PowerMgmt", "VM.Audit",
          "VM.GuestAgent.Audit"},
    "8": {"VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.PowerMgmt", "VM.Audit"},
}


def make(tmp: Path, version: str = "9") -> SandboxApp:
    sandbox, _ = open_or_create(tmp / "state", stepped=True, start_epoch=1764547200, pve_version=version)
    sandbox.advance(DAY)
    return make_app(sandbox, tmp / "state")


@pytest.fixture(scope="module")
def app() -> Iterator[SandboxApp]:
    with tempfile.TemporaryDirectory(prefix="vzkeep-access-") as tmp:
        yield make(Path(tmp))


def call(app: SandboxApp, method: str, route: str, who: Principal = ROOT, /, **params: Any) -> Any:
    return app.call(method, route, params, who)


def refused(app: SandboxApp, method: str, route: str, who: Principal = ROOT, /, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        app.call(method, route, params, who)
    return err.value


def backup_vmids(app: SandboxApp, who: Principal) -> set[int]:
    return {item["vmid"] for item in call(app, "GET", CONTENT, who)}


def user_with_token(app: SandboxApp, userid: str, privsep: int) -> Principal:
    call(app, "POST", "/access/users", userid=userid)
    call(app, "POST", f"/access/users/{userid}/token/tk", privsep=str(privsep))
    return Principal(f"{userid}!tk", token=True)


# -- per-volume filtering -------------------------------------------------------------------------------------


def test_a_pveauditor_token_gets_200_and_an_empty_backup_list(app) -> None:
    assert {101, 104} <= backup_vmids(app, ROOT)
    assert call(app, "GET", CONTENT, AUDITOR) == []  # 200: the index filters, it does not refuse
    assert refused(app, "GET", f"{CONTENT}/{call(app, 'GET', CONTENT)[0]['volid']}", AUDITOR).message == (
        "Permission check failed (/storage/backup-prod, Datastore.AllocateSpace)\n")


def test_backups_are_listed_per_guest_with_allocatespace_and_vm_backup(app) -> None:
    call(app, "POST", "/access/roles", roleid="Space", privs="Datastore.AllocateSpace")
    call(app, "POST", "/access/roles", roleid="Backup", privs="VM.Backup")
    token = user_with_token(app, "backup-one@pve", privsep=1)
    for who in ("users", "tokens"):
        ugid = "backup-one@pve" if who == "users" else token.authid
        call(app, "PUT", "/access/acl", path="/storage/backup-prod", roles="Space", **{who: ugid})
        call(app, "PUT", "/access/acl", path="/vms/101", roles="Backup", **{who: ugid})
    assert backup_vmids(app, Principal("backup-one@pve")) == {101}
    assert backup_vmids(app, token) == {101}


def test_a_privilege_separated_token_holds_the_intersection_and_a_plain_one_its_users(app) -> None:
    separated = user_with_token(app, "sep@pve", privsep=1)
    call(app, "PUT", "/access/acl", path="/", roles="PVEAdmin", users="sep@pve")
    assert call(app, "GET", "/access/permissions", separated) == {}  # the token itself holds nothing
    call(app, "PUT", "/access/acl", path="/vms", roles="PVEVMUser", tokens=separated.authid)
    perms = call(app, "GET", "/access/permissions", separated, path="/vms/100")["/vms/100"]
    assert set(perms) == PVE_VM_USER["9"]
    plain = user_with_token(app, "plain@pve", privsep=0)
    call(app, "PUT", "/access/acl", path="/storage", roles="PVEDatastoreAdmin", users="plain@pve")
    assert backup_vmids(app, plain) == backup_vmids(app, ROOT)  # Datastore.Allocate on the storage: every backup


def test_propagation_and_noaccess_follow_the_acl_path(app) -> None:
    call(app, "POST", "/access/users", userid="prop@pve")
    call(app, "PUT", "/access/acl", path="/vms", roles="PVEVMUser", users="prop@pve", propagate="0")
    env = app.rpcenv()
    assert "VM.Backup" in env.permissions("prop@pve", "/vms") and env.permissions("prop@pve", "/vms/100") == {}
    call(app, "PUT", "/access/acl", path="/vms", roles="PVEVMUser", users="prop@pve", propagate="1")
    call(app, "PUT", "/access/acl", path="/vms/101", roles="NoAccess", users="prop@pve")
    env = app.rpcenv()
    assert "VM.Backup" in env.permissions("prop@pve", "/vms/100")
    assert env.permissions("prop@pve", "/vms/101") == {}


def test_a_pool_acl_reaches_the_pools_guests(app) -> None:
    call(app, "POST", "/access/users", userid="pooled@pve")
    call(app, "PUT", "/access/acl", path="/pool/prod", roles="PVEVMUser", users="pooled@pve")
    env = app.rpcenv()
    assert "VM.Backup" in env.permissions("pooled@pve", "/vms/101")  # 101 is in pool prod
    assert env.permissions("pooled@pve", "/vms/200") == {}  # 200 is in pool lab


def test_the_auditor_token_holds_exactly_pveauditor_on_root(app) -> None:
    perms = call(app, "GET", "/access/permissions", AUDITOR)
    assert perms["/"] == dict.fromkeys(PVE_AUDITOR["9"], 1)
    acl = [(e["path"], e["type"], e["ugid"], e["roleid"]) for e in call(app, "GET", "/access/acl")
           if e["ugid"].startswith("prometheus@pve")]
    assert sorted(acl) == [("/", "token", "prometheus@pve!monitoring", "PVEAuditor"),
                           ("/", "user", "prometheus@pve", "PVEAuditor")]


@pytest.mark.parametrize("version", ["9", "8"])
def test_built_in_roles_are_those_of_the_version(tmp_path: Path, version: str) -> None:
    app = make(tmp_path, version)
    roles = {r["roleid"]: set(r["privs"].split(",")) - {""} for r in call(app, "GET", "/access/roles")}
    assert roles["PVEAuditor"] == PVE_AUDITOR[version] and roles["PVEVMUser"] == PVE_VM_USER[version]
    assert roles["NoAccess"] == set() and roles["PVETemplateUser"] == {"VM.Clone", "VM.Audit"}
    assert ("VM.Monitor" in roles["Administrator"]) == (version == "8")


# -- the /access API ------------------------------------------------------------------------------------------


def test_role_rules_and_messages(app) -> None:
    assert refused(app, "POST", "/access/roles", roleid="pveCustom").errors == {
        "roleid": "cannot use role ID starting with the (case-insensitive) 'PVE' namespace"}
    call(app, "POST", "/access/roles", roleid="Ops", privs="VM.Audit")
    assert refused(app, "POST", "/access/roles", roleid="Ops").message == (
        "create role failed: role 'Ops' already exists\n")
    call(app, "PUT", "/access/roles/Ops", privs="VM.Backup", append="1")
    assert call(app, "GET", "/access/roles/Ops") == {"VM.Audit": 1, "VM.Backup": 1}
    assert refused(app, "PUT", "/access/roles/PVEAdmin", privs="VM.Audit").message == (
        "auto-generated role 'PVEAdmin' cannot be modified\n")
    assert refused(app, "POST", "/access/roles", roleid="Bad", privs="VM.Fly").errors == {
        "privs": "invalid format - invalid privilege 'VM.Fly'\n"}
    assert refused(app, "PUT", "/access/roles/Ops", append="1").errors == {
        "privs": "missing property required by 'append'"}


def test_acl_rules_and_messages(app) -> None:
    assert refused(app, "PUT", "/access/acl", path="/", roles="PVEAuditor").errors == dict.fromkeys(
        ("users", "groups", "tokens"), "either 'users', 'groups' or 'tokens' is required.")
    assert refused(app, "PUT", "/access/acl", path="/nowhere", roles="PVEAuditor", users="root@pam").errors == {
        "path": "invalid ACL path '/nowhere'"}
    assert refused(app, "PUT", "/access/acl", path="/", roles="Nope", users="root@pam").message == (
        "ACL update failed: role 'Nope' does not exist\n")
    assert refused(app, "PUT", "/access/acl", path="/", roles="PVEAuditor", users="ghost@pve").message == (
        "ACL update failed: user 'ghost@pve' does not exist\n")


def test_without_permissions_modify_you_may_only_hand_out_what_you_hold(app) -> None:
    call(app, "POST", "/access/users", userid="vmadmin@pve")
    call(app, "PUT", "/access/acl", path="/vms/100", roles="PVEVMAdmin", users="vmadmin@pve")
    vmadmin = Principal("vmadmin@pve")
    call(app, "PUT", "/access/acl", vmadmin, path="/vms/100", roles="PVEVMUser", users="prometheus@pve",
         propagate="0")
    error = refused(app, "PUT", "/access/acl", vmadmin, path="/vms/100", roles="PVEAdmin", users="prometheus@pve")
    assert error.status == 500 and error.message == (
        "ACL update failed: 400 Parameter verification failed.\nrole: Cannot add role 'PVEAdmin' - requires "
        "'Permissions.Modify' or superset of privileges.\n")
    assert refused(app, "PUT", "/access/acl", AUDITOR, path="/", roles="PVEAuditor", users="root@pam").message == (
        "Permission check failed (/, Permissions.Modify)\n")


def test_users_tokens_and_their_round_trip_through_user_cfg(app) -> None:
    call(app, "POST", "/access/users", userid="ops@pve", comment="night: shift", email="ops@example.org")
    # user.cfg writes expire as 0 and reads it back; a comment's ':' is escaped in the file
    assert call(app, "GET", "/access/users/ops@pve") == {
        "enable": 1, "expire": 0, "comment": "night: shift", "email": "ops@example.org", "groups": [],
        "tokens": {}}
    assert refused(app, "POST", "/access/users", userid="ops@pve").message == (
        "create user failed: user 'ops@pve' already exists\n")
    created = call(app, "POST", "/access/users/ops@pve/token/ci", comment="for CI")
    assert created["full-tokenid"] == "ops@pve!ci" and created["info"] == {"privsep": 1, "comment": "for CI"}
    assert len(created["value"]) == 36  # a UUID, as TokenConfig.pm generates
    assert refused(app, "POST", "/access/users/ops@pve/token/ci").errors == {"tokenid": "Token already exists."}
    assert call(app, "PUT", "/access/users/ops@pve/token/ci", delete="comment") == {"privsep": 1, "expire": 0}
    assert refused(app, "GET", "/access/users/nobody@pve").message == "no such user ('nobody@pve')\n"
    assert refused(app, "GET", "/access/users/ops@pve/token/nope").message == (
        "no such token 'nope' for user 'ops@pve'\n")
    text = (Path(app.sandbox.directory) / "access" / "user.cfg").read_text()
    assert "user:ops@pve:1:0:::ops@example.org:night%3A shift::\n" in text
    assert "token:ops@pve!ci:0:1::\n" in text


def test_access_state_survives_a_restart_and_its_files_are_private(tmp_path: Path) -> None:
    app = make(tmp_path)
    call(app, "POST", "/access/roles", roleid="Keeper", privs="VM.Audit")
    call(app, "POST", "/access/users", userid="keeper@pve", password="correct-horse")
    secret = call(app, "POST", "/access/users/keeper@pve/token/tk")["value"]
    call(app, "PUT", "/access/acl", path="/vms", roles="Keeper", users="keeper@pve")
    reopened = make_app(open_or_create(tmp_path / "state", stepped=True)[0], tmp_path / "state")
    assert call(reopened, "GET", "/access/roles/Keeper") == {"VM.Audit": 1}
    store = reopened.access
    assert store.token_valid("keeper@pve!tk", secret) and not store.token_valid("keeper@pve!tk", "x")
    assert reopened.access.password_valid("keeper@pve", "correct-horse")
    for name in ("user.cfg", "token.cfg", "shadow.cfg"):
        path = tmp_path / "state" / "access" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    secrets = (tmp_path / "state" / "access" / "token.cfg").read_text()
    assert secret not in secrets and "keeper@pve!tk " in secrets  # only a hash is kept


def test_a_new_token_authenticates_over_https_until_it_is_deleted(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        admin = {"Authorization": "PVEAPIToken=" + sb.admin_token}
        url = sb.url
        assert requests.post(f"{url}/access/users", data={"userid": "ci@pve"}, headers=admin, verify=False,
                             timeout=30).status_code == 200
        made = requests.post(f"{url}/access/users/ci@pve/token/deploy", data={"privsep": "0"}, headers=admin,
                             verify=False, timeout=30).json()["data"]
        mine = {"Authorization": f"PVEAPIToken={made['full-tokenid']}={made['value']}"}
        assert requests.get(f"{url}/version", headers=mine, verify=False, timeout=30).status_code == 200
        perms = requests.get(f"{url}/access/permissions", headers=mine, verify=False, timeout=30).json()["data"]
        assert perms == {}  # a user with no ACL: nothing anywhere
        assert requests.delete(f"{url}/access/users/ci@pve/token/deploy", headers=admin, verify=False,
                               timeout=30).status_code == 200
        reply = requests.get(f"{url}/version", headers=mine, verify=False, timeout=30)
        assert (reply.status_code, reply.reason) == (401, "Authentication failed!")


# -- restore (pve-container src/PVE/API2/LXC.pm create_vm) ---------------------------------------------------


@pytest.mark.parametrize("version", ["9", "8"])
def test_restoring_a_privileged_container_needs_sys_modify_on_root_since_9(tmp_path: Path, version: str) -> None:
    app = make(tmp_path, version)
    with app.cluster.lock:
        app.cluster.guests[301].config["unprivileged"] = "0"  # privileged: no 'unprivileged: 1' (300 keeps it)
    for vmid in (300, 301):
        call(app, "POST", "/nodes/pve1/vzdump", vmid=str(vmid), storage="backup-monitoring")
    call(app, "POST", "/access/users", userid="restorer@pve")
    call(app, "PUT", "/access/acl", path="/vms", roles="PVEVMAdmin", users="restorer@pve")
    call(app, "PUT", "/access/acl", path="/storage", roles="PVEDatastoreAdmin", users="restorer@pve")
    restorer = Principal("restorer@pve")
    archives = {e["vmid"]: e["volid"] for e in call(app, "GET", "/nodes/pve1/storage/backup-monitoring/content")}
    upid = call(app, "POST", "/nodes/pve1/lxc", restorer, vmid="7300", ostemplate=archives[300], restore="1")
    assert upid.startswith("UPID:pve1:")
    if version == "9":
        assert refused(app, "POST", "/nodes/pve1/lxc", restorer, vmid="7301", ostemplate=archives[301],
                       restore="1").message == "Permission check failed (/, Sys.Modify)\n"
    else:
        assert call(app, "POST", "/nodes/pve1/lxc", restorer, vmid="7301", ostemplate=archives[301],
                    restore="1").startswith("UPID:pve1:")


def test_restoring_needs_vm_allocate_or_vm_backup_over_an_existing_guest(app) -> None:
    call(app, "POST", "/access/users", userid="backupper@pve")
    call(app, "PUT", "/access/acl", path="/vms/101", roles="PVEVMUser", users="backupper@pve")
    call(app, "PUT", "/access/acl", path="/storage", roles="PVEDatastoreUser", users="backupper@pve")
    backupper = Principal("backupper@pve")
    volid = next(e["volid"] for e in call(app, "GET", CONTENT) if e["vmid"] == 101)
    assert refused(app, "POST", "/nodes/pve1/qemu", backupper, vmid="7101", archive=volid).message == (
        "Permission check failed\n")  # raise_perm_exc() without a path: no VM.Allocate anywhere
    # over the existing guest with force, VM.Backup is enough: the permission check passes, the engine decides
    try:
        outcome = call(app, "POST", "/nodes/pve1/qemu", backupper, vmid="101", archive=volid, force="1")
    except ApiError as exc:
        outcome = exc.message
    assert not str(outcome).startswith("Permission check failed"), outcome
    assert refused(app, "POST", "/nodes/pve1/qemu", vmid="7102", archive=volid, scsi0="local:1").errors == {
        "scsi0": "option conflicts with option 'archive'"}
