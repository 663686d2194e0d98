"""vzdump archive names: parse them like PVE's ``archive_info`` and build them like vzdump does.

A standard name carries the guest type, the VMID and the backup time in the node's *local* time
(pve-manager ``PVE/VZDump.pm`` names it with ``localtime``), converted with the node's Perl clock
(``vzkeep.pve.localtime.LocalClock``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vzkeep.pve.localtime import LocalClock, clock_of

# pve-storage src/PVE/Storage.pm: KNOWN_COMPRESSION_FORMATS and $BACKUP_EXT_RE_2.
# Group 1 is the full extension ("vma.zst", "tgz"), group 2 the compression.
BACKUP_EXT_RE_2 = r"\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?)"
GUEST_TYPES = ("lxc", "openvz", "qemu")

# archive_info() regex A: what counts as a backup at all. re.ASCII because Perl matches \d on the
# byte-string file names from readdir as [0-9] only.
_ARCHIVE_RE = re.compile(rf"^(vzdump-(lxc|openvz|qemu)-.+{BACKUP_EXT_RE_2})$", re.ASCII)
# archive_info() regex B, built per type and extension like the Perl interpolation.
_STD_NAME_TEMPLATE = (
    r"^(vzdump-{type}-([1-9][0-9]{{2,8}})-(\d{{4}})_(\d{{2}})_(\d{{2}})-(\d{{2}})_(\d{{2}})_(\d{{2}}))\.{ext}$"
)
_STD_NAME_RES: dict[tuple[str, str], re.Pattern[str]] = {}

# Storage.pm decompressor_info(): the command PVE pipes an archive through to read it.
_DECOMPRESSOR: dict[str, dict[str, tuple[str, ...]]] = {
    "tar": {
        "gz": ("tar", "-z"), "lzo": ("tar", "--lzop"), "zst": ("tar", "--zstd"), "bz2": ("tar", "--bzip2"),
    },
    "vma": {
        "gz": ("zcat",), "lzo": ("lzop", "-d", "-c"),
        "zst": ("zstd", "-q", "-d", "-c"), "bz2": ("bzcat", "-q"),
    },
}

# pve-manager PVE/VZDump.pm compressor_info(): the job's `compress` option -> file extension.
_COMPRESS_EXT: dict[str, str | None] = {
    "0": None, "": None, "1": "lzo", "lzo": "lzo", "gzip": "gz", "zstd": "zst",
}

LOG_EXT = ".log"
NOTES_EXT = ".notes"



@dataclass(frozen=True)
class ArchiveInfo:
    """What ``PVE::Storage::archive_info`` returns for one backup file name."""

    filename: str
    type: str  # lxc | openvz | qemu
    format: str  # vma | tar
    extension: str  # full extension: "vma.zst", "tar.gz", "tgz", "vma"
    compression: str | None  # gz | lzo | zst | bz2
    decompressor: tuple[str, ...] | None
    vmid: int | None  # only for standard names
    ctime: int | None  # the name's local-time stamp as an epoch; only for standard names
    is_std_name: bool
    logfilename: str | None
    notesfilename: str | None


def parse(name: str, tz: str | LocalClock | None = None) -> ArchiveInfo:
    """``PVE::Storage::archive_info``: what a backup file name says (path or volid accepted).

    ``tz`` is the node's time zone (None = this process's), or a ``LocalClock`` to reuse.

    Raises ``ValueError("couldn't determine archive info from '<name>'")`` for anything that is
    not a vzdump archive name, and ``ValueError`` with Time::Local's message when a standard
    name carries an impossible date (PVE then treats the file as having no archive info).
    """
    match, std = _match(name)
    filename, guest_type, extension, compression = match.groups()
    fmt = extension.split(".", 1)[0]
    if fmt == "tgz":  # Storage.pm decompressor_info: tgz is tar + gz
        fmt, compression = "tar", "gz"
    decompressor = _DECOMPRESSOR[fmt][compression] if compression else None
    if std is None:
        return ArchiveInfo(filename, guest_type, fmt, extension, compression, decompressor,
                           None, None, False, None, None)
    ctime = _stamp_ctime(std, tz if isinstance(tz, LocalClock) else clock_of(tz))
    return ArchiveInfo(filename, guest_type, fmt, extension, compression, decompressor,
                       int(std.group(2)), ctime, True, std.group(1) + LOG_EXT, filename + NOTES_EXT)


def identify(name: str, clock: LocalClock) -> tuple[str, int | None, int | None]:
    """The part of ``parse`` pruning needs, without building an ``ArchiveInfo`` (it runs per backup):
    (type, vmid, ctime), vmid and ctime None for a non-standard name. Raises like ``parse``."""
    match, std = _match(name)
    if std is None:
        return match.group(2), None, None
    return match.group(2), int(std.group(2)), _stamp_ctime(std, clock)


def _match(name: str) -> tuple[re.Match[str], re.Match[str] | None]:
    """archive_info's two regexes on the basename: is it a backup, is its name standard."""
    basename = name.rsplit("/", 1)[-1]
    match = _ARCHIVE_RE.match(basename)
    if match is None:
        raise ValueError(f"couldn't determine archive info from '{name}'")
    pattern = _STD_NAME_RES.get((match.group(2), match.group(3))) or _std_name_re(match.group(2), match.group(3))
    return match, pattern.match(basename)


