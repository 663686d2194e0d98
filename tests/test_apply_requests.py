"""The exact HTTP requests `sandbox apply` sends per resource kind, as bpg's provider sends them.

Every expected body below is written from bpg/terraform-provider-proxmox v0.111.1 (the file named
in each test): go-querystring encodes the request struct, `url.Values.Encode` sorts the keys,
booleans under an `int` tag are 1/0, pointers left nil are omitted, empty strings behind a pointer
are sent. A recording double stands in for PVE; what PVE does with the requests is tested against
the sandbox (test_sandbox_apply.py).
"""

from __future__ import annotations

import pytest

from tests.helpers.recording_pve import FakePve
from vzkeep.apply.http import PveHttpError, PveRequest
from vzkeep.apply.resources.acl import Acl
from vzkeep.apply.resources.backup_job import BackupJob
from vzkeep.apply.resources.base import Api, Applied, Context
from vzkeep.apply.resources.container import Container
from vzkeep.apply.resources.pool import Pool
from vzkeep.apply.resources.role import Role
from vzkeep.apply.resources.storage import Directory, Nfs
from vzkeep.apply.resources.token import Token
from vzkeep.apply.resources.user import User


@pytest.fixture
def pve() -> FakePve:
    return FakePve()


@pytest.fixture
def ctx(pve: FakePve, tmp_path) -> Context:
    return Context(pve=Api(pve), files_root=tmp_path / "delivered")


def sent(pve: FakePve) -> list[tuple[str, str, str]]:
    return [(r.method, r.target(), r.body() or "") for r in pve.requests]


# -- pool: proxmoxtf/resource/pool/pool.go, proxmox/pools/pool.go ------------------------------------

def test_pool_create_update_delete(pve: FakePve, ctx: Context) -> None:
    inputs = {"poolId": "prod", "comment": "vzkeep environment prod"}
    applied = Pool().create(ctx, inputs)
    assert sent(pve) == [("POST", "pools", "comment=vzkeep+environment+prod&poolid=prod"),
                         ("GET", "pools?poolid=prod", "")]
    assert applied.outputs["poolId"] == "prod"
    pve.requests.clear()
    Pool().update(ctx, applied, inputs, {"poolId": "prod", "comment": "household services"})
    assert sent(pve)[0] == ("PUT", "pools?poolid=prod", "comment=household+services")
    pve.requests.clear()
    Pool().delete(ctx, applied, inputs)
    assert sent(pve) == [("DELETE", "pools?poolid=prod", "")]


def test_pool_without_comment_sends_an_empty_one(pve: FakePve, ctx: Context) -> None:
    # poolCreate passes &comment (schema default ""): a non-nil pointer, so `comment=` is sent.
    Pool().create(ctx, {"poolId": "lab"})
    assert sent(pve)[0] == ("POST", "pools", "comment=&poolid=lab")


# -- storages: fwprovider/storage/*, proxmox/storage/* ------------------------------------------------

PROD_DIR = {"resourceId": "backup-prod", "path": "/mnt/backup/prod", "createBasePath": True, "shared": False,
            "contents": ["backup"], "nodes": ["pve2", "pve1"]}


def test_directory_create_sends_bpg_defaults_and_sorted_sets(pve: FakePve, ctx: Context) -> None:
    Directory().create(ctx, PROD_DIR)
    assert sent(pve) == [
        ("POST", "storage", "content=backup&create-base-path=1&create-subdirs=1&disable=0&nodes=pve1%2Cpve2"
                            "&path=%2Fmnt%2Fbackup%2Fprod&shared=0&storage=backup-prod&type=dir"),
        ("GET", "storage/backup-prod", ""),
    ]


def test_directory_shared_defaults_to_true_in_bpg(pve: FakePve, ctx: Context) -> None:
    # resource_directory.go: "shared" has Default: booldefault.StaticBool(true).
    Directory().create(ctx, {"resourceId": "d", "path": "/srv/d"})
    assert "shared=1" in sent(pve)[0][2].split("&")


def test_directory_update_puts_mutable_fields_only(pve: FakePve, ctx: Context) -> None:
    applied = Directory().create(ctx, PROD_DIR)
    pve.requests.clear()
    Directory().update(ctx, applied, PROD_DIR, {**PROD_DIR, "nodes": ["pve1"]})
    method, target, body = sent(pve)[0]
    assert (method, target) == ("PUT", "storage/backup-prod")
    assert body == "content=backup&create-base-path=1&create-subdirs=1&disable=0&nodes=pve1&shared=0"


