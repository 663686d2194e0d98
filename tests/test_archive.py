"""vzkeep.pve.archive against pve-storage ``src/test/archive_info_test.pm`` (all 31 cases, run under
TZ=UTC upstream), vzdump's naming (pve-manager PVE/VZDump.pm), and Perl's own Time::Local."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzkeep.pve import archive, localtime

VMID = 16110
DECOMPRESSOR = {
    "tar": {
        "gz": ["tar", "-z"],
        "lzo": ["tar", "--lzop"],
        "zst": ["tar", "--zstd"],
        "bz2": ["tar", "--bzip2"],
    },
    "vma": {
        "gz": ["zcat"],
        "lzo": ["lzop", "-d", "-c"],
        "zst": ["zstd", "-q", "-d", "-c"],
        "bz2": ["bzcat", "-q"],
    },
}


def std(stem: str, ext: str, type_: str, fmt: str, comp: str | None, ctime: int) -> dict[str, Any]:
    return {
        "filename": f"{stem}.{ext}",
        "logfilename": f"{stem}.log",
        "notesfilename": f"{stem}.{ext}.notes",
        "type": type_,
        "format": fmt,
        "decompressor": DECOMPRESSOR[fmt][comp] if comp else None,
        "compression": comp,
        "vmid": VMID,
        "ctime": ctime,
        "is_std_name": True,
    }


POSITIVE = [
    (
        "Backup archive, lxc, tgz, future millenium",
        f"backup/vzdump-lxc-{VMID}-3070_01_01-00_00_00.tgz",
        std(
            f"vzdump-lxc-{VMID}-3070_01_01-00_00_00",
            "tgz",
            "lxc",
            "tar",
            "gz",
            60 * 60 * 24 * (365 * 1100 + 267),
        ),
    ),
    (
        "Backup archive, lxc, tgz, very old",
        f"backup/vzdump-lxc-{VMID}-1970_01_01-02_00_30.tgz",
        std(f"vzdump-lxc-{VMID}-1970_01_01-02_00_30", "tgz", "lxc", "tar", "gz", 60 * 60 * 2 + 30),
    ),
    (
        "Backup archive, lxc, tgz",
        f"backup/vzdump-lxc-{VMID}-2020_03_30-21_39_30.tgz",
        std(f"vzdump-lxc-{VMID}-2020_03_30-21_39_30", "tgz", "lxc", "tar", "gz", 1585604370),
    ),
    (
        "Backup archive, openvz, tgz",
        f"backup/vzdump-openvz-{VMID}-2020_03_30-21_39_30.tgz",
        std(f"vzdump-openvz-{VMID}-2020_03_30-21_39_30", "tgz", "openvz", "tar", "gz", 1585604370),
    ),
    (
        "Backup archive, custom dump directory, qemu, tgz",
        f"/here/be/Back-ups/vzdump-qemu-{VMID}-2020_03_30-21_39_30.tgz",
        std(f"vzdump-qemu-{VMID}-2020_03_30-21_39_30", "tgz", "qemu", "tar", "gz", 1585604370),
    ),
    (
        "Backup archive, none, tgz",
        f"backup/vzdump-qemu-{VMID}-whatever-the-name_is_here.tgz",
        {
            "filename": f"vzdump-qemu-{VMID}-whatever-the-name_is_here.tgz",
            "logfilename": None,
            "notesfilename": None,
            "type": "qemu",
            "format": "tar",
            "decompressor": ["tar", "-z"],
            "compression": "gz",
            "vmid": None,
            "ctime": None,
            "is_std_name": False,
        },
    ),
]
# Upstream generates one case per guest type and compression.
for _virt, _fmt in (("lxc", "tar"), ("openvz", "tar"), ("qemu", "vma")):
    for _comp in sorted(DECOMPRESSOR[_fmt]):
        _stem = f"vzdump-{_virt}-{VMID}-2020_03_30-21_12_40"
        POSITIVE.append(
            (
                f"Backup archive, {_virt}, {_fmt}.{_comp}",
                f"backup/{_stem}.{_fmt}.{_comp}",
                std(_stem, f"{_fmt}.{_comp}", _virt, _fmt, _comp, 1585602760),
            )
        )

# Not in upstream's test, but what vzdump writes with `--compress 0` (pve-manager PVE/VZDump.pm): a plain
# tar or vma, which Storage.pm's $BACKUP_EXT_RE_2 accepts with no compression and so no decompressor.
for _virt, _fmt in (("lxc", "tar"), ("qemu", "vma")):
    _stem = f"vzdump-{_virt}-{VMID}-2020_03_30-21_12_40"
    POSITIVE.append((f"Backup archive, {_virt}, {_fmt}, uncompressed", f"backup/{_stem}.{_fmt}",
                     std(_stem, _fmt, _virt, _fmt, None, 1585602760)))

NEGATIVE = [
    f"backup/vzdump-{virt}-{VMID}-2020_03_30-21_12_40.{suffix}"
    for virt, suffixes in (
        ("lxc", ("zip", "tgz.lzo", "zip.gz", "")),
        ("none", ("tar.gz",)),
        ("openvz", ("zip", "tgz.lzo", "zip.gz", "")),
        ("qemu", ("vma.xz", "vms.gz", "vmx.zst", "")),
    )
    for suffix in suffixes
]


def test_every_extension_the_parser_accepts_has_a_ported_case() -> None:
    # Try every format with every compression suffix vzdump or a user could write: each one the parser
    # accepts must be one of upstream's positive cases, else a format is accepted that no case checks.
    suffixes = ("", ".gz", ".lzo", ".zst", ".bz2", ".xz", ".lz4", ".zip")
    candidates = [f"{fmt}{suffix}" for fmt in ("tar", "vma", "vms", "tgz") for suffix in suffixes]
    accepted = set()
    for extension in candidates:
        try:
            archive.parse(f"backup/vzdump-qemu-{VMID}-2020_03_30-21_12_40.{extension}")
        except ValueError:
            continue
        accepted.add(extension)
    covered = {name.split("-21_12_40.", 1)[1] for _, name, _ in POSITIVE if "-21_12_40." in name}
    covered |= {name.rsplit(".", 1)[1] for _, name, _ in POSITIVE if name.endswith(".tgz")}
    assert accepted and accepted <= covered, accepted - covered


def _comparable(info: archive.ArchiveInfo) -> dict[str, Any]:
    got = asdict(info)
    del got["extension"]  # not part of upstream's hash; checked separately
    got["decompressor"] = list(got["decompressor"]) if got["decompressor"] else None
    return got


@pytest.mark.parametrize(("name", "expected"), [c[1:] for c in POSITIVE], ids=[c[0] for c in POSITIVE])
def test_archive_info_matches_upstream(name: str, expected: dict[str, Any]) -> None:
    assert _comparable(archive.parse(name, tz="UTC")) == expected


@pytest.mark.parametrize("name", NEGATIVE)
def test_non_backups_are_refused_with_pves_message(name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        archive.parse(name, tz="UTC")
    assert str(excinfo.value) == f"couldn't determine archive info from '{name}'"


@pytest.mark.parametrize(
    ("name", "extension", "fmt", "compression"),
    [
        ("vzdump-qemu-100-2024_01_01-02_00_01.vma.zst", "vma.zst", "vma", "zst"),
        ("vzdump-qemu-100-2024_01_01-02_00_01.vma", "vma", "vma", None),
        ("vzdump-lxc-100-2024_01_01-02_00_01.tar", "tar", "tar", None),
        ("vzdump-lxc-100-2024_01_01-02_00_01.tgz", "tgz", "tar", "gz"),
        ("vzdump-lxc-100-2024_01_01-02_00_01.tar.bz2", "tar.bz2", "tar", "bz2"),
    ],
)
def test_extension_format_and_compression(
    name: str, extension: str, fmt: str, compression: str | None
) -> None:
    info = archive.parse(name, tz="UTC")
    assert (info.extension, info.format, info.compression) == (extension, fmt, compression)


@pytest.mark.parametrize(
    "name",
    [
        "local:backup/vzdump-qemu-100-2024_01_01-02_00_01.vma.zst",
        "/var/lib/vz/dump/vzdump-qemu-100-2024_01_01-02_00_01.vma.zst",
        "vzdump-qemu-100-2024_01_01-02_00_01.vma.zst",
    ],
)
def test_volid_path_and_bare_name_are_the_same_archive(name: str) -> None:
    info = archive.parse(name, tz="UTC")
    assert (info.filename, info.vmid, info.ctime) == (
        "vzdump-qemu-100-2024_01_01-02_00_01.vma.zst",
        100,
        1704074401,
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("vzdump-qemu-99-2024_01_01-02_00_01.vma", "VMIDs below 100 never give a standard name"),
        ("vzdump-qemu-0100-2024_01_01-02_00_01.vma", "a leading zero is not a VMID"),
        ("vzdump-qemu-1234567890-2024_01_01-02_00_01.vma", "more than 9 digits"),
        ("vzdump-qemu-100-2024_1_01-02_00_01.vma", "a one-digit month is not a stamp"),
        ("vzdump-qemu-100-2024_01_01-02_00_01.extra.vma", "something between stamp and extension"),
    ],
)
def test_names_that_are_backups_but_not_standard(name: str, why: str) -> None:
    info = archive.parse(name, tz="UTC")
    assert not info.is_std_name, why
    assert (info.vmid, info.ctime, info.logfilename, info.notesfilename) == (None, None, None, None)


def test_type_and_format_are_not_paired() -> None:
    # archive_info does not check that a container backup is a tar: PVE would list this one.
    info = archive.parse("vzdump-lxc-100-2024_01_01-02_00_01.vma", tz="UTC")
    assert (info.type, info.format, info.is_std_name) == ("lxc", "vma", True)


def test_impossible_date_fails_like_time_local() -> None:
    with pytest.raises(ValueError, match=r"Day '30' out of range 1\.\.29"):
        archive.parse("vzdump-qemu-100-2024_02_30-00_00_00.vma", tz="UTC")


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        archive.parse("vzdump-qemu-100-2024_01_01-00_00_00.vma", tz="Mars/Olympus")


# --- archive_name and dat_name ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guest_type", "compress", "expected"),
    [
        ("qemu", "zstd", "vzdump-qemu-100-2024_01_01-02_00_01.vma.zst"),
        ("qemu", "gzip", "vzdump-qemu-100-2024_01_01-02_00_01.vma.gz"),
        ("qemu", "lzo", "vzdump-qemu-100-2024_01_01-02_00_01.vma.lzo"),
        ("qemu", 1, "vzdump-qemu-100-2024_01_01-02_00_01.vma.lzo"),
        ("qemu", "1", "vzdump-qemu-100-2024_01_01-02_00_01.vma.lzo"),
        ("qemu", 0, "vzdump-qemu-100-2024_01_01-02_00_01.vma"),
        ("qemu", "0", "vzdump-qemu-100-2024_01_01-02_00_01.vma"),
        ("qemu", None, "vzdump-qemu-100-2024_01_01-02_00_01.vma"),
        ("lxc", "zstd", "vzdump-lxc-100-2024_01_01-02_00_01.tar.zst"),
        ("lxc", None, "vzdump-lxc-100-2024_01_01-02_00_01.tar"),
    ],
)
def test_archive_name_is_what_vzdump_writes(guest_type: str, compress: Any, expected: str) -> None:
    # 1704074401 = 2024-01-01 02:00:01 UTC
    assert archive.archive_name(guest_type, 100, 1704074401, compress, "UTC") == expected


def test_archive_name_uses_the_nodes_local_time() -> None:
    name = archive.archive_name("qemu", 100, 1704074401, "zstd", "America/New_York")
    assert name == "vzdump-qemu-100-2023_12_31-21_00_01.vma.zst"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("openvz", 100, 0, None), "guest type 'openvz' is not one vzdump backs up"),
        (("qemu", 100, 0, "xz"), "compress='xz' is not a vzdump compression"),
        (("qemu", 0, 0, None), "vmid 0 is out of range"),
    ],
)
def test_archive_name_refuses(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        archive.archive_name(*args, tz="UTC")


@pytest.mark.parametrize(
    ("final", "dat"),
    [
        ("vzdump-qemu-100-2024_01_01-02_00_01.vma.zst", "vzdump-qemu-100-2024_01_01-02_00_01.vma.dat"),
        ("vzdump-qemu-100-2024_01_01-02_00_01.vma", "vzdump-qemu-100-2024_01_01-02_00_01.dat"),
        (
            "/var/lib/vz/dump/vzdump-lxc-101-2024_01_01-02_00_01.tar.gz",
            "/var/lib/vz/dump/vzdump-lxc-101-2024_01_01-02_00_01.tar.dat",
        ),
    ],
)
def test_dat_name_replaces_the_last_extension(final: str, dat: str) -> None:
    assert archive.dat_name(final) == dat


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["qemu", "lxc"]),
    st.integers(100, 999_999_999),
    st.integers(0, 4102444800),
    st.sampled_from([None, "zstd", "gzip", "lzo"]),
    # Zones whose DST shifts by a whole hour: Time::Local assumes it (see the Lord Howe test below).
    st.sampled_from(["UTC", "Europe/Paris", "America/Sao_Paulo", "America/New_York"]),
)
def test_a_written_name_reads_back(guest_type: str, vmid: int, ctime: int, compress: Any, tz: str) -> None:
    name = archive.archive_name(guest_type, vmid, ctime, compress, tz)
    info = archive.parse(f"store:backup/{name}", tz)
    assert (info.type, info.vmid, info.is_std_name) == (guest_type, vmid, True)
    # Within a DST overlap the name is ambiguous and Time::Local picks the earlier instant.
    assert info.ctime is not None and 0 <= ctime - info.ctime <= 3600
    assert archive.archive_name(guest_type, vmid, info.ctime, compress, tz) == name


def test_half_hour_dst_overlap_does_not_read_back_in_pve() -> None:
    # Time::Local's overlap handling steps back a whole hour; with Lord Howe's 30-minute DST the
    # name 01:30 reads back as 01:00 local (Perl agrees: see PERL_STAMPS). Retention uses that ctime.
    tz = "Australia/Lord_Howe"
    name = archive.archive_name("qemu", 100, 1712413800, None, tz)
    assert name == "vzdump-qemu-100-2024_04_07-01_30_00.vma"
    assert archive.parse(name, tz).ctime == 1712413800 - 1800


# --- Perl itself: Time::Local and localtime/strftime as PVE runs them ---------------------------

PERL_STAMPS = [
    ("UTC", "2020_03_30-21_39_30"),
    ("Europe/Paris", "2024_03_31-01_59_59"),  # last second before the spring gap
    ("Europe/Paris", "2024_03_31-02_30_00"),  # inside the gap
    ("Europe/Paris", "2024_03_31-03_00_00"),
    ("Europe/Paris", "2024_10_27-01_59_59"),
    ("Europe/Paris", "2024_10_27-02_30_00"),  # overlap: earlier instant
    ("Europe/Paris", "2024_10_27-03_00_00"),
    ("America/New_York", "2024_03_10-02_15_00"),
    ("America/New_York", "2024_11_03-01_15_00"),
    ("America/Sao_Paulo", "2018_11_04-00_30_00"),  # DST began at midnight: the day starts at 01:00
    ("Australia/Lord_Howe", "2024_04_07-01_45_00"),  # half-hour DST overlap
    ("Australia/Lord_Howe", "2024_10_06-02_15_00"),  # half-hour DST gap
    ("Pacific/Apia", "2011_12_30-12_00_00"),  # a day skipped when Samoa crossed the date line
    ("Europe/Paris", "1900_01_01-00_00_00"),  # local mean time, offset in seconds
    ("Asia/Kolkata", "2070_06_15-12_00_00"),
    ("Europe/Paris", "2070_07_01-12_00_00"),  # beyond 2037: the zone's POSIX rule
]
PERL_PROGRAM = r"""
use strict; use warnings; use Time::Local; use POSIX qw(strftime tzset);
my @out;
while (my $line = <STDIN>) {
    chomp $line;
    my ($tz, $stamp) = split / /, $line;
    $ENV{TZ} = $tz; tzset();
    my ($Y, $m, $d, $H, $M, $S) = $stamp =~ /^(\d{4})_(\d{2})_(\d{2})-(\d{2})_(\d{2})_(\d{2})$/;
    my $t = eval { timelocal($S, $M, $H, $d, $m - 1, $Y) };
    if (!defined $t) { push @out, "error"; next; }
    my @lt = localtime($t);
    push @out, join(" ", $t, strftime("%Y_%m_%d-%H_%M_%S %V %G", @lt));
}
print join("\n", @out), "\n";
"""


def test_timelocal_and_localtime_agree_with_perl() -> None:
    perl = shutil.which("perl")
    assert perl, "perl is required: PVE's own Time::Local is the reference for this test"
    lines = "".join(f"{tz} {stamp}\n" for tz, stamp in PERL_STAMPS)
    result = subprocess.run(
        [perl, "-e", PERL_PROGRAM], input=lines, capture_output=True, text=True, check=True
    )
    expected = result.stdout.split("\n")[: len(PERL_STAMPS)]
    got = []
    for tz, stamp in PERL_STAMPS:
        info = archive.parse(f"vzdump-qemu-100-{stamp}.vma", tz)
        assert info.ctime is not None
        clock = localtime.LocalClock(tz)
        got.append(f"{info.ctime} {clock.strftime('%Y_%m_%d-%H_%M_%S %V %G', info.ctime)}")
    assert got == expected, json.dumps(list(zip(PERL_STAMPS, got, expected, strict=True)), indent=1)