def _stamp_ctime(std: re.Match[str], clock: LocalClock) -> int:
    year, month, mday, hour, minute, sec = map(int, std.group(3, 4, 5, 6, 7, 8))
    return clock.timelocal(year, month, mday, hour, minute, sec)


def archive_name(guest_type: str, vmid: int, ctime: int, compress: str | int | None = None,
                 tz: str | None = None) -> str:
    """The file name vzdump writes for a backup started at ``ctime`` (pve-manager PVE/VZDump.pm).

    ``compress`` takes the job option's values: 0/None (none), 1 or "lzo", "gzip", "zstd".
    """
    if guest_type not in ("qemu", "lxc"):
        raise ValueError(f"guest type '{guest_type}' is not one vzdump backs up (allowed: qemu, lxc)")
    if not 1 <= int(vmid) <= 999_999_999:
        raise ValueError(f"vmid {vmid} is out of range 1..999999999")
    stamp = clock_of(tz).strftime("-%Y_%m_%d-%H_%M_%S", int(ctime))
    ext = ".vma" if guest_type == "qemu" else ".tar"
    comp_ext = compression_extension(compress)
    if comp_ext:
        ext += f".{comp_ext}"
    return f"vzdump-{guest_type}-{int(vmid)}{stamp}{ext}"


def compression_extension(compress: str | int | bool | None) -> str | None:
    """vzdump's ``compressor_info`` extension for a ``compress`` option value (None = uncompressed)."""
    if compress is None or compress is False:
        key = "0"
    elif compress is True:
        key = "1"
    else:
        key = str(compress)
    if key not in _COMPRESS_EXT:
        raise ValueError(
            f"compress={compress!r} is not a vzdump compression (allowed: 0, 1, gzip, lzo, zstd)"
        )
    return _COMPRESS_EXT[key]


def dat_name(final_name: str) -> str:
    """The temporary name vzdump writes to: the last extension replaced by ``.dat`` (pve-manager ``PVE/VZDump.pm``)."""
    return re.sub(r"\.[^.]+$", ".dat", final_name, count=1)


def _std_name_re(guest_type: str, extension: str) -> re.Pattern[str]:
    key = (guest_type, extension)
    pattern = _STD_NAME_RES.get(key)
    if pattern is None:
        # Perl interpolates the extension unquoted: its dots match any character, as here.
        pattern = re.compile(_STD_NAME_TEMPLATE.format(type=guest_type, ext=extension), re.ASCII)
        _STD_NAME_RES[key] = pattern
    return pattern
