"""PVE retention (``prune-backups``): parse the option and mark backups exactly like PVE.

Sources: pve-storage ``src/PVE/Storage/Plugin.pm`` (``$prune_backups_format``,
``validate_prune_backups``, ``prune_backups``) and ``src/PVE/Storage.pm`` (``prune_mark_backup_group``).
``mark`` returns what ``GET /nodes/{node}/storage/{storage}/prunebackups`` returns; ``explain`` adds,
per backup, the rule that decided its fate, for humans.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any

from vzkeep.pve import archive
from vzkeep.pve.localtime import LocalClock, clock_of
from vzkeep.pve.values import parse_boolean

# Canonical PVE order: the order of $prune_backups_format, which is also the order the rules apply.
KEEP_OPTIONS = (
    "keep-all", "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly",
)
COUNT_OPTIONS = KEEP_OPTIONS[1:]
MARKS = ("keep", "remove", "protected", "renamed")

# Perl's integer check accepts an optional sign.
_INTEGER_RE = re.compile(r"^[+-]?\d+$", re.ASCII)

_SECS_PER_HOUR = 3600
_SECS_PER_DAY = 86400
# What a rule's bucket is called in explanations.
_PERIOD = {"keep-last": "second", "keep-hourly": "hour", "keep-daily": "day", "keep-weekly": "week",
           "keep-monthly": "month", "keep-yearly": "year"}


@dataclass(frozen=True)
class Verdict:
    """One backup's fate: the prunebackups entry plus why it got its mark."""

    entry: dict[str, Any]
    reason: str

    @property
    def mark(self) -> str:
        return self.entry["mark"]


def parse_prune_backups(value: str | Mapping[str, Any] | None) -> dict[str, int]:
    """Parse and validate ``prune-backups`` like PVE's format check plus ``validate_prune_backups``.

    Accepts the property string (``keep-daily=7,keep-last=3``) or a mapping with int or numeric
    string values (as ``GET /cluster/backup`` returns it). Returns only the options that are on:
    ``{"keep-all": 1}`` when no count is positive, else the positive counts.
    """
    raw = _split_property_string(value) if isinstance(value, str) or value is None else dict(value)
    counts: dict[str, int] = {}
    keep_all = False
    for key, item in raw.items():
        if key not in KEEP_OPTIONS:
            raise ValueError(
                f"prune-backups: '{key}' is not a retention option (allowed: {', '.join(KEEP_OPTIONS)})"
            )
        if item is None:
            continue
        if key == "keep-all":
            keep_all = _parse_boolean(key, item)
        else:
            counts[key] = _parse_count(key, item)
    positive = {key: counts[key] for key in COUNT_OPTIONS if counts.get(key, 0) > 0}
    if not positive:
        return {"keep-all": 1}
    if keep_all:
        raise ValueError("keep-all cannot be set together with other options.")
    return positive


def format_prune_backups(opts: str | Mapping[str, Any]) -> str:
    """The canonical property string: PVE's option order, only the options that are on."""
    parsed = parse_prune_backups(opts)
    return ",".join(f"{key}={parsed[key]}" for key in KEEP_OPTIONS if key in parsed)


def max_backups(opts: str | Mapping[str, Any]) -> int | None:
    """vzdump's backup limit with ``remove=0``: the sum of the counts, None for keep-all (VZDump.pm)."""
    parsed = parse_prune_backups(opts)
    return None if "keep-all" in parsed else sum(parsed.values())


def mark(listing: Iterable[Mapping[str, Any]], prune_backups: str | Mapping[str, Any], tz: str | None = None,
         *, vmid: int | None = None, type: str | None = None) -> list[dict[str, Any]]:
    """Mark a storage's backups like ``GET .../prunebackups``: one entry per backup, in input order.

    ``listing`` items look like the storage content listing (``volid``, ``ctime``, ``vmid``,
    ``protected``...). ``tz`` is the node's time zone (None = this process's): periods are
    counted in local time. ``vmid``/``type`` restrict the result like the endpoint's parameters.
    """
    return [entry.as_dict() for entry in _marked(listing, prune_backups, tz, vmid, type)]


def explain(listing: Iterable[Mapping[str, Any]], prune_backups: str | Mapping[str, Any],
            tz: str | None = None, *, vmid: int | None = None, type: str | None = None) -> list[Verdict]:
    """``mark``, with the reason for every mark ("keep-daily 3/7", "superseded in its day"...)."""
    return [Verdict(entry.as_dict(), entry.reason) for entry in _marked(listing, prune_backups, tz, vmid, type)]


