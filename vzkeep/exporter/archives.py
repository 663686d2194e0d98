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

    def add(self, ctime: int, size: int, verified: tuple[int, bool] | None) -> None:
        self.count += 1
        self.total_bytes += size
        if ctime > self.last_ctime or self.count == 1:
            self.last_ctime, self.last_size = ctime, size
        if verified is not None and ctime > self.verified_ctime:
            self.verified_ctime = ctime
            self.verified_at, self.verified_ok = verified

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


def summarize(answer: Any, verify: Mapping[str, tuple[int, bool]], what: str) -> Listing:
    """Reduce one content listing; ``verify`` maps a volid to (verified_at, ok)."""
    if not isinstance(answer, list):
        raise ValueError(f"{what}: expected a list, got {type(answer).__name__}")
    guests: dict[int, GuestArchives] = {}
    count = mix = 0
    for entry in answer:
        vmid = entry.get("vmid")
        if vmid is None:
            continue  # not a guest's backup (PVE lists vmid for every vzdump archive)
        volid = str(entry.get("volid", ""))
        record = guests.get(int(vmid))
        if record is None:
            record = guests[int(vmid)] = GuestArchives()
        record.add(int(entry.get("ctime") or 0), int(entry.get("size") or 0), verify.get(volid))
        count += 1
        mix ^= hash(volid)
    return Listing(guests, (count, mix))


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