def test_directory_backups_block_becomes_prune_backups(pve: FakePve, ctx: Context) -> None:
    # model_backups.go DataStoreWithBackups.String: keep-last, -hourly, -daily, -weekly, -monthly, -yearly.
    Directory().create(ctx, {**PROD_DIR, "backups": {"keepWeekly": 4, "keepDaily": 7, "maxProtectedBackups": 2}})
    fields = sent(pve)[0][2].split("&")
    assert "prune-backups=keep-daily%3D7%2Ckeep-weekly%3D4" in fields
    assert "max-protected-backups=2" in fields


def test_nfs_create(pve: FakePve, ctx: Context) -> None:
    Nfs().create(ctx, {"resourceId": "offsite-prod", "server": "nas.home.arpa", "export": "/volume1/pve-offsite/prod",
                       "nodes": ["pve1", "pve2"], "contents": ["backup"], "options": "vers=4.2"})
    assert sent(pve)[0] == (
        "POST", "storage", "content=backup&create-base-path=1&create-subdirs=1&disable=0"
                           "&export=%2Fvolume1%2Fpve-offsite%2Fprod&nodes=pve1%2Cpve2&options=vers%3D4.2"
                           "&server=nas.home.arpa&storage=offsite-prod&type=nfs")


# -- backup job: fwprovider/cluster/backup/*, proxmox/cluster/backup/* --------------------------------

PROD_JOB = {"resourceId": "vzkeep-prod", "schedule": "02:00", "storage": "backup-prod", "pool": "prod",
            "mode": "snapshot", "compress": "zstd", "enabled": True, "repeatMissed": False,
            "pruneBackups": {"keep-weekly": "4", "keep-daily": "7", "keep-monthly": "3"},
            "notesTemplate": "{{guestname}} (vmid {{vmid}}, env prod)"}


def test_job_create(pve: FakePve, ctx: Context) -> None:
    BackupJob().create(ctx, PROD_JOB)
    assert sent(pve) == [
        ("POST", "cluster/backup",
         "compress=zstd&enabled=1&id=vzkeep-prod&mode=snapshot"
         "&notes-template=%7B%7Bguestname%7D%7D+%28vmid+%7B%7Bvmid%7D%7D%2C+env+prod%29&pool=prod"
         "&prune-backups=keep-daily%3D7%2Ckeep-monthly%3D3%2Ckeep-weekly%3D4&repeat-missed=0"
         "&schedule=02%3A00&storage=backup-prod"),
        ("GET", "cluster/backup/vzkeep-prod", ""),
    ]


def test_job_update_sends_the_whole_plan(pve: FakePve, ctx: Context) -> None:
    applied = BackupJob().create(ctx, PROD_JOB)
    pve.requests.clear()
    changed = {**PROD_JOB, "pruneBackups": {"keep-weekly": "4", "keep-daily": "3", "keep-monthly": "3"}}
    BackupJob().update(ctx, applied, PROD_JOB, changed)
    method, target, body = sent(pve)[0]
    assert (method, target) == ("PUT", "cluster/backup/vzkeep-prod")
    # model.go toAPIUpdate: schedule and storage, then fillCommonFields with every plan value.
    assert body == ("compress=zstd&enabled=1&mode=snapshot"
                    "&notes-template=%7B%7Bguestname%7D%7D+%28vmid+%7B%7Bvmid%7D%7D%2C+env+prod%29&pool=prod"
                    "&prune-backups=keep-daily%3D3%2Ckeep-monthly%3D3%2Ckeep-weekly%3D4&repeat-missed=0"
                    "&schedule=02%3A00&storage=backup-prod")


def test_job_update_deletes_what_the_program_drops_but_keeps_computed_fields(pve: FakePve, ctx: Context) -> None:
    applied = BackupJob().create(ctx, PROD_JOB)
    pve.requests.clear()
    dropped = {k: v for k, v in PROD_JOB.items() if k not in ("notesTemplate", "mode")}
    BackupJob().update(ctx, applied, PROD_JOB, dropped)
    fields = sent(pve)[0][2].split("&")
    # notes-template is Optional only: dropped -> delete. mode is Optional+Computed with UseStateForUnknown:
    # its last read value stays in the plan and is sent again.
    assert "delete=notes-template" in fields
    assert "mode=snapshot" in fields


# -- container: proxmoxtf/resource/container/container.go, proxmox/nodes/containers/* -----------------

S3_CT = {"nodeName": "pve1", "vmId": 303, "poolId": "monitoring", "description": "S3 server",
         "tags": ["vzkeep", "s3"], "unprivileged": True, "startOnBoot": True, "started": True,
         "operatingSystem": {"templateFileId": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                             "type": "debian"},
         "disk": {"datastoreId": "local-lvm", "size": 32}, "memory": {"dedicated": 1024},
         "networkInterfaces": [{"name": "eth0", "bridge": "vmbr0"}],
         "initialization": {"hostname": "s3-state",
                            "ipConfigs": [{"ipv4": {"address": "192.168.1.53/24", "gateway": "192.168.1.1"}}],
                            "userAccount": {"keys": ["ssh-ed25519 AAAA admin@ws"]}}}


