"""`vzkeep verify` end to end: one pass over real compressed archives (the node's zstd, gzip, lzop, bzip2
are real tools here: these tests fail, never skip, when one is missing), the results store, and the CLI.

Archives are written with the project's writers and compressed by the real tools; corruptions are made on
the files, the way disks and networks damage them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vzkeep import verify
from vzkeep.cli import verify as verify_cli
from vzkeep.cli.common import VzkeepGroup
from vzkeep.pve import archive, ct_tar, vma
from vzkeep.pve.decompress import DecompressedStream, ExactReader, compressed_writer

T = 1767578403  # 2026-01-05 02:00:03 UTC: the time in the archive names (read in UTC unless a case says)
CLUSTER = 65536
RNG = random.Random(6)
# clusters: random, zero, half random, so some extents carry data and some clusters are mask 0
DISK = b"".join(
    (RNG.randbytes(CLUSTER), bytes(CLUSTER), RNG.randbytes(CLUSTER // 2) + bytes(CLUSTER // 2))[i % 3]
    for i in range(70)
)
COMPRESS_OPTION = {None: 0, "zst": "zstd", "gz": "gzip", "lzo": "lzo"}


def _name(guest: str, compression: str | None, *, when: int = T, tz: str = "UTC", vmid: int = 100) -> str:
    return archive.archive_name(guest, vmid, when, COMPRESS_OPTION[compression], tz=tz)


def _vma_bytes(ctime: int = T + 4, disk: bytes = DISK) -> bytes:
    out = io.BytesIO()
    device = vma.VmaDevice("drive-scsi0", len(disk), lambda i: disk[i * CLUSTER : (i + 1) * CLUSTER])
    config = b"name: vm100\nscsi0: local-lvm:vm-100-disk-0,size=5M\n"
    vma.write_vma(out, config=config, devices=[device], ctime=ctime, uuid=b"\x01" * 16)
    return out.getvalue()


def _tar_bytes(mtime: int = T + 2) -> bytes:
    out = io.BytesIO()
    files = [("etc/hostname", b"ct101\n"), ("usr/lib/blob", RNG.randbytes(200_000)), ("var/log/empty", b"")]
    ct_tar.write_ct_tar(out, config=b"arch: amd64\nhostname: ct101\n", files=files, mtime=mtime)
    return out.getvalue()


def _store(path: Path, raw: bytes, compression: str | None) -> Path:
    with compressed_writer(path, compression) as out:
        out.write(raw)
    return path


def _vm(tmp: Path, compression: str | None = "zst", *, raw: bytes | None = None, name: str | None = None) -> Path:
    return _store(tmp / (name or _name("qemu", compression)), raw if raw is not None else _vma_bytes(), compression)


def _ct(tmp: Path, compression: str | None = "zst", *, raw: bytes | None = None, name: str | None = None) -> Path:
    return _store(tmp / (name or _name("lxc", compression)), raw if raw is not None else _tar_bytes(), compression)


def _check(path: Path, tz: str = "UTC") -> verify.VerifyResult:
    return verify.verify_archive(path, tz=tz)


def test_the_verifier_imports_only_the_standard_library():
    """It must run on a PVE node, which has Python 3 (ceph-common, a dependency of
    pve-storage, needs it) but none of our dependencies."""
    probe = (
        "import sys; before = set(sys.modules); "
        "import vzkeep.verify, vzkeep.pve.vma, vzkeep.pve.ct_tar, vzkeep.pve.decompress; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before if not m.startswith('_sysconfigdata')}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'vzkeep'}))"
    )
    root = str(Path(__file__).parent.parent)
    # -S: no site-packages at all, as on a node; the package comes from the source tree only
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, check=True,
                         cwd=root, env={"PYTHONPATH": root})
    assert out.stdout.strip() == "[]"


# -- sound archives ------------------------------------------------------------------------------------------

ROUND_TRIPS = [(guest, comp) for guest in ("qemu", "lxc") for comp in (None, "zst", "gz", "lzo")]


@pytest.mark.parametrize(("guest", "compression"), ROUND_TRIPS, ids=[f"{g}-{c or 'plain'}" for g, c in ROUND_TRIPS])
def test_sound_archives_verify_ok_with_the_files_sha256(tmp_path, guest, compression):
    path = _vm(tmp_path, compression) if guest == "qemu" else _ct(tmp_path, compression)
    result = _check(path)
    assert result.ok and result.problems == []
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.bytes_read == result.size == path.stat().st_size
    assert (result.format, result.compression, result.vmid) == ("vma" if guest == "qemu" else "tar", compression, 100)
    assert result.content_ctime == (T + 4 if guest == "qemu" else T + 2)


def test_bz2_archives_are_read_too(tmp_path):
    # vzdump never writes .bz2, but PVE lists and restores it (pve-storage Storage.pm $BACKUP_EXT_RE_2)
    path = _store(tmp_path / (_name("qemu", None) + ".bz2"), _vma_bytes(), "bz2")
    assert _check(path).ok


def test_compressed_writer_output_is_what_the_real_tool_decompresses(tmp_path):
    path = _vm(tmp_path, "zst")
    plain = subprocess.run(["zstd", "-q", "-d", "-c", str(path)], capture_output=True, check=True).stdout
    assert plain == _vma_bytes()


@pytest.mark.parametrize("damaged", [False, True], ids=["sound", "flipped byte"])
def test_a_stream_that_is_not_a_file_is_fed_by_copying(tmp_path, damaged):
    """Pipes and sockets cannot be spliced from: the feeder copies, with the same hash and verdict."""
    raw = bytearray(_vm(tmp_path, "zst").read_bytes())
    if damaged:
        raw[len(raw) // 2] ^= 0xFF
    digest = hashlib.sha256()
    with DecompressedStream(io.BytesIO(bytes(raw)), "zst", on_chunk=digest.update) as stream:
        plain = ExactReader(stream).read(1 << 30)
        problems = stream.close()
    assert digest.hexdigest() == hashlib.sha256(raw).hexdigest() and stream.raw_bytes == len(raw)
    assert (problems == [] and plain == _vma_bytes()) if not damaged else "zstd:" in problems[0]


# -- corruption: every case found, named, located --------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(raw)


def _truncate(path: Path, keep: float) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _zero_block(path: Path, at: float) -> None:
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * at) // 4096 * 4096
    raw[start : start + 4096] = bytes(4096)
    path.write_bytes(raw)


def _vma_with_bad_extent_md5() -> bytes:
    raw = bytearray(_vma_bytes())
    header_size = struct.unpack_from(">I", raw, 56)[0]
    raw[header_size + 100] ^= 0x01  # a blockinfo of extent 0, MD5 left as it was
    return bytes(raw)


def _vma_without_a_cluster() -> tuple[bytes, int]:
    """Drop the blockinfo of an all-zero cluster from extent 0 and re-seal the extent's MD5 (vma_spec.txt)."""
    raw = bytearray(_vma_bytes())
    at = struct.unpack_from(">I", raw, 56)[0]
    infos = list(struct.unpack_from(">59Q", raw, at + 40))
    slot = next(i for i, info in enumerate(infos) if info and info >> 48 == 0)
    cluster = infos[slot] & 0xFFFFFFFF
    infos[slot] = 0
    struct.pack_into(">59Q", raw, at + 40, *infos)
    head = bytearray(raw[at : at + 512])
    head[24:40] = bytes(16)
    raw[at + 24 : at + 40] = hashlib.md5(head).digest()
    return bytes(raw), cluster