def _marked(listing: Iterable[Mapping[str, Any]], prune_backups: str | Mapping[str, Any], tz: str | None,
            vmid: int | None, type_: str | None) -> list[_Entry]:
    keep = parse_prune_backups(prune_backups)
    clock = clock_of(tz)
    entries, groups = _group(listing, clock, vmid, type_)
    for group in groups.values():
        _mark_group(group, keep, clock)
    return entries


def group_key(entry: Mapping[str, Any]) -> str:
    """The group a prunebackups entry is marked in: ``"<type>/<vmid>"`` (Plugin.pm prune_backups)."""
    return f"{entry['type']}/{entry.get('vmid', '')}"


class _Entry:
    __slots__ = ("ctime", "kept_by", "mark", "reason", "type", "vmid", "volid")

    def __init__(self, volid: str, type_: str, ctime: int, vmid: int | None) -> None:
        self.volid, self.type, self.ctime, self.vmid = volid, type_, ctime, vmid
        self.mark: str | None = None
        self.reason = ""
        self.kept_by = ""  # the rule that marked it 'keep'

    def as_dict(self) -> dict[str, Any]:
        """The prunebackups entry: volid, type, ctime, mark, and vmid when known."""
        entry: dict[str, Any] = {"volid": self.volid, "type": self.type, "ctime": self.ctime, "mark": self.mark}
        if self.vmid is not None:
            entry["vmid"] = self.vmid
        return entry


def _group(listing: Iterable[Mapping[str, Any]], clock: LocalClock, only_vmid: int | None,
           only_type: str | None) -> tuple[list[_Entry], dict[tuple[str, int], list[_Entry]]]:
    """Plugin.pm prune_backups: standard names go to group type/vmid, others are 'renamed';
    protected overrides both (and stays in its group, pre-marked)."""
    entries: list[_Entry] = []
    groups: dict[tuple[str, int], list[_Entry]] = {}
    for index, item in enumerate(listing):
        volid = _volid(index, item)
        if item.get("content", "backup") != "backup":
            continue  # a full content listing may hold ISOs and templates: list_volumes asks for backups only
        try:
            backup_type, name_vmid, name_ctime = archive.identify(volid, clock)
        except ValueError:  # `eval { archive_info($volid) } // {}`
            backup_type, name_vmid, name_ctime = "unknown", None, None
        backup_vmid = name_vmid if name_vmid is not None else _listing_vmid(volid, item)
        if (only_type is not None and only_type != backup_type) or (
            only_vmid is not None and backup_vmid != int(only_vmid)
        ):
            continue
        if name_vmid is not None and name_ctime is not None:  # is_std_name
            entry = _Entry(volid, backup_type, name_ctime, name_vmid)
            groups.setdefault((backup_type, name_vmid), []).append(entry)
        else:
            entry = _Entry(volid, backup_type, _listing_ctime(volid, item), backup_vmid)
            entry.mark, entry.reason = "renamed", "non-standard name: never pruned"
        if _perl_true(item.get("protected")):
            entry.mark, entry.reason = "protected", "protected"
        entries.append(entry)
    return entries, groups


def _mark_group(group: list[_Entry], keep: dict[str, int], clock: LocalClock) -> None:
    """Storage.pm prune_mark_backup_group, rule by rule."""
    rules = [(rule, keep[rule]) for rule in COUNT_OPTIONS if keep.get(rule, 0) > 0]
    if not rules:  # keep-all: keep everything, but preserve marks like 'protected'
        for entry in group:
            if entry.mark is None or entry.mark == "remove":
                entry.mark, entry.reason = "keep", "keep-all"
        return
    ordered = sorted(group, key=attrgetter("ctime"), reverse=True)  # newest first; ties keep input order
    kept: list[_Entry] = []
    for rule, count in rules:
        _apply_rule(ordered, kept, _bucket_key(rule, clock), rule, count)
    for entry in ordered:
        if entry.mark is None:
            entry.mark = "remove"
            entry.reason = entry.reason or "outside every rule's slots"