def test_container_create_from_template(pve: FakePve, ctx: Context) -> None:
    Container().create(ctx, S3_CT)
    requests = sent(pve)
    assert requests[0] == ("GET", "version", "")
    method, target, body = requests[1]
    assert (method, target) == ("POST", "nodes/pve1/lxc")
    assert body == (
        "arch=amd64&cmode=tty&console=1&cores=1&cpulimit=0&description=S3+server&hostname=s3-state&memory=1024"
        "&net0=bridge%3Dvmbr0%2Chost-managed%3D0%2Cip%3D192.168.1.53%2F24%2Cgw%3D192.168.1.1%2Cname%3Deth0"
        "&onboot=1&ostemplate=local%3Avztmpl%2Fdebian-12-standard_12.7-1_amd64.tar.zst&ostype=debian"
        "&pool=monitoring&protection=0&rootfs=volume%3Dlocal-lvm%3A32&ssh-public-keys=ssh-ed25519+AAAA+admin%40ws"
        "&start=1&storage=local-lvm&swap=0&tags=s3%3Bvzkeep&template=0&tty=2&unprivileged=1&vmid=303")
    upid = "UPID:pve1:00000001:00000001:00000001:vzcreate:303:root@pam%21vzkeep:"
    # tasks.go WaitForTask, then WaitForContainerConfigUnlock, StartContainer (already running), containerRead.
    assert requests[2:] == [
        ("GET", f"nodes/pve1/tasks/{upid}/status", ""),
        ("GET", "nodes/pve1/lxc/303/status/current", ""),
        ("GET", "nodes/pve1/lxc/303/status/current", ""),
        ("GET", "nodes/pve1/lxc/303/config", ""),
        ("GET", "nodes/pve1/lxc/303/status/current", ""),
        ("GET", "nodes/pve1/lxc/303/interfaces", ""),
    ]


def test_container_net_has_no_host_managed_before_pve_9_1(tmp_path) -> None:
    # proxmox/version/capabilities.go SupportContainerHostManaged: >= 9.1.0.
    pve = FakePve(version="8.4.1")
    Container().create(Context(pve=Api(pve), files_root=tmp_path), S3_CT)
    body = dict(pair.split("=", 1) for pair in pve.requests[1].body().split("&"))
    assert body["net0"] == "bridge%3Dvmbr0%2Cip%3D192.168.1.53%2F24%2Cgw%3D192.168.1.1%2Cname%3Deth0"


def test_container_default_disk_size_sends_no_rootfs(pve: FakePve, ctx: Context) -> None:
    Container().create(ctx, {**S3_CT, "disk": {"datastoreId": "local-lvm", "size": 4}})
    assert "rootfs" not in dict(pair.split("=", 1) for pair in pve.requests[1].body().split("&"))


# -- access: proxmoxtf/resource/user.go, role.go, fwprovider/access/* ---------------------------------

def test_user_create_sends_the_empty_defaults(pve: FakePve, ctx: Context) -> None:
    User().create(ctx, {"userId": "vzkeep-exporter@pve", "comment": "exporter", "enabled": True})
    assert sent(pve)[:2] == [
        ("POST", "access/users",
         "comment=exporter&email=&enable=1&expire=0&firstname=&keys=&lastname=&userid=vzkeep-exporter%40pve"),
        ("GET", "access/users/vzkeep-exporter@pve", ""),
    ]


def test_role_privileges_come_in_sdk_set_order(pve: FakePve, ctx: Context) -> None:
    # schema.Set lists elements by HashString (crc32) compared as decimal *strings*: crc32("VM.Backup") =
    # 1137036438, ("Sys.Audit") = 1796500022, ("Datastore.Audit") = 3408047167, ("Pool.Audit") = 885290987,
    # so Pool.Audit, the smallest number, comes last ("885…" > "3408…" as text).
    Role().create(ctx, {"roleId": "VzkeepExporter",
                        "privileges": ["Datastore.Audit", "Pool.Audit", "Sys.Audit", "VM.Backup"]})
    assert sent(pve)[0] == ("POST", "access/roles",
                            "privs=VM.Backup%2CSys.Audit%2CDatastore.Audit%2CPool.Audit&roleid=VzkeepExporter")
    assert sent(pve)[1] == ("GET", "access/roles/VzkeepExporter", "")


