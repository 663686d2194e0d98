"""The sandbox's vzdump engine, without HTTP: archives, sidecars, logs, locks, pruning, failures
(pve-manager ``PVE/VZDump.pm``, pve-storage ``src/PVE/Storage.pm`` and ``Plugin.pm``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
from pathlib import Path

import pytest
import zstandard

from vzkeep.pve import ct_tar, vma
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage
from vzkeep.sandbox.pveformat import command_line, format_size, render_notes
from vzkeep.sandbox.settings import Settings
from vzkeep.sandbox.tasks import PveError

# 2025-06-10 12:00:00 UTC = 14:00 in Europe/Paris (CEST, UTC+2)
T0 = 1749556800


def make_cluster(tmp_path: Path, nodes: tuple[str, ...] = ("pve1",), tz: str = "Europe/Paris") -> Cluster:
    cluster = Cluster(name="homelab")
    for name in nodes:
        cluster.nodes[name] = Node(name, timezone=tz)
    cluster.storages["local"] = Storage("local", "dir", str(tmp_path / "local"))
    cluster.pools["prod"] = Pool("prod")
    cluster.guests[100] = Guest(100, "web", "qemu", nodes[0], pool="prod", disk_bytes=8 * 1024**3)
    cluster.guests[101] = Guest(101, "dns", "lxc", nodes[0], pool="prod", disk_bytes=4 * 1024**3)
    cluster.clock_epoch = T0
    return cluster


def make_sandbox(tmp_path: Path, cluster: Cluster | None = None, **settings) -> Sandbox:
    cluster = cluster or make_cluster(tmp_path)
    return Sandbox.create(tmp_path / "state", cluster, stepped=True, settings=Settings(**settings))


def dump_dir(sb: Sandbox, sid: str = "local", node: str = "pve1") -> Path:
    return sb.dump_dir(sid, node)


def files(sb: Sandbox, sid: str = "local", node: str = "pve1") -> list[str]:
    d = dump_dir(sb, sid, node)
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def log_of(sb: Sandbox, upid: str) -> list[str]:
    return sb.tasks.log_lines(upid)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_writes_real_compressed_archives_named_in_local_time(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    upid = sb.vzdump("pve1", {"pool": "prod", "storage": "local", "compress": "zstd"}, "root@pam")
    assert upid.startswith("UPID:pve1:") and ":vzdump::root@pam:" in upid  # two guests -> empty id
    names = files(sb)
    # 14:00:00 local (UTC+2) for the VM; the CT starts when the VM's backup ends (8 GiB / 200 MiB/s = 41 s)
    assert names == [
        "vzdump-lxc-101-2025_06_10-14_00_41.log", "vzdump-lxc-101-2025_06_10-14_00_41.tar.zst",
        "vzdump-qemu-100-2025_06_10-14_00_00.log", "vzdump-qemu-100-2025_06_10-14_00_00.vma.zst",
    ]
    vm_raw = (dump_dir(sb) / names[3]).read_bytes()
    assert zstandard.get_frame_parameters(vm_raw).has_checksum  # as `zstd` writes it (checksum on by default)
    vm_data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(vm_raw)).read()
    summary = vma.check_vma(io.BytesIO(vm_data))
    assert b"name: web" in summary.header.config
    assert b"#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:" in summary.header.config
    assert [d.name for d in summary.header.devices.values()] == ["drive-scsi0"]
    assert summary.header.devices[1].size == 8 * 64 * 1024  # 64 KiB per GiB by default
    ct_data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((dump_dir(sb) / names[1]).read_bytes())).read()
    ct_summary = ct_tar.check_ct_tar(io.BytesIO(ct_data))
    assert ct_summary.first_member == "./etc/vzdump/pct.conf" and b"hostname: dns" in ct_summary.config
    # realistically compressible: zero blocks are left out of the VMA, text shrinks under zstd
    assert len(vm_raw) < summary.header.devices[1].size / 2 and len(vm_data) > 1.5 * len(vm_raw)


def test_archives_pass_the_real_zstd_and_vzkeep_verifier(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "100,101", "storage": "local", "compress": "zstd"}, "root@pam")
    for name in files(sb):
        if name.endswith(".zst"):
            result = subprocess.run(["zstd", "-t", "-q", str(dump_dir(sb) / name)], capture_output=True)
            assert result.returncode == 0, result.stderr


def test_task_log_has_pve_lines_and_sidecar_log_is_timestamped(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    upid = sb.vzdump("pve1", {"vmid": "100", "storage": "local", "compress": "zstd", "mode": "snapshot"},
                     "root@pam")
    assert upid.split(":")[6] == "100"  # one guest: the task id is its vmid
    lines = log_of(sb, upid)
    assert lines[0] == "INFO: starting new backup job: vzdump 100 --storage local --compress zstd --mode snapshot"
    for expected in (
        "INFO: Starting Backup of VM 100 (qemu)",
        "INFO: Backup started at 2025-06-10 14:00:00",
        "INFO: status = running",
        "INFO: backup mode: snapshot",
        f"INFO: creating vzdump archive '{dump_dir(sb)}/vzdump-qemu-100-2025_06_10-14_00_00.vma.zst'",
        "INFO: Finished Backup of VM 100 (00:00:41)",
        "INFO: Backup finished at 2025-06-10 14:00:41",
    ):
        assert expected in lines
    assert any(line.startswith("INFO: archive file size: ") and line.endswith("KB") for line in lines)
    assert lines[-2:] == ["INFO: Backup job finished successfully", "TASK OK"]
    sidecar = (dump_dir(sb) / "vzdump-qemu-100-2025_06_10-14_00_00.log").read_text().splitlines()
    assert sidecar[0] == "2025-06-10 14:00:00 INFO: Starting Backup of VM 100 (qemu)"
    assert sidecar[-1] == "2025-06-10 14:00:41 INFO: Backup finished at 2025-06-10 14:00:41"
    status = sb.tasks.status("pve1", upid)
    assert status["status"] == "running"  # the clock has not reached the end of the 41 s backup
    sb.advance(60)
    assert sb.tasks.status("pve1", upid)["exitstatus"] == "OK"


def test_notes_template_and_protected(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "101", "storage": "local", "compress": "zstd",
                       "notes-template": "{{guestname}} ({{vmid}}) on {{node}}\\n{{cluster}} \\\\ x",
                       "protected": "1"}, "root@pam")
    (item,) = sb.listing("local", "pve1")
    archive = dump_dir(sb) / item["volid"].split("/", 1)[1]
    assert Path(str(archive) + ".notes").read_text() == "dns (101) on pve1\nhomelab \\ x"
    assert item["notes"] == "dns (101) on pve1" and item["protected"] == 1
    assert Path(str(archive) + ".protected").read_bytes() == b""


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{guestname}}", "web"),
        ("env=prod {{vmid}}@{{node}}", "env=prod 100@pve1"),
        ("{{unknown}} stays", "{{unknown}} stays"),
        ("a\\nb", "a\nb"),
    ],
)
def test_render_notes(template: str, expected: str) -> None:
    assert render_notes(template, "homelab", "web", "pve1", 100) == expected


def test_render_notes_rejects_unknown_escape() -> None:
    with pytest.raises(ValueError, match="unexpected escape character 't'"):
        render_notes("a\\tb", "c", "g", "n", 100)


@pytest.mark.parametrize(
    ("size", "text"),
    [(1000, "0KB"), (180_000, "175KB"), (5 * 1024**2, "5MB"), (int(1.234 * 1024**3), "1.23GB"),
     (3 * 1024**4, "3.00TB")],
)
def test_format_size_like_vzdump(size: int, text: str) -> None:
    assert format_size(size) == text


def test_command_line_quotes_like_pve() -> None:
    params = {"vmid": "100,101", "storage": "local", "prune-backups": "keep-daily=7,keep-last=3", "all": 0}
    assert command_line(params) == "vzdump 100 101 --storage local --prune-backups 'keep-daily=7,keep-last=3' --all 0"


@pytest.mark.parametrize(
    ("compress", "suffix", "opener"),
    [
        ("0", ".vma", lambda b: b),
        ("gzip", ".vma.gz", gzip.decompress),
        ("zstd", ".vma.zst", lambda b: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b)).read()),
        ("lzo", ".vma.lzo", lambda b: subprocess.run(["lzop", "-d", "-c"], input=b, capture_output=True,
                                                     check=True).stdout),
    ],
)
def test_compression_formats(tmp_path: Path, compress: str, suffix: str, opener) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local", "compress": compress}, "root@pam")
    (archive,) = [n for n in files(sb) if not n.endswith(".log")]
    assert archive.endswith(suffix)
    vma.check_vma(io.BytesIO(opener((dump_dir(sb) / archive).read_bytes())))


@pytest.mark.parametrize(
    ("name", "params", "node"),
    [
        ("node option names another node", {"vmid": "100", "node": "pve2"}, "pve1"),
        ("the guests live elsewhere", {"vmid": "100"}, "pve2"),
    ],
)
def test_ok_instead_of_a_task(tmp_path: Path, name: str, params: dict, node: str) -> None:
    sb = make_sandbox(tmp_path, make_cluster(tmp_path, nodes=("pve1", "pve2")))
    assert sb.vzdump(node, {**params, "storage": "local"}, "root@pam") == "OK", name
    assert sb.tasks.list_node(node)[1] == 0 and files(sb) == []


def test_all_on_a_node_skips_external_guests(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, nodes=("pve1", "pve2"))
    cluster.guests[200] = Guest(200, "far", "qemu", "pve2")
    sb = make_sandbox(tmp_path, cluster)
    upid = sb.vzdump("pve2", {"all": "1", "storage": "local"}, "root@pam")
    lines = log_of(sb, upid)
    assert "INFO: skip external VMs: 100 101" in lines
    # `local` is a dir storage: the archive is on pve2's own disk, not on pve1's
    assert [n for n in files(sb, node="pve2") if not n.endswith(".log")] == ["vzdump-qemu-200-2025_06_10-14_00_00.vma"]
    assert files(sb, node="pve1") == []


def test_locked_guest_fails_alone_and_job_ends_with_errors(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.lock_guest(100, "snapshot")
    upid = sb.vzdump("pve1", {"pool": "prod", "storage": "local"}, "root@pam")
    lines = log_of(sb, upid)
    assert "ERROR: Backup of VM 100 failed - VM is locked (snapshot)" in lines
    assert lines[-2:] == ["INFO: Backup job finished with errors", "TASK ERROR: job errors"]
    names = files(sb)
    # the failed guest still gets its .log sidecar (the lock is taken after the temp log opens)
    assert "vzdump-qemu-100-2025_06_10-14_00_00.log" in names
    assert not any(n.startswith("vzdump-qemu-100") and ".vma" in n for n in names)
    assert any(n.endswith(".tar") for n in names)  # the next guest was backed up
    sb.advance(3600)
    assert sb.tasks.status("pve1", upid)["exitstatus"] == "job errors"


def test_ct_lock_message(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.lock_guest(101, "backup")
    upid = sb.vzdump("pve1", {"vmid": "101", "storage": "local"}, "root@pam")
    assert "ERROR: Backup of VM 101 failed - CT is locked (backup)" in log_of(sb, upid)


def test_orphan_vmid_fails_visibly_without_sidecar(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    upid = sb.vzdump("pve1", {"vmid": "100,105", "storage": "local"}, "root@pam")
    lines = log_of(sb, upid)
    assert "ERROR: Backup of VM 105 failed - unable to find VM '105'" in lines
    assert lines[-1] == "TASK ERROR: job errors"
    assert not any("-105-" in n for n in files(sb))


def test_unknown_storage_fails_the_task(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    upid = sb.vzdump("pve1", {"vmid": "100", "storage": "nope"}, "root@pam")
    assert log_of(sb, upid)[-1] == "TASK ERROR: unable to get storage info for 'nope' - storage 'nope' does not exist"


def test_storage_full_fails_with_enospc_and_keeps_old_archives(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    params = {"vmid": "100", "storage": "local", "compress": "zstd", "prune-backups": "keep-last=1"}
    sb.vzdump("pve1", params, "root@pam")
    sb.advance(86400)
    before = {n: sha(dump_dir(sb) / n) for n in files(sb)}
    used = sum((dump_dir(sb) / n).stat().st_size for n in before)
    sb.set_capacity("local", used + 50_000)  # room for the logs, not for another archive
    upid = sb.vzdump("pve1", params, "root@pam")
    lines = log_of(sb, upid)
    assert "ERROR: Backup of VM 100 failed - vma_queue_write: write error - No space left on device" in lines
    assert not any("prune older" in line or "removing" in line for line in lines)  # nothing pruned
    assert lines[-1] == "TASK ERROR: job errors"
    after = files(sb)
    assert not any(n.endswith(".dat") for n in after)
    assert {n: sha(dump_dir(sb) / n) for n in before} == before  # byte-identical
    assert [n for n in after if n not in before] == ["vzdump-qemu-100-2025_06_11-14_00_00.log"]
    status = sb.storage_status("local", "pve1")
    assert status["total"] == used + 50_000 and status["avail"] == status["total"] - status["used"]


def test_fill_storage_makes_the_ct_writer_fail(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.set_capacity("local", 10 * 1024**2)
    sb.fill_storage("local", 10 * 1024**2 - 1000)
    upid = sb.vzdump("pve1", {"vmid": "101", "storage": "local", "compress": "zstd"}, "root@pam")
    assert ("ERROR: Backup of VM 101 failed - zstd: error 70 : Write error : cannot write block : "
            "No space left on device") in log_of(sb, upid)
    assert sb.storage_status("local", "pve1")["avail"] < 1000
    sb.fill_storage("local", 0)
    assert sb.storage_status("local", "pve1")["used"] < 1000


def test_second_job_waits_for_the_global_lock(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, throughput=1024**2)  # 8 GiB at 1 MiB/s: a 2h16m backup
    first = sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    sb.advance(60)
    second = sb.vzdump("pve1", {"vmid": "101", "storage": "local"}, "root@pam")
    lines = log_of(sb, second)
    assert lines[:2] == ["INFO: trying to get global lock - waiting...", "INFO: got global lock"]
    first_end = sb.tasks.find(first).endtime
    assert f"INFO: Backup started at {_local(first_end)}" in lines
    assert lines[-1] == "TASK OK"


def test_global_lock_timeout_leaves_no_trailer(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, throughput=1024**2)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    second = sb.vzdump("pve1", {"vmid": "101", "storage": "local", "lockwait": "1"}, "root@pam")
    assert log_of(sb, second) == [
        "INFO: trying to get global lock - waiting...",
        "ERROR: can't acquire lock '/var/run/vzdump.lock' - got timeout",
    ]
    sb.advance(120)
    assert sb.tasks.status("pve1", second)["exitstatus"] == "unexpected status"
    assert sb.tasks.list_node("pve1", errors=True)[0][0]["upid"] == second
    assert not any("-101-" in n for n in files(sb))


def test_jobs_on_different_nodes_run_in_parallel(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, nodes=("pve1", "pve2"))
    cluster.guests[101].node = "pve2"
    sb = make_sandbox(tmp_path, cluster, throughput=1024**2)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    other = sb.vzdump("pve2", {"vmid": "101", "storage": "local", "lockwait": "0"}, "root@pam")
    assert "INFO: Backup started at 2025-06-10 14:00:00" in log_of(sb, other)
    assert log_of(sb, other)[-1] == "TASK OK"


def _local(epoch: int) -> str:
    from vzkeep.pve.localtime import LocalClock

    return LocalClock("Europe/Paris").strftime("%Y-%m-%d %H:%M:%S", epoch)


@pytest.mark.parametrize(
    ("name", "job", "storage", "kept"),
    [
        ("job wins over storage", "keep-last=2", "keep-last=4", 2),
        ("storage when the job has none", None, "keep-last=3", 3),
        ("keep-all by default", None, None, 5),
        ("job keep-all beats storage", "keep-all=1", "keep-last=1", 5),
    ],
)
def test_retention_precedence(tmp_path: Path, name: str, job: str | None, storage: str | None, kept: int) -> None:
    sb = make_sandbox(tmp_path)
    sb.cluster.storages["local"].prune_backups = storage
    params = {"vmid": "101", "storage": "local"} | ({"prune-backups": job} if job else {})
    for _ in range(5):
        upid = sb.vzdump("pve1", params, "root@pam")
        sb.advance(86400)
    assert len([i for i in sb.listing("local", "pve1")]) == kept, name
    lines = log_of(sb, upid)
    assert any(line.startswith("INFO: prune older backups") for line in lines) == (kept < 5)


def test_prune_after_each_backup_never_touches_protected_or_other_guests(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "101", "storage": "local", "protected": "1"}, "root@pam")
    sb.advance(86400)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    sb.advance(86400)
    for _ in range(3):
        upid = sb.vzdump("pve1", {"vmid": "101", "storage": "local", "prune-backups": "keep-last=1"}, "root@pam")
        sb.advance(86400)
    items = sb.listing("local", "pve1")
    assert [(i["vmid"], i.get("protected", 0)) for i in items] == [(101, 1), (101, 0), (100, 0)]
    lines = log_of(sb, upid)
    assert "INFO: prune older backups with retention: keep-last=1" in lines
    assert "INFO: pruned 1 backup(s) not covered by keep-retention policy" in lines
    removed = [line for line in lines if line.startswith("INFO: removing backup 'local:backup/vzdump-lxc-101-")]
    assert len(removed) == 1
    # the removed archive's .log went with it (archive_remove removes its auxiliaries)
    assert len([n for n in files(sb) if n.startswith("vzdump-lxc-101") and n.endswith(".log")]) == 2


def test_remove_0_enforces_the_max_backup_limit(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    params = {"vmid": "101", "storage": "local", "prune-backups": "keep-last=2", "remove": "0"}
    for _ in range(2):
        sb.vzdump("pve1", params, "root@pam")
        sb.advance(86400)
    upid = sb.vzdump("pve1", params, "root@pam")
    assert ("ERROR: Backup of VM 101 failed - There is a max backup limit of 2 enforced by the target storage "
            "or the vzdump parameters. Either increase the limit or delete old backup(s).") in log_of(sb, upid)
    assert len(sb.listing("local", "pve1")) == 2


def test_listing_shape_sort_and_vmid_filter(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"pool": "prod", "storage": "local", "compress": "zstd"}, "root@pam")
    (dump_dir(sb) / "vzdump-qemu-renamed.vma.zst").write_bytes(b"x")
    (dump_dir(sb) / "notes.txt").write_text("not a backup")
    items = sb.listing("local", "pve1")
    assert [i["volid"] for i in items] == sorted((i["volid"] for i in items), key=str.lower)
    vm = next(i for i in items if i["volid"].endswith("14_00_00.vma.zst"))
    assert vm == {"volid": "local:backup/vzdump-qemu-100-2025_06_10-14_00_00.vma.zst", "format": "vma.zst",
                  "size": vm["size"], "content": "backup", "subtype": "qemu", "ctime": T0, "vmid": 100}
    renamed = next(i for i in items if "renamed" in i["volid"])
    assert "vmid" not in renamed and renamed["subtype"] == "qemu"  # no vmid in a non-standard name
    assert [i["vmid"] for i in sb.listing("local", "pve1", vmid=101)] == [101]
    assert sb.listing("local", "pve1", content="iso") == []


def test_delete_volume_is_an_imgdel_task(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local", "notes-template": "n"}, "root@pam")
    sb.vzdump("pve1", {"vmid": "101", "storage": "local", "protected": "1"}, "root@pam")
    vm, ct = sorted(sb.listing("local", "pve1"), key=lambda i: i["subtype"], reverse=True)
    upid = sb.delete_volume("pve1", "local", vm["volid"], "root@pam")
    assert upid.split(":")[5:7] == ["imgdel", "100@local"]
    assert log_of(sb, upid) == [f"Removed volume '{vm['volid']}'", "TASK OK"]
    assert not any(n.startswith("vzdump-qemu-100") for n in files(sb))  # archive, .log and .notes gone
    upid = sb.delete_volume("pve1", "local", ct["volid"], "root@pam")
    assert log_of(sb, upid)[-1] == (f"TASK ERROR: cannot remove protected volume "
                                    f"'{ct['volid'].split(':', 1)[1]}' on 'local'")
    assert sb.listing("local", "pve1") == [ct]
    with pytest.raises(PveError, match="does not exist"):
        sb.delete_volume("pve1", "local", vm["volid"], "root@pam")


def test_prune_endpoint_dry_run_and_task(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    for _ in range(3):
        sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
        sb.advance(3600)
    marks = sb.prune("pve1", "local", {"prune-backups": "keep-last=1"}, "root@pam", dry_run=True)
    assert [m["mark"] for m in marks] == ["remove", "remove", "keep"]
    assert len(sb.listing("local", "pve1")) == 3
    upid = sb.prune("pve1", "local", {"prune-backups": "keep-last=1", "vmid": "100"}, "root@pam")
    assert upid.split(":")[5:7] == ["prunebackups", "100@local"]
    assert log_of(sb, upid)[-1] == "TASK OK" and len(sb.listing("local", "pve1")) == 1
    with pytest.raises(PveError, match="no prune-backups options configured for storage 'local'"):
        sb.prune("pve1", "local", {}, "root@pam")


@pytest.mark.parametrize("how", ["flip", "truncate", "zero"])
def test_corrupt_changes_the_file_as_asked(tmp_path: Path, how: str) -> None:
    sb = make_sandbox(tmp_path)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local", "compress": "zstd"}, "root@pam")
    (item,) = sb.listing("local", "pve1")
    path = dump_dir(sb) / item["volid"].split("/", 1)[1]
    before = path.read_bytes()
    result = sb.corrupt(item["volid"], how, offset=5000)
    after = path.read_bytes()
    if how == "flip":
        assert len(after) == len(before) and after[5000] == before[5000] ^ 0xFF
        assert after[:5000] + after[5001:] == before[:5000] + before[5001:]
    elif how == "truncate":
        assert after == before[:5000]
    else:
        assert result["offset"] == 4096 and after[4096:8192] == bytes(4096) and after[:4096] == before[:4096]
    assert subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True).returncode != 0


def test_node_down_refuses_vzdump(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    sb.node_down("pve1")
    with pytest.raises(PveError) as err:
        sb.vzdump("pve1", {"vmid": "100"}, "root@pam")
    assert err.value.status == 595


def test_disk_digest_depends_on_generation_only(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    first = sb.disk_digest(100)
    assert sb.disk_digest(100) == first and sb.disk_digest(101) != first
    sb.touch_disk(100)
    assert sb.disk_digest(100) != first


def test_state_survives_reopen(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path)
    upid = sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    sb.advance(100)
    again = Sandbox.open(tmp_path / "state", stepped=True)
    assert again.now() == T0 + 100
    assert again.tasks.status("pve1", upid)["exitstatus"] == "OK"
    assert len(again.listing("local", "pve1")) == 1


def test_lockwait_zero_fails_at_once(tmp_path: Path) -> None:
    sb = make_sandbox(tmp_path, throughput=1024**2)
    sb.vzdump("pve1", {"vmid": "100", "storage": "local"}, "root@pam")
    second = sb.vzdump("pve1", {"vmid": "101", "storage": "local", "lockwait": "0"}, "root@pam")
    assert log_of(sb, second) == ["ERROR: can't acquire lock '/var/run/vzdump.lock' (wait = 0)"]
    assert sb.tasks.find(second).endtime == T0


def _archived_config(sb: Sandbox, name: str) -> dict[str, str]:
    data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((dump_dir(sb) / name).read_bytes())).read()
    text = (vma.check_vma(io.BytesIO(data)).header.config if ".vma" in name
            else ct_tar.check_ct_tar(io.BytesIO(data)).config).decode()
    return dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_the_archived_config_is_the_config_the_api_shows(tmp_path: Path) -> None:
    # vzdump embeds the guest's config file without its lock (pve-container src/PVE/VZDump/LXC.pm assemble
    # writes etc/vzdump/pct.conf; qemu-server src/PVE/VZDump/QemuServer.pm skips `lock:`), so what
    # GET …/config shows before the backup is what a restore finds in the archive.
    from vzkeep.sandbox.api.guests import guest_config

    cluster = make_cluster(tmp_path)
    cluster.guests[102] = Guest(102, "legacy", "lxc", "pve1", pool="prod", disk_bytes=2 * 1024**3,
                                config={"unprivileged": "0"})  # a privileged CT: PVE writes no such key
    sb = make_sandbox(tmp_path, cluster)
    shown = {vmid: {k: str(v) for k, v in guest_config(g).items() if k != "digest"}
             for vmid, g in sb.cluster.guests.items()}
    sb.vzdump("pve1", {"vmid": "100,101,102", "storage": "local", "compress": "zstd"}, "root@pam")
    archived = {int(n.split("-")[2]): _archived_config(sb, n) for n in files(sb) if n.endswith(".zst")}
    assert archived == shown
    assert archived[101]["unprivileged"] == "1" and "unprivileged" not in archived[102]
    assert archived[101]["rootfs"] == "local-lvm:vm-101-disk-0,size=4G"