def _apply_rule(ordered: list[_Entry], kept: list[_Entry], key: Callable[[_Entry], int], rule: str,
                count: int) -> None:
    """The $prune_mark loop: claim up to `count` new periods, newest first; an older backup in a
    period this rule claimed is removed; a period an earlier rule kept a backup in costs no slot.
    Keys are computed only for the backups the walk reaches: it stops at the first period too many."""
    covered = {key(entry): entry.kept_by for entry in kept}
    claimed: set[int] = set()
    period = _PERIOD[rule]
    superseded = "same time as a newer backup" if rule == "keep-last" else f"superseded in its {period}"
    for entry in ordered:
        if entry.mark is not None:
            continue
        bucket = key(entry)
        if bucket in covered:
            entry.reason = f"its {period} is covered by a backup kept by {covered[bucket]}"
            continue
        if bucket in claimed:
            entry.mark = "remove"
            entry.reason = superseded
            continue
        if len(claimed) >= count:
            break
        claimed.add(bucket)
        entry.mark, entry.kept_by, entry.reason = "keep", rule, f"{rule} {len(claimed)}/{count}"
        kept.append(entry)


def _bucket_key(rule: str, clock: LocalClock) -> Callable[[_Entry], int]:
    """An integer naming a backup's period in local time. Same partition as Perl's keys
    ("$hour/$day/$month/$year", ISO "%V/%G", ...) because local seconds map 1:1 to wall-clock fields."""
    if rule == "keep-last":
        return attrgetter("ctime")

    def day(entry: _Entry) -> int:
        return clock.local_seconds(entry.ctime) // _SECS_PER_DAY

    if rule == "keep-hourly":
        return lambda entry: clock.local_seconds(entry.ctime) // _SECS_PER_HOUR
    if rule == "keep-daily":
        return day
    if rule == "keep-weekly":
        # An ISO week (%V with its year %G) is the set of days sharing one Monday; 1970-01-01 was a Thursday.
        return lambda entry: (d := day(entry)) - (d + 3) % 7
    if rule == "keep-monthly":
        return lambda entry: _month_number(day(entry))
    return lambda entry: _month_number(day(entry)) // 12


@lru_cache(maxsize=1 << 16)
def _month_number(day: int) -> int:
    """year * 12 + month index of a day; cached because every guest's backups share the same days."""
    year, month = _year_month(day)
    return year * 12 + month - 1


def _year_month(day: int) -> tuple[int, int]:
    """Proleptic Gregorian (year, month) of a day count since 1970-01-01 (H. Hinnant's algorithm)."""
    z = day + 719468
    era = z // 146097
    day_of_era = z - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month


def _split_property_string(value: str | None) -> dict[str, str]:
    """pve-common parse_property_string for a format without a default key."""
    result: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if not sep or not key or not item:
            raise ValueError(
                f"prune-backups: '{part}' is not KEY=VALUE (example: keep-daily=7,keep-weekly=4)"
            )
        if key in result:
            raise ValueError(f"prune-backups: duplicate key '{key}'")
        result[key] = item
    return result


def _parse_count(key: str, item: Any) -> int:
    if not _is_integer(item):
        raise ValueError(f"prune-backups: {key}={item!r} is not an integer (allowed: an integer >= 0)")
    number = int(item)
    if number < 0:
        raise ValueError(f"prune-backups: {key}={number} is negative (allowed: an integer >= 0)")
    return number


def _parse_boolean(key: str, item: Any) -> bool:
    parsed = parse_boolean(item)
    if parsed is not None:
        return parsed
    raise ValueError(
        f"prune-backups: {key}={item!r} is not a boolean (allowed: 1, 0, yes, no, on, off, true, false)"
    )


def _is_integer(value: Any) -> bool:
    """An int (not a bool) or a string PVE's integer type check accepts."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and _INTEGER_RE.match(value) is not None)


def _perl_true(value: Any) -> bool:
    """Perl truthiness of a listing flag: undef, 0, '' and '0' are false."""
    return value not in (None, False, 0, "", "0")


def _volid(index: int, item: Mapping[str, Any]) -> str:
    volid = item.get("volid") if isinstance(item, Mapping) else None
    if not isinstance(volid, str) or not volid:
        raise ValueError(f"listing item {index} has no 'volid' (got {item!r})")
    return volid


def _listing_ctime(volid: str, item: Mapping[str, Any]) -> int:
    ctime = item.get("ctime")
    if not _is_integer(ctime):
        raise ValueError(f"listing item '{volid}': ctime {ctime!r} is not an integer epoch")
    return int(ctime)


def _listing_vmid(volid: str, item: Mapping[str, Any]) -> int | None:
    vmid = item.get("vmid")
    if vmid is None or vmid == "":
        return None
    if not _is_integer(vmid):
        raise ValueError(f"listing item '{volid}': vmid {vmid!r} is not an integer")
    return int(vmid)