def test_acl_create_update_delete_are_puts(pve: FakePve, ctx: Context) -> None:
    inputs = {"path": "/", "roleId": "VzkeepExporter", "userId": "vzkeep-exporter@pve", "propagate": True}
    applied = Acl().create(ctx, inputs)
    assert applied.id == "/?vzkeep-exporter@pve?VzkeepExporter"  # model_acl.go generateID
    Acl().update(ctx, applied, inputs, {**inputs, "propagate": False})
    Acl().delete(ctx, applied, {**inputs, "propagate": False})
    assert sent(pve) == [
        ("PUT", "access/acl", "path=%2F&propagate=1&roles=VzkeepExporter&users=vzkeep-exporter%40pve"),
        ("PUT", "access/acl", "delete=1&path=%2F&propagate=1&roles=VzkeepExporter&users=vzkeep-exporter%40pve"),
        ("PUT", "access/acl", "path=%2F&propagate=0&roles=VzkeepExporter&users=vzkeep-exporter%40pve"),
        ("PUT", "access/acl", "delete=1&path=%2F&propagate=0&roles=VzkeepExporter&users=vzkeep-exporter%40pve"),
    ]


def test_token_create_returns_the_full_value_once(pve: FakePve, ctx: Context) -> None:
    pve.users["vzkeep-exporter@pve"] = {}
    applied = Token().create(ctx, {"userId": "vzkeep-exporter@pve", "tokenName": "exporter", "comment": "exp",
                                   "privilegesSeparation": False})
    assert sent(pve) == [("POST", "access/users/vzkeep-exporter@pve/token/exporter", "comment=exp&privsep=0")]
    user_token, _, secret = applied.outputs["value"].partition("=")
    assert user_token == "vzkeep-exporter@pve!exporter" and len(secret) == 36


# -- errors: proxmox/api/client.go validateResponseCode -------------------------------------------------

def test_errors_are_worded_as_bpg_words_them() -> None:
    err = PveHttpError(400, "Parameter verification failed.",
                       {"errors": {"storage": "storage 'nope' does not exist\n"},
                        "message": "Parameter verification failed.\n"})
    assert str(err) == ("received an HTTP 400 response - Reason: Parameter verification failed. "
                        "(storage: storage 'nope' does not exist)")
    dup = PveHttpError(500, "create storage failed: storage ID 'x' already defined",
                       {"message": "create storage failed: storage ID 'x' already defined\n"})
    assert str(dup) == "received an HTTP 500 response - Reason: create storage failed: storage ID 'x' already defined"
    assert dup.already_exists is False and PveHttpError(500, "pool 'p' does not exist").does_not_exist


def test_get_and_delete_carry_their_values_in_the_query() -> None:
    request = PveRequest("GET", "pools?poolid=prod", (("type", "qemu"),))
    assert request.target() == "pools?poolid=prod&type=qemu" and request.body() is None
    assert PveRequest("POST", "pools", (("poolid", "a b"),)).body() == "poolid=a+b"


def test_a_failed_create_names_pves_answer(pve: FakePve, ctx: Context) -> None:
    pve.storages["backup-prod"] = {"type": "nfs"}
    with pytest.raises(Exception) as raised:
        Directory().create(ctx, PROD_DIR)
    assert str(raised.value) == ("Error creating dir storage: error creating datastore: received an HTTP 500 "
                                 "response - Reason: create storage failed: storage ID 'backup-prod' already defined")


def test_applied_reads_back(pve: FakePve, ctx: Context) -> None:
    applied = Directory().create(ctx, PROD_DIR)
    assert Directory().read(ctx, Applied("backup-prod", {}), PROD_DIR) is not None
    Directory().delete(ctx, applied, PROD_DIR)
    assert Directory().read(ctx, Applied("backup-prod", {}), PROD_DIR) is None


# -- pool membership: fwprovider/pools/pool_membership.go --------------------------------------------

def test_membership_create_and_delete_are_pool_puts(pve: FakePve, ctx: Context) -> None:
    from vzkeep.apply.resources.membership import Membership

    pve.pools["prod"] = {"comment": ""}
    pve.guests[101] = {"type": "qemu", "node": "pve1"}
    inputs = {"poolId": "prod", "vmId": 101}
    applied = Membership().create(ctx, inputs)
    assert applied.id == "prod/vm/101"  # model_pool_membership.go generateID
    assert Membership().read(ctx, applied, inputs) is not None
    Membership().delete(ctx, applied, inputs)
    assert Membership().read(ctx, applied, inputs) is None
    assert [r for r in sent(pve) if r[0] == "PUT"] == [("PUT", "pools?poolid=prod", "allow-move=1&vms=101"),
                                                        ("PUT", "pools?poolid=prod", "delete=1&vms=101")]
