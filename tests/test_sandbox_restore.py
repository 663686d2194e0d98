"""qmrestore / pct restore in the sandbox engine (qemu-server ``PVE/API2/Qemu.pm``
and pve-container ``src/PVE/API2/LXC.pm`` create_vm): check before create,
PVE's errors, cross-node restores, unique MACs, and the restored disk equal to the backed-up one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage
from vzkeep.sandbox.tasks import PveError

T0 = 1749556800  # 2025-06-10 12:00 UTC


def make_sandbox(tmp_path: Path) -> Sandbox:
    cluster = Cluster(name="homelab")
    for name in ("pve1", "pve2"):
        cluster.nodes[name] = Node(name, timezone="Europe/Paris")
    cluster.storages["local"] = Storage("local", "dir", str(tmp_path / "local"), nodes=["pve1"])
    cluster.storages["nas"] = Storage("nas", "nfs", str(tmp_path / "nas"), shared=True)
    cluster.pools["prod"] = Pool("prod")
    cluster.guests[100] = Guest(100, "web", "qemu", "pve1", pool="prod", disk_bytes=8 * 1024**3, tags=["prod"])
    cluster.guests[101] = Guest(101, "dns", "lxc", "pve1", pool="prod", disk_bytes=4 * 1024**3)
    cluster.clock_epoch = T0
    return Sandbox.create(tmp_path / "state", cluster, stepped=True)


def backup(sb: Sandbox, vmid: int, storage: str = "local", compress: str = "zstd") -> str:
    sb.vzdump("pve1", {"vmid": str(vmid), "storage": storage, "compress": compress}, "root@pam")
    sb.advance(120)
    (item,) = [i for i in sb.listing(storage, "pve1", vmid=vmid) if i["ctime"] == max(
        j["ctime"] for j in sb.listing(storage, "pve1", vmid=vmid))]
    return item["volid"]


def restore_params(guest_type: str, vmid: int, volid: str, **extra: str) -> dict[str, str]:
    if guest_type == "qemu":
        return {"vmid": str(vmid), "archive": volid, **extra}
    return {"vmid": str(vmid), "ostemplate": volid, "restore": "1", **extra}


def finished_status(sb: Sandbox, node: str, upid: str) -> str:
    sb.advance(3600)
    return sb.tasks.status(node, upid)["exitstatus"]


@pytest.mark.parametrize(("guest_type", "source", "compress"),
                         [("qemu", 100, "zstd"), ("lxc", 101, "zstd"), ("qemu", 100, "gzip"), ("lxc", 101, "0")])
def test_restored_disk_equals_backed_up_disk(tmp_path: Path, guest_type: str, source: int, compress: str) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, source, compress=compress)
    backed_up = sb.disk_digest(source)
    sb.touch_disk(source)  # the source moves on after its backup
    upid = sb.restore("pve1", guest_type, restore_params(guest_type, 300, volid), "root@pam")
    assert upid.split(":")[5:7] == ["qmrestore" if guest_type == "qemu" else "vzrestore", "300"]
    assert finished_status(sb, "pve1", upid) == "OK"
    restored = sb.cluster.guests[300]
    assert sb.disk_digest(300) == backed_up != sb.disk_digest(source)
    original = sb.cluster.guests[source]
    assert (restored.name, restored.type, restored.disk_bytes) == (original.name, guest_type, original.disk_bytes)
    assert restored.status == "stopped" and restored.node == "pve1"


def test_restored_guest_backs_up_and_restores_again_identically(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.restore("pve1", "qemu", restore_params("qemu", 300, backup(sb, 100)), "root@pam")
    again = backup(sb, 300)
    sb.restore("pve1", "qemu", restore_params("qemu", 301, again), "root@pam")
    assert sb.disk_digest(301) == sb.disk_digest(300) == sb.disk_digest(100)


def test_vm_restore_log_shows_the_vma_header(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, 100)
    upid = sb.restore("pve1", "qemu", restore_params("qemu", 300, volid), "root@pam")
    lines = sb.tasks.log_lines(upid)
    assert re.match(r"restore vma archive: zstd -q -d -c \S+\.vma\.zst \| vma extract -v -r "
                    r"/var/tmp/vzdumptmp\d+\.fifo - /var/tmp/vzdumptmp\d+$", lines[0])
    assert lines[2] == "DEV: dev_id=1 size: 524288 devname: drive-scsi0"
    assert lines[3] == "CTIME: Tue Jun 10 14:00:01 2025"  # local time, one second after the start
    assert lines[-1] == "TASK OK"
    assert sb.cluster.guests[300].config["scsi0"].startswith("local-lvm:vm-300-disk-0")


@pytest.mark.parametrize(("unique", "same_mac"), [("0", True), ("1", False)])
def test_unique_gives_new_macs(tmp_path: Path, unique: str, same_mac: bool) -> None:
    sb = make_sandbox(tmp_path)
    for guest_type, source, key in (("qemu", 100, "net0"), ("lxc", 101, "net0")):
        volid = backup(sb, source)
        sb.restore("pve1", guest_type, restore_params(guest_type, source + 300, volid, unique=unique), "root@pam")
        mac = re.compile(r"([0-9A-F]{2}(?::[0-9A-F]{2}){5})")
        sb.restore("pve1", guest_type, restore_params(guest_type, source + 400, volid), "root@pam")
        first = mac.search(sb.cluster.guests[source + 300].config[key]).group(1)
        plain = mac.search(sb.cluster.guests[source + 400].config[key]).group(1)
        assert (first == plain) is same_mac


@pytest.mark.parametrize(
    ("guest_type", "vmid", "message"),
    [
        ("qemu", 100, "unable to restore VM 100 - VM 100 already exists on node 'pve1'"),
        ("qemu", 101, "unable to restore VM 101 - CT 101 already exists on node 'pve1'"),
        ("lxc", 101, "CT 101 already exists on node 'pve1'"),
        ("lxc", 100, "VM 100 already exists on node 'pve1'"),
    ],
)
def test_existing_vmid_without_force_is_a_500(tmp_path: Path, guest_type: str, vmid: int, message: str) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, 100 if guest_type == "qemu" else 101)
    tasks_before = sb.tasks.list_node("pve1")[1]
    with pytest.raises(PveError) as err:
        sb.restore("pve1", guest_type, restore_params(guest_type, vmid, volid), "root@pam")
    assert err.value.status == 500 and err.value.message == message
    assert sb.tasks.list_node("pve1")[1] == tasks_before  # no task was started


def test_force_overwrites_and_locked_guest_refuses(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, 100)
    original = sb.disk_digest(100)
    sb.touch_disk(100)
    sb.lock_guest(100, "backup")
    with pytest.raises(PveError, match=re.escape("unable to restore VM 100 - VM is locked (backup)")):
        sb.restore("pve1", "qemu", restore_params("qemu", 100, volid, force="1"), "root@pam")
    sb.lock_guest(100, None)
    upid = sb.restore("pve1", "qemu", restore_params("qemu", 100, volid, force="1"), "root@pam")
    assert finished_status(sb, "pve1", upid) == "OK"
    assert sb.disk_digest(100) == original and sb.cluster.guests[100].pool == "prod"


def test_running_container_cannot_be_overwritten(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, 101)
    with pytest.raises(PveError, match="can't overwrite running container"):
        sb.restore("pve1", "lxc", restore_params("lxc", 101, volid, force="1"), "root@pam")


@pytest.mark.parametrize(("guest_type", "source"), [("qemu", 100), ("lxc", 101)])
@pytest.mark.parametrize("how", ["flip", "truncate", "zero"])
def test_corrupt_archive_fails_the_task_and_creates_nothing(tmp_path: Path, guest_type: str, source: int,
                                                            how: str) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, source)
    sb.corrupt(volid, how)
    upid = sb.restore("pve1", guest_type, restore_params(guest_type, 300, volid), "root@pam")
    status = finished_status(sb, "pve1", upid)
    prefix = "command 'set -o pipefail && zstd" if guest_type == "qemu" else "unable to restore CT 300 - command 'tar"
    assert status.startswith(prefix) and status.endswith("failed: exit code 1")
    assert any(line.startswith("zstd: ") for line in sb.tasks.log_lines(upid))  # the tool's complaint
    assert 300 not in sb.cluster.guests
    assert not (tmp_path / "state" / "disks").exists() or not any((tmp_path / "state" / "disks").iterdir())


def test_structural_damage_in_an_uncompressed_vma_is_caught(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    volid = backup(sb, 100, compress="0")
    sb.corrupt(volid, "flip", offset=2)  # the magic: "VMA\0" -> "VM\xbe\0"
    upid = sb.restore("pve1", "qemu", restore_params("qemu", 300, volid), "root@pam")
    lines = sb.tasks.log_lines(upid)
    assert any(line.startswith("vma: restore failed - ") for line in lines)
    assert lines[-1].endswith("failed: exit code 133") and 300 not in sb.cluster.guests


def test_restore_on_another_node_needs_a_visible_storage(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    on_nas = backup(sb, 100, storage="nas")
    upid = sb.restore("pve2", "qemu", restore_params("qemu", 300, on_nas), "root@pam")
    assert finished_status(sb, "pve2", upid) == "OK"
    assert sb.cluster.guests[300].node == "pve2" and sb.disk_digest(300) == sb.disk_digest(100)
    local = backup(sb, 100, storage="local")
    with pytest.raises(PveError, match="storage 'local' is not available on node 'pve2'"):
        sb.restore("pve2", "qemu", restore_params("qemu", 301, local), "root@pam")


@pytest.mark.parametrize(
    ("name", "guest_type", "archive", "message"),
    [
        ("not a backup file", "qemu", "local:backup/notes.txt",
         "unable to restore VM 300 - couldn't determine archive info from 'notes.txt'"),
        ("unknown storage", "qemu", "nope:backup/vzdump-qemu-100-2025_06_10-14_00_00.vma.zst",
         "storage 'nope' does not exist"),
        ("missing volume", "qemu", "local:backup/vzdump-qemu-100-2020_01_01-00_00_00.vma.zst",
         "volume 'local:backup/vzdump-qemu-100-2020_01_01-00_00_00.vma.zst' does not exist"),
        ("a CT archive for a VM", "qemu", "CT", "unable to restore VM 300 - archive '"),
    ],
)
def test_bad_archives_are_refused_before_any_task(tmp_path: Path, name: str, guest_type: str, archive: str,
                                                  message: str) -> None:
    sb = make_sandbox(tmp_path)
    ct_volid = backup(sb, 101)
    (sb.dump_dir("local", "pve1") / "notes.txt").write_text("hello")
    with pytest.raises(PveError) as err:
        sb.restore("pve1", guest_type, restore_params(guest_type, 300, ct_volid if archive == "CT" else archive),
                   "root@pam")
    assert err.value.message.startswith(message), name
    assert 300 not in sb.cluster.guests


def test_pool_parameter_places_the_guest(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.restore("pve1", "lxc", restore_params("lxc", 300, backup(sb, 101), pool="prod", start="1"), "root@pam")
    guest = sb.cluster.guests[300]
    assert guest.pool == "prod" and guest.status == "running"