def _wrong_magic() -> bytes:
    raw = bytearray(_vma_bytes())
    raw[0:4] = b"VMX\0"
    return bytes(raw)


MISSING, MISSING_CLUSTER = _vma_without_a_cluster()

CORRUPTIONS = [
    # (case, make the archive in tmp, damage it, words expected in one problem)
    ("flipped byte in .vma.zst", lambda d: _vm(d, "zst"), lambda p: _flip(p, p.stat().st_size // 2),
     ["zstd:", "corrupt"]),
    ("flipped byte in .tar.zst", lambda d: _ct(d, "zst"), lambda p: _flip(p, p.stat().st_size // 2),
     ["zstd:", "corrupt"]),
    ("flipped byte in .vma.gz", lambda d: _vm(d, "gz"), lambda p: _flip(p, p.stat().st_size // 2),
     ["gzip:", "corrupt"]),
    ("flipped byte in .vma.lzo", lambda d: _vm(d, "lzo"), lambda p: _flip(p, p.stat().st_size // 2),
     ["lzop:", "corrupt"]),
    ("truncated .vma.zst", lambda d: _vm(d, "zst"), lambda p: _truncate(p, 0.6), ["zstd:", "truncated"]),
    ("truncated .tar.zst", lambda d: _ct(d, "zst"), lambda p: _truncate(p, 0.6), ["zstd:", "truncated"]),
    ("truncated .tar.gz", lambda d: _ct(d, "gz"), lambda p: _truncate(p, 0.6), ["gzip:", "truncated"]),
    ("truncated .vma.lzo", lambda d: _vm(d, "lzo"), lambda p: _truncate(p, 0.6), ["lzop:", "truncated"]),
    ("truncated plain .vma", lambda d: _vm(d, None), lambda p: _truncate(p, 0.6),
     ["VMA: extent 0: truncated", "at byte"]),
    ("truncated plain .tar", lambda d: _ct(d, None), lambda p: _truncate(p, 0.6),
     ["tar: truncated inside member './usr/lib/blob'", "at byte"]),
    ("zeroed 4 KiB block in .vma.zst", lambda d: _vm(d, "zst"), lambda p: _zero_block(p, 0.5), ["zstd:"]),
    ("zeroed 4 KiB block in .tar.zst", lambda d: _ct(d, "zst"), lambda p: _zero_block(p, 0.5), ["zstd:"]),
    ("zeroed 4 KiB block over the VMA header", lambda d: _vm(d, None), lambda p: _zero_block(p, 0.0),
     ["VMA: not a VMA archive", "at byte 0"]),
    ("wrong VMA magic", lambda d: _vm(d, None, raw=_wrong_magic()), lambda p: None,
     ["VMA: not a VMA archive: magic is b'VMX\\x00'", "at byte 0"]),
    ("bad extent MD5 in plain .vma", lambda d: _vm(d, None, raw=_vma_with_bad_extent_md5()), lambda p: None,
     ["VMA: extent 0: header MD5 mismatch", f"at byte {struct.unpack_from('>I', _vma_bytes(), 56)[0]}"]),
    ("missing cluster in plain .vma", lambda d: _vm(d, None, raw=MISSING), lambda p: None,
     ["VMA: incomplete archive", "drive-scsi0: 1 of 70 clusters missing", f"first: {MISSING_CLUSTER}"]),
    ("missing cluster in .vma.zst", lambda d: _vm(d, "zst", raw=MISSING), lambda p: None,
     ["VMA: incomplete archive", "of the decompressed stream"]),
    ("random file renamed .vma.zst", lambda d: _store(d / _name("qemu", "zst"), os.urandom(50_000), None),
     lambda p: None, ["zstd:", "not valid zstd data"]),
    ("random file renamed .tar.gz", lambda d: _store(d / _name("lxc", "gz"), os.urandom(50_000), None),
     lambda p: None, ["gzip:", "not gzip data"]),
    ("random file renamed .vma", lambda d: _store(d / _name("qemu", None), os.urandom(50_000), None),
     lambda p: None, ["VMA: not a VMA archive", "at byte 0"]),
    ("random file renamed .tar.lzo", lambda d: _store(d / _name("lxc", "lzo"), os.urandom(50_000), None),
     lambda p: None, ["lzop:", "not lzop data"]),
]


@pytest.mark.parametrize(("case", "make", "damage", "words"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corruption_is_found_and_named(tmp_path, case, make, damage, words):
    path = make(tmp_path)
    damage(path)
    result = _check(path)
    assert not result.ok
    assert any(all(word in problem for word in words) for problem in result.problems), result.problems
    # the pass still covers the whole file: the hash is of every byte, even after an early error
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.bytes_read == path.stat().st_size


def test_a_read_error_is_a_finding_not_a_crash(tmp_path):
    unreadable = tmp_path / _name("qemu", "zst")
    unreadable.mkdir()  # reading fails like a bad sector would: with an OSError from the file system
    result = _check(unreadable)
    assert not result.ok and result.problems == ["read error after 0 bytes: Is a directory"]


def test_the_compressor_verdict_comes_before_the_structure_error_it_causes(tmp_path):
    path = _vm(tmp_path, "zst")
    _truncate(path, 0.5)
    problems = _check(path).problems
    assert problems[0].startswith("zstd:") and any(p.startswith("VMA:") for p in problems[1:])


# -- name and time -------------------------------------------------------------------------------------------

TIMES = [
    # (case, archive named in zone, verified with zone, content time - name time, expect ok)
    ("header 4 s after the name", "UTC", "UTC", 4, True),
    ("header 14 min after the name (slow start)", "UTC", "UTC", 840, True),
    ("header an hour after the name", "UTC", "UTC", 3600, False),
    ("header 10 min before the name", "UTC", "UTC", -600, False),
    ("named in Paris, verified as Paris", "Europe/Paris", "Europe/Paris", 4, True),
    ("named in Paris, verified as UTC", "Europe/Paris", "UTC", 4, False),
]


@pytest.mark.parametrize(("case", "named_tz", "verify_tz", "delta", "ok"), TIMES, ids=[c[0] for c in TIMES])
def test_header_time_must_match_the_name(tmp_path, case, named_tz, verify_tz, delta, ok):
    path = _vm(tmp_path, "zst", raw=_vma_bytes(ctime=T + delta), name=_name("qemu", "zst", tz=named_tz))
    result = _check(path, tz=verify_tz)
    assert result.ok is ok
    if not ok:
        assert result.problems[0].startswith("time mismatch") and "--tz" in result.problems[0]


def test_ct_time_comes_from_the_pct_conf_mtime(tmp_path):
    assert _check(_ct(tmp_path, "gz", raw=_tar_bytes(mtime=T + 3))).ok
    late = _ct(tmp_path, "zst", raw=_tar_bytes(mtime=T + 7200))
    assert "pct.conf mtime" in _check(late).problems[0]


def test_a_non_standard_name_is_checked_without_the_time_rule(tmp_path):
    path = _vm(tmp_path, "zst", raw=_vma_bytes(ctime=1), name="vzdump-qemu-100-before-upgrade.vma.zst")
    result = _check(path)
    assert result.ok and result.vmid is None


def test_a_vma_named_as_a_container_backup_is_a_finding(tmp_path):
    path = _vm(tmp_path, "zst", name=_name("lxc", "zst").replace(".tar.", ".vma."))
    assert "VMs (qemu) only" in _check(path).problems[0]


def test_a_file_that_is_not_a_backup_name_is_a_finding(tmp_path):
    path = _vm(tmp_path, "zst", name="disk-backup.vma.zst")
    result = _check(path)
    assert not result.ok and result.problems[0].startswith("name:")
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# -- the results store ---------------------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch):
    """Count real reads: every call of verify_archive reads the whole file."""
    calls: list[str] = []
    real = verify.verify_archive

    def spy(path, **kwargs):
        calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(verify, "verify_archive", spy)
    return calls


def test_an_unchanged_archive_is_not_read_again(tmp_path, counted):
    path, store = _vm(tmp_path), verify.ResultStore(tmp_path / "state" / "verify.json")
    first = verify.verify_many([str(path)], store, tz="UTC")
    second = verify.verify_many([str(path)], store, tz="UTC")
    assert len(counted) == 1
    assert not first[0].cached and second[0].cached and second[0].ok
    assert second[0].sha256 == first[0].sha256
    saved = json.loads(store.path.read_text())["archives"][str(path)]
    assert saved["sha256"] == first[0].sha256 and saved["ok"] is True


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("mtime changed", lambda p: os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))),
        ("content replaced", lambda p: _flip(p, p.stat().st_size // 2)),
        ("file replaced by another", lambda p: os.replace(_vm(p.parent / "other", "zst"), p)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_changed_archive_is_read_again(tmp_path, counted, case, change):
    (tmp_path / "other").mkdir()
    path, store = _vm(tmp_path), verify.ResultStore(tmp_path / "verify.json")
    verify.verify_many([str(path)], store, tz="UTC")
    change(path)
    again = verify.verify_many([str(path)], store, tz="UTC")
    assert len(counted) == 2 and not again[0].cached
    assert again[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_force_reads_again(tmp_path, counted):
    path, store = _vm(tmp_path), verify.ResultStore(tmp_path / "verify.json")
    verify.verify_many([str(path)], store, tz="UTC")
    verify.verify_many([str(path)], store, tz="UTC", force=True)
    assert len(counted) == 2


def test_force_finds_silent_change_of_a_plain_vma(tmp_path):
    """VMA data blocks have no checksum (vma_spec.txt); the recorded SHA-256 catches bit rot on re-read."""
    path, store = _vm(tmp_path, None), verify.ResultStore(tmp_path / "verify.json")
    verify.verify_many([str(path)], store, tz="UTC")
    before = path.stat()
    _flip(path, before.st_size - 100)  # inside the last extent's data: structurally invisible
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert verify.verify_many([str(path)], store, tz="UTC")[0].ok  # unchanged by size and mtime: cached
    forced = verify.verify_many([str(path)], store, tz="UTC", force=True)[0]
    assert not forced.ok and "SHA-256 differs" in forced.problems[0]


def test_store_writes_are_atomic_and_merge(tmp_path):
    store = verify.ResultStore(tmp_path / "verify.json")
    a, b = _vm(tmp_path, "zst"), _ct(tmp_path, "gz")
    verify.verify_many([str(a)], store, tz="UTC")
    verify.verify_many([str(b)], verify.ResultStore(tmp_path / "verify.json"), tz="UTC")
    assert set(store.load()) == {str(a), str(b)}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".verify.json")) == []


def test_results_of_pruned_archives_are_forgotten_on_the_next_dir_scan(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    kept, pruned = _vm(dump, "zst"), _ct(dump, "zst")
    results = tmp_path / "state" / "verify.json"
    assert _run(tmp_path, "--dir", str(dump)).exit_code == 0
    pruned.unlink()
    assert _run(tmp_path, "--dir", str(dump)).exit_code == 0
    assert set(verify.load_results(results)) == {str(kept)}


def test_a_damaged_store_is_named(tmp_path):
    path = tmp_path / "verify.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path)):
        verify.ResultStore(path).load()


def test_default_store_location_follows_the_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VZKEEP_STATE_DIR", str(tmp_path))
    assert verify.default_results_path() == tmp_path / "verify.json"
    monkeypatch.delenv("VZKEEP_STATE_DIR")
    assert str(verify.default_results_path()) == "/var/lib/vzkeep/verify.json"


def test_the_exporter_reads_results_by_volid(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    path = _vm(dump, "zst")
    storages = verify.parse_storage_cfg(f"dir: backup-prod\n\tpath {tmp_path}\n\tcontent backup\n")
    volids = verify.volids_for([str(path)], storages)
    verify.verify_many([str(path)], verify.ResultStore(tmp_path / "v.json"), tz="UTC", volids=volids)
    by_volid = verify.results_by_volid(tmp_path / "v.json")
    result = by_volid[f"backup-prod:backup/{path.name}"]
    assert result.ok and result.verified_at > 0 and result.path == str(path)


# -- finding archives ----------------------------------------------------------------------------------------

STORAGE_CFG = """\
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

nfs: offsite-prod
\tserver 10.0.0.5
\texport /backups
\tcontent backup

pbs: pbs1
\tdatastore main
\tserver 10.0.0.6

lvmthin: local-lvm
\tthinpool data
\tvgname pve
"""

STORAGES = [
    ("dir storage uses its path", "local", "/var/lib/vz/dump", None),
    ("nfs without path mounts at /mnt/pve/<id>", "offsite-prod", "/mnt/pve/offsite-prod/dump", None),
    ("pbs holds no files", "pbs1", None, "Proxmox Backup Server"),
    ("lvmthin cannot hold backups", "local-lvm", None, "cannot hold backups"),
]


@pytest.mark.parametrize(("case", "storage_id", "dump", "error"), STORAGES, ids=[c[0] for c in STORAGES])
def test_storage_dump_dirs(case, storage_id, dump, error):
    storage = verify.parse_storage_cfg(STORAGE_CFG)[storage_id]
    if error:
        with pytest.raises(verify.StorageConfigError, match=error):
            storage.dump_dir()
    else:
        assert str(storage.dump_dir()) == dump


def test_storage_cfg_errors_name_the_line():
    with pytest.raises(verify.StorageConfigError, match=r"storage.cfg:2: "):
        verify.parse_storage_cfg("# comment\n\tpath /x\n", "storage.cfg")


def test_find_archives_lists_what_pve_would_list(tmp_path):
    names = [_name("qemu", "zst"), _name("lxc", None, vmid=101)]
    for name in [*names, _name("qemu", "zst")[:-8] + ".log", names[0] + ".notes", names[0][:-4] + ".dat",
                 "README"]:
        (tmp_path / name).write_bytes(b"x")
    assert verify.find_archives(tmp_path) == sorted(str(tmp_path / n) for n in names)


# -- the command ---------------------------------------------------------------------------------------------

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(cls=VzkeepGroup)  # the CLI's error handler, as `vzkeep verify` runs it
    verify_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a second command keeps `verify` a named sub-command
    return app


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    results = ["--results", str(tmp_path / "state" / "verify.json")]
    return runner.invoke(_app(), ["verify", *results, "--tz", "UTC", *args], env=env)


def test_cli_sound_archives_exit_0(tmp_path):
    a, b = _vm(tmp_path, "zst"), _ct(tmp_path, "lzo")
    result = _run(tmp_path, str(a), str(b))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("OK") >= 2 and str(a) in result.stdout
    assert "2 archive(s): 2 OK, 0 corrupt" in result.stdout


def test_cli_corruption_exits_1_and_names_the_problem(tmp_path):
    good, bad = _vm(tmp_path, "zst"), _vm(tmp_path, None, raw=_wrong_magic())
    result = _run(tmp_path, str(good), str(bad))
    assert result.exit_code == 1
    assert "CORRUPT" in result.stdout and "not a VMA archive" in result.stdout
    assert "1 corrupt" in result.stdout


def test_cli_json_and_the_cache_on_the_second_run(tmp_path):
    path = _ct(tmp_path, "zst")
    first = json.loads(_run(tmp_path, "--json", str(path)).stdout)
    second = json.loads(_run(tmp_path, "--json", str(path)).stdout)
    assert first["summary"] == {"total": 1, "ok": 1, "corrupt": 0, "cached": 0}
    assert second["summary"]["cached"] == 1 and second["archives"][0]["cached"] is True
    assert second["archives"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_dir_and_storage(tmp_path):
    dump = tmp_path / "nas" / "dump"
    dump.mkdir(parents=True)
    _vm(dump, "gz")
    _ct(dump, "zst")
    cfg = tmp_path / "storage.cfg"
    cfg.write_text(f"nfs: offsite-prod\n\tpath {tmp_path / 'nas'}\n\tcontent backup\n")
    by_dir = json.loads(_run(tmp_path, "--json", "--dir", str(dump), "--storage-cfg", str(cfg)).stdout)
    by_storage = json.loads(_run(tmp_path, "--json", "--force", "--storage", "offsite-prod",
                                 "--storage-cfg", str(cfg)).stdout)
    assert by_dir["summary"]["total"] == by_storage["summary"]["total"] == 2
    assert all(a["volid"].startswith("offsite-prod:backup/vzdump-") for a in by_storage["archives"])


USAGE_ERRORS = [
    ("nothing to verify", [], "nothing to verify"),
    ("missing file", ["/nonexistent/vzdump-qemu-100-2026_01_05-02_00_03.vma.zst"], "no such file"),
    ("not an archive name", ["{tmp}/notes.txt"], "not a vzdump archive name"),
    ("unknown storage", ["--storage", "nope", "--storage-cfg", "{tmp}/storage.cfg"], "no such storage"),
    ("pbs storage", ["--storage", "pbs1", "--storage-cfg", "{tmp}/storage.cfg"], "Proxmox Backup Server"),
    ("missing storage.cfg", ["--storage", "local", "--storage-cfg", "{tmp}/absent.cfg"], "--storage-cfg"),
    ("unknown time zone", ["--tz", "Mars/Olympus", "{tmp}/notes.txt"], "unknown time zone"),
]


@pytest.mark.parametrize(("case", "args", "message"), USAGE_ERRORS, ids=[c[0] for c in USAGE_ERRORS])
def test_cli_usage_errors_exit_2_with_what_is_allowed(tmp_path, case, args, message):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "storage.cfg").write_text(STORAGE_CFG)
    result = _run(tmp_path, *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_without_the_decompressor_exits_2_and_says_what_to_install(tmp_path):
    path = _vm(tmp_path, "zst")
    result = _run(tmp_path, str(path), env={"PATH": str(tmp_path / "empty-bin")})
    assert result.exit_code == 2
    assert "zstd is not installed" in result.stderr and "'zstd' package" in result.stderr


def test_cli_unwritable_results_store_exits_2(tmp_path):
    path = _vm(tmp_path, "zst")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(_app(), ["verify", "--results", str(blocker / "verify.json"), str(path)])
    assert result.exit_code == 2 and "--results" in result.stderr
