"""CT archive writer and checker (vzkeep.pve.ct_tar) against pve-container ``src/PVE/VZDump/LXC.pm``.

GNU tar is the oracle: archives we write must list and extract with it exactly, and archives GNU tar writes
the way vzdump calls it (--sparse, --numeric-owner, --xattrs, long names) must pass the checker. GNU tar is
a real tool here: these tests fail, never skip, when it is missing.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzkeep.pve import ct_tar

MTIME = 1767578403
CONFIG = b"arch: amd64\nhostname: ct101\nrootfs: local-lvm:vm-101-disk-0,size=8G\n"
FIREWALL = b"[OPTIONS]\nenable: 1\n"
BIG = random.Random(3).randbytes(300_000)
FILES = [
    ("etc/hostname", b"ct101\n"),
    ("usr/share/doc/" + "deep/" * 30 + "README", b"a name longer than 100 bytes\n"),
    ct_tar.CtFile("usr/bin/big", size=len(BIG), reader=io.BytesIO(BIG), mode=0o755),
    ct_tar.CtFile("bin/sh", kind="symlink", target="busybox"),
    ct_tar.CtFile("var/empty", kind="dir"),
    ("root/.empty", b""),
]


def _gnu_tar() -> str:
    tar = shutil.which("tar")
    assert tar is not None, "GNU tar is required for these tests (apt install tar)"
    return tar


def _write(files=None, *, firewall: bytes | None = FIREWALL) -> bytes:
    out = io.BytesIO()
    files = FILES if files is None else files
    fresh = [ct_tar.CtFile(f.path, size=f.size, reader=io.BytesIO(BIG), kind=f.kind, mode=f.mode)
             if isinstance(f, ct_tar.CtFile) and f.reader is not None else f for f in files]
    ct_tar.write_ct_tar(out, config=CONFIG, files=fresh, mtime=MTIME, firewall=firewall)
    return out.getvalue()


SAMPLE = _write()


# -- what we write is what GNU tar and vzdump expect ---------------------------------------------------------


def test_gnu_tar_lists_the_config_first_then_the_firewall_then_the_root(tmp_path):
    listing = subprocess.run([_gnu_tar(), "-tf", "-"], input=SAMPLE, capture_output=True, check=True)
    names = listing.stdout.decode().splitlines()
    assert names[:3] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "./"]
    assert "./usr/share/doc/" + "deep/" * 30 + "README" in names
    # tar walks the tree: each directory comes before what it contains
    for name in names[3:]:
        parent = os.path.dirname(name.rstrip("/"))
        assert parent in ("", ".") or parent + "/" in names[: names.index(name)], name


def test_gnu_tar_extracts_identical_files(tmp_path):
    subprocess.run([_gnu_tar(), "-xf", "-", "-C", str(tmp_path)], input=SAMPLE, check=True)
    assert (tmp_path / "etc/vzdump/pct.conf").read_bytes() == CONFIG
    assert (tmp_path / "usr/bin/big").read_bytes() == BIG
    assert os.stat(tmp_path / "usr/bin/big").st_mode & 0o777 == 0o755
    assert os.readlink(tmp_path / "bin/sh") == "busybox"
    assert (tmp_path / "var/empty").is_dir()
    assert int((tmp_path / "etc/hostname").stat().st_mtime) == MTIME


def test_round_trip_through_our_reader():
    config, files = ct_tar.read_ct_files(io.BytesIO(SAMPLE))
    assert config == CONFIG
    assert files["./usr/bin/big"] == BIG and files["./etc/hostname"] == b"ct101\n"
    assert files["./etc/vzdump/pct.fw"] == FIREWALL


def test_check_reports_config_firewall_and_times():
    summary = ct_tar.check_ct_tar(io.BytesIO(SAMPLE))
    assert (summary.first_member, summary.config, summary.firewall) == ("./etc/vzdump/pct.conf", CONFIG, FIREWALL)
    assert summary.config_mtime == MTIME
    assert summary.stream_size == len(SAMPLE)
    with tarfile.open(fileobj=io.BytesIO(SAMPLE)) as tar:
        assert summary.members == len(tar.getmembers())


def test_without_firewall_the_root_follows_the_config():
    with tarfile.open(fileobj=io.BytesIO(_write(firewall=None))) as tar:
        names = tar.getnames()
    assert names[:2] == ["./etc/vzdump/pct.conf", "."]


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z]{1,12}(/[a-z]{1,12}){0,3}", fullmatch=True), st.binary(max_size=3000),
                       max_size=8))
def test_round_trip_of_arbitrary_trees(tree):
    # a path cannot be both a file and a directory
    tree = {p: d for p, d in tree.items() if not any(q.startswith(p + "/") for q in tree)}
    raw = _write(list(tree.items()))
    ct_tar.check_ct_tar(io.BytesIO(raw))
    _config, files = ct_tar.read_ct_files(io.BytesIO(raw))
    assert {name[2:]: data for name, data in files.items() if "/vzdump/" not in name} == tree


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b"])
def test_writer_refuses_paths_outside_the_root(path):
    with pytest.raises(ValueError, match="inside the container root"):
        _write([(path, b"x")])


def test_archives_written_by_gnu_tar_like_vzdump_pass(tmp_path):
    """vzdump's command line (pve-container LXC.pm): sparse files, numeric owners, xattrs, long names."""
    conf_dir = tmp_path / "tmp" / "etc" / "vzdump"
    conf_dir.mkdir(parents=True)
    (conf_dir / "pct.conf").write_bytes(CONFIG)
    root = tmp_path / "root"
    (root / "var" / "lib").mkdir(parents=True)
    with open(root / "var" / "lib" / "sparse.img", "wb") as sparse:  # holes + data: GNU sparse members
        for offset in (0, 5 << 20, 9 << 20):
            sparse.seek(offset)
            sparse.write(b"data" * 1000)
        sparse.truncate(12 << 20)
    long_dir = root / ("x" * 60) / ("y" * 60)
    long_dir.mkdir(parents=True)
    (long_dir / "file").write_bytes(b"long name")
    command = [_gnu_tar(), "cpf", "-", "--totals", "--one-file-system", "-p", "--sparse", "--numeric-owner",
               "--acls", "--xattrs", f"--directory={tmp_path / 'tmp'}", "./etc/vzdump/pct.conf",
               f"--directory={root}", "./"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    summary = ct_tar.check_ct_tar(io.BytesIO(raw))
    assert summary.config == CONFIG and summary.stream_size == len(raw)
    _config, files = ct_tar.read_ct_files(io.BytesIO(raw))
    assert files["./var/lib/sparse.img"] == (root / "var" / "lib" / "sparse.img").read_bytes()


# -- corruption ----------------------------------------------------------------------------------------------


def _member_offset(raw: bytes, name: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return next(m.offset for m in tar.getmembers() if m.name == name)


def _data_end(raw: bytes) -> int:
    """Where the two zero blocks of the end-of-archive marker start."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        last = tar.getmembers()[-1]
        return last.offset_data + -(-last.size // 512) * 512


def _flip(raw: bytes, offset: int) -> bytes:
    out = bytearray(raw)
    out[offset] ^= 0x20
    return bytes(out)


def _zero(raw: bytes, offset: int, size: int = 4096) -> bytes:
    out = bytearray(raw)
    out[offset : offset + size] = bytes(size)
    return bytes(out)


def _wrong_first_member() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("./bin")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    return out.getvalue()


BIG_AT = _member_offset(SAMPLE, "./usr/bin/big")
HOSTNAME_AT = _member_offset(SAMPLE, "./etc/hostname")
END = _data_end(SAMPLE)

CORRUPTIONS = [
    # (case, corrupt stream, words expected in the message, expected offset)
    ("empty stream", b"", ["empty stream"], 0),
    ("random bytes", random.Random(1).randbytes(5000), ["checksum mismatch", "not a tar archive"], 0),
    ("config is not the first member", _wrong_first_member(), ["first member is './bin/'", "pct"], 0),
    ("header byte flipped", _flip(SAMPLE, HOSTNAME_AT + 3), ["checksum mismatch"], HOSTNAME_AT),
    ("truncated inside a member", SAMPLE[: BIG_AT + 512 + 100_000], ["truncated inside member './usr/bin/big'",
     "100000 of 300000"], BIG_AT + 512 + 100_000),
    ("truncated inside a header", SAMPLE[: HOSTNAME_AT + 200], ["truncated", "member header"], HOSTNAME_AT + 200),
    ("truncated before the end marker", SAMPLE[:END], ["truncated", "end-of-archive"], END),
    ("end marker cut in half", SAMPLE[: END + 512], ["end-of-archive marker", "incomplete"], END),
    ("zeroed 4 KiB over a header", _zero(SAMPLE, HOSTNAME_AT), ["all-zero header block", "zeroed"], HOSTNAME_AT),
    ("data after the end marker", SAMPLE + b"garbage", ["non-zero data after"], END),
]


@pytest.mark.parametrize(("case", "raw", "words", "offset"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corruption_is_named_with_its_location(case, raw, words, offset):
    with pytest.raises(ct_tar.CtTarError) as caught:
        ct_tar.check_ct_tar(io.BytesIO(raw))
    for word in words:
        assert word in caught.value.message
    assert caught.value.offset == offset


def test_tarfile_alone_would_miss_a_zeroed_header():
    """Why the checker walks blocks itself: tarfile ends the listing quietly at the zeroed header."""
    corrupt = _zero(SAMPLE, HOSTNAME_AT)
    with tarfile.open(fileobj=io.BytesIO(corrupt)) as tar:
        names = tar.getnames()
    assert "./usr/bin/big" not in names
    with pytest.raises(ct_tar.CtTarError):
        ct_tar.check_ct_tar(io.BytesIO(corrupt))


def test_legacy_vm_tar_needs_qemu_server_conf_first():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("qemu-server.conf")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"x: 1\n"))
    raw = out.getvalue()
    assert ct_tar.check_ct_tar(io.BytesIO(raw), first_member=ct_tar.VM_CONFIG_RE).config == b"x: 1\n"
    with pytest.raises(ct_tar.CtTarError, match="first member"):
        ct_tar.check_ct_tar(io.BytesIO(raw))


def test_extract_stops_at_a_wrong_first_member(tmp_path: Path):
    with pytest.raises(ct_tar.CtTarError, match="first member"):
        ct_tar.read_ct_files(io.BytesIO(_wrong_first_member()))
