"""Backup volumes (``GET /nodes/{node}/storage/{storage}/content?content=backup``), reduced per guest at once.

The storage content is the authority on successful backups: an archive exists only for a backup that
succeeded, at any age. A listing is reduced while it is read to one small record per guest (newest archive,
count, bytes, newest verified archive), so memory follows guests, not archives.

PVE lists a backup volume only to a token that may access it (pve-storage ``src/PVE/Storage.pm``
``check_volume_access``, see ``vzkeep.pve.privileges``); a token without that sees an empty storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vzkeep.exporter.json_items import data_batches


@dataclass(slots=True)
class GuestArchives:
    """One guest's archives on one storage (as listed from one node)."""

    count: int = 0
    total_bytes: int = 0
    last_ctime: int = 0
    last_size: int = 0
    verified_ctime: int = -1  # ctime of the newest archive with a verify result; -1 = none
    verified_at: int = 0
    verified_ok: bool = False

    def merge(self, other: GuestArchives) -> None:
        self.count += other.count
        self.total_bytes += other.total_bytes
        if other.last_ctime > self.last_ctime:
            self.last_ctime, self.last_size = other.last_ctime, other.last_size
        if other.verified_ctime > self.verified_ctime:
            self.verified_ctime, self.verified_at, self.verified_ok = (
                other.verified_ctime, other.verified_at, other.verified_ok)


@dataclass(frozen=True)
class Listing:
    """One storage's backups as one node lists them; ``signature`` identifies the listing's set of volids."""

    guests: Mapping[int, GuestArchives]
    signature: tuple[int, int]  # (volumes, xor of their volid hashes)


class _Reducer:
    """Folds listing entries into per-guest records, one entry at a time."""

    def __init__(self, verify: Mapping[str, tuple[int, bool, int]]) -> None:
        self.verify = verify
        self.guests: dict[int, GuestArchives] = {}
        self.count = 0
        self.mix = 0

    def add(self, entry: Mapping[str, Any]) -> None:
        # Called once per backup volume (150,000 at 5,000 guests): kept flat on purpose.
        vmid = entry.get("vmid")
        if vmid is None:
            return  # not a guest's backup (PVE gives vmid for every vzdump archive)
        volid = str(entry.get("volid", ""))
        ctime, size = entry.get("ctime") or 0, entry.get("size") or 0
        if type(vmid) is not int or type(ctime) is not int or type(size) is not int:
            vmid, ctime, size = int(vmid), int(ctime), int(size)  # PVE sends integers (Content.pm int())
        record = self.guests.get(vmid)
        if record is None:
            self.guests[vmid] = record = GuestArchives(1, size, ctime, size)
        else:
            record.count += 1
            record.total_bytes += size
            if ctime > record.last_ctime:
                record.last_ctime, record.last_size = ctime, size
        if self.verify and (verified := self.verify.get(volid)) is not None and ctime > record.verified_ctime \
                and verified[2] == size:  # another size is another file under the volid: not verified
            record.verified_ctime = ctime
            record.verified_at, record.verified_ok = verified[0], verified[1]
        self.count += 1
        self.mix ^= hash(volid)

    def listing(self) -> Listing:
        return Listing(self.guests, (self.count, self.mix))


def summarize(answer: Any, verify: Mapping[str, tuple[int, bool, int]], what: str) -> Listing:
    """Reduce one content listing (parsed); ``verify`` maps a volid to (verified_at, ok, size read)."""
    if not isinstance(answer, list):
        raise ValueError(f"{what}: expected a list, got {type(answer).__name__}")
    reducer = _Reducer(verify)
    for entry in answer:
        reducer.add(entry)
    return reducer.listing()


def summarize_body(body: bytes, verify: Mapping[str, tuple[int, bool, int]], what: str) -> Listing:
    """Reduce one content listing from PVE's JSON body: each volume is folded in as soon as it is parsed, so
    neither a list of 100,000 objects nor a decoded copy of the body ever exists."""
    reducer = _Reducer(verify)
    add = reducer.add
    for batch in data_batches(body, what):
        for entry in batch:
            if type(entry) is not dict:
                raise ValueError(f"{what}: expected volume objects, got {type(entry).__name__}")
            add(entry)
    return reducer.listing()


def merge_nodes(listings: Iterable[Listing]) -> dict[int, GuestArchives]:
    """One storage's archives over the nodes it was listed from.

    A non-shared storage is one directory per node on PVE, so each node's archives add up. Two nodes that
    list exactly the same volumes are one directory seen twice (a storage marked non-shared that is in fact
    shared, or a sandbox that serves one directory to every node): that is counted once.
    """
    merged: dict[int, GuestArchives] = {}
    seen: set[tuple[int, int]] = set()
    for listing in listings:
        if listing.signature in seen:
            continue
        seen.add(listing.signature)
        for vmid, record in listing.guests.items():
            into = merged.get(vmid)
            if into is None:
                into = merged[vmid] = GuestArchives()
            into.merge(record)
    return merged
