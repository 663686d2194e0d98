"""vzdump archive names: parse them like PVE's ``archive_info`` and build them like vzdump does.

A standard name carries the guest type, the VMID and the backup time in the node's *local* time
(reference/pve.md §1.2). Converting that stamp to an epoch and back is what PVE's prune marking
and content listing do, so the conversion lives here too, in ``LocalClock``: a port of Perl's
``localtime`` and ``Time::Local::timelocal`` (1.30, the version on PVE 8/9) over one time zone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# pve-storage src/PVE/Storage.pm: KNOWN_COMPRESSION_FORMATS and $BACKUP_EXT_RE_2 (reference/pve.md §1.2).
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

_SECS_PER_HOUR = 3600
_SECS_PER_DAY = 86400
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


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


class LocalClock:
    """The wall clock of a PVE node in time zone ``tz`` (an IANA name; None = this process's zone).

    ``fields`` is Perl's ``localtime``, ``timelocal`` is ``Time::Local::timelocal``: PVE names
    archives with the first and reads them back with the second, so both must agree with Perl,
    DST gaps and overlaps included.
    """

    def __init__(self, tz: str | None = None) -> None:
        self.tz = tz
        self._zone = _load_zone(tz) if tz is not None else None
        # Offsets per UTC hour. An hour whose first and last second have the same offset is taken
        # as constant: tzdata has no pair of transitions less than an hour apart.
        self._hour_offsets: dict[int, int | None] = {}

    def offset(self, t: int) -> int:
        """Seconds east of UTC at epoch ``t`` (``_timegm(localtime(t)) - t`` in Time::Local)."""
        hour = t // _SECS_PER_HOUR
        try:
            constant = self._hour_offsets[hour]
        except KeyError:
            start = hour * _SECS_PER_HOUR
            first, last = self._exact_offset(start), self._exact_offset(start + _SECS_PER_HOUR - 1)
            constant = first if first == last else None
            self._hour_offsets[hour] = constant
        return constant if constant is not None else self._exact_offset(t)

    def local_seconds(self, t: int) -> int:
        """The local wall-clock time of ``t`` counted like an epoch (``_timegm(localtime(t))``)."""
        return t + self.offset(t)

    def fields(self, t: int) -> time.struct_time:
        """``localtime(t)``: year, month, day, hour, minute, second of the node's wall clock."""
        return time.gmtime(self.local_seconds(t))

    def strftime(self, fmt: str, t: int) -> str:
        return time.strftime(fmt, self.fields(t))

    def timelocal(self, year: int, month: int, mday: int, hour: int, minute: int, sec: int) -> int:
        """Epoch of a local wall-clock time, exactly as Time::Local 1.30 ``timelocal`` computes it.

        ``month`` is 1-based. In a DST overlap the earlier instant wins; a time inside a DST gap
        gives the instant one hour later (Time::Local documentation, "Ambiguous Local Times").
        """
        ref_t = timegm(year, month, mday, hour, minute, sec)
        # Fast path, same result: where the offset is one constant over every instant the
        # algorithm below probes (ref_t, loc_t, loc_t - 1h), it returns ref_t - offset.
        hours = self._hour_offsets
        constant = hours.get(ref_t // _SECS_PER_HOUR)
        if constant is not None:
            loc_t = ref_t - constant
            if hours.get(loc_t // _SECS_PER_HOUR) == constant == hours.get(loc_t // _SECS_PER_HOUR - 1):
                return loc_t
        zone_off = self.offset(ref_t)
        if not zone_off:
            return ref_t
        loc_t = ref_t - zone_off
        dst_off = ref_t - self.local_seconds(loc_t)
        # The second hour after a DST change where the local time moves backward.
        if not dst_off and (ref_t - _SECS_PER_HOUR) - self.local_seconds(loc_t - _SECS_PER_HOUR) < 0:
            return loc_t - _SECS_PER_HOUR
        loc_t += dst_off
        if dst_off > 0:
            return loc_t
        # Inside a forward-jump gap the adjustment was wrong: undo it.
        got = self.local_seconds(loc_t) % _SECS_PER_DAY
        if (got % 60, got // 60 % 60, got // _SECS_PER_HOUR) != (sec, minute, hour):
            loc_t -= dst_off
        return loc_t

    def _exact_offset(self, t: int) -> int:
        try:
            if self._zone is None:
                return time.localtime(t).tm_gmtoff
            delta = datetime.fromtimestamp(t, self._zone).utcoffset()
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"time {t} is outside the range this clock can convert") from exc
        return int(delta.total_seconds()) if delta is not None else 0


def timegm(year: int, month: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """Time::Local ``timegm`` with its range checks (month 1-based here, 0-based in Perl's messages)."""
    year = _perl_year(year)
    if not 1 <= month <= 12:
        raise ValueError(f"Month '{month - 1}' out of range 0..11")
    days_in_month = _MONTH_DAYS[month - 1] + (1 if month == 2 and _is_leap_year(year) else 0)
    if not 1 <= mday <= days_in_month:
        raise ValueError(f"Day '{mday}' out of range 1..{days_in_month}")
    if not 0 <= hour <= 23:
        raise ValueError(f"Hour '{hour}' out of range 0..23")
    if not 0 <= minute <= 59:
        raise ValueError(f"Minute '{minute}' out of range 0..59")
    if not 0 <= sec <= 59:
        raise ValueError(f"Second '{sec}' out of range 0..59")
    return _days_from_civil(year, month, mday) * _SECS_PER_DAY + hour * _SECS_PER_HOUR + minute * 60 + sec


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
    ctime = _stamp_ctime(std, tz if isinstance(tz, LocalClock) else LocalClock(tz))
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
    stamp = LocalClock(tz).strftime("-%Y_%m_%d-%H_%M_%S", int(ctime))
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
    """The temporary name vzdump writes to: the last extension replaced by ``.dat`` (§1.3)."""
    return re.sub(r"\.[^.]+$", ".dat", final_name, count=1)


def _std_name_re(guest_type: str, extension: str) -> re.Pattern[str]:
    key = (guest_type, extension)
    pattern = _STD_NAME_RES.get(key)
    if pattern is None:
        # Perl interpolates the extension unquoted: its dots match any character, as here.
        pattern = re.compile(_STD_NAME_TEMPLATE.format(type=guest_type, ext=extension), re.ASCII)
        _STD_NAME_RES[key] = pattern
    return pattern


def _load_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone '{tz}' (use an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from exc


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(year: int, month: int, mday: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, any year (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + mday - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _perl_year(year: int) -> int:
    """How Time::Local reads a year: >= 1000 literally, 100..999 as years since 1900, and 0..99 in a
    rolling century around today (only reachable through names like ``0999``, never written by vzdump)."""
    if year >= 1000:
        return year
    if year >= 100:
        return year + 1900
    this_year = time.localtime().tm_year - 1900
    breakpoint_ = (this_year + 50) % 100
    next_century = this_year - this_year % 100 + (100 if breakpoint_ < 50 else 0)
    century = next_century - 100
    return year + (century if year > breakpoint_ else next_century) + 1900
