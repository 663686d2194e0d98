"""Many archives: skip the unchanged ones, check the others, record every result in batches.

Standard library only: this runs on PVE nodes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vzkeep.verify import check
from vzkeep.verify.check import VerifyResult, utc
from vzkeep.verify.store import ResultStore

# A batch is written when it holds this many results or is this old: one transaction per archive would
# cost more than checking a small one, and a crash loses at most one batch.
BATCH_RESULTS = 500
BATCH_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """One archive to verify: its path, its volid when it lies on a known storage, its node's zone."""

    path: str
    volid: str | None = None
    zone: str | None = None  # None: unknown, so the name/time check is not made


def _bitrot_problem(result: VerifyResult, previous: VerifyResult | None) -> str | None:
    """A re-read with unchanged size and mtime but another hash: the bytes changed under the file system."""
    if previous is None or not previous.ok or previous.sha256 == result.sha256:
        return None
    if previous.identity != result.identity:
        return None
    return (
        f"SHA-256 differs from the one recorded on {utc(previous.verified_at)} although size and mtime are "
        "unchanged: the data changed silently (bit rot or a write that bypassed the file system)"
    )


class _Batch:
    def __init__(self, store: ResultStore | None) -> None:
        self.store = store
        self.pending: list[VerifyResult] = []
        self.since = time.monotonic()

    def add(self, result: VerifyResult) -> None:
        if self.store is None:
            return
        self.pending.append(result)
        if len(self.pending) >= BATCH_RESULTS or time.monotonic() - self.since >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.pending:
            self.store.save(self.pending)
        self.pending = []
        self.since = time.monotonic()


def verify_targets(
    targets: Iterable[Target],
    store: ResultStore | None,
    *,
    force: bool = False,
    progress_for: Callable[[str, int], Callable[[int], None] | None] | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[VerifyResult]:
    """Verify each target unless the store holds a result for the same bytes checked the same way
    (``force`` re-reads); ``clock`` dates new results (``ClusterView.clock``: the cluster's). Results are
    recorded in batches, and the pending ones when the run stops for any reason (Ctrl-C, a timeout raised
    from a signal handler), so an interrupted run keeps what it finished."""
    if store is not None:
        store.check_writable()  # created now (an older JSON store set aside), so a bad path fails before reading
    records = store.load() if store is not None else {}
    batch = _Batch(store)
    results = []
    try:
        for target in targets:
            result, changed = _one(target, store, records, force, progress_for, clock)
            if result is None:
                continue
            if changed:
                batch.add(result)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        batch.flush()
    return results


def _one(target: Target, store: ResultStore | None, records: dict[str, VerifyResult], force: bool,
         progress_for: Callable[[str, int], Callable[[int], None] | None] | None, clock: Callable[[], float]
         ) -> tuple[VerifyResult | None, bool]:
    """The target's result, and whether it is new to the store."""
    path = os.path.abspath(target.path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, False  # removed since it was listed (pruned): nothing left to verify
    cached = None if force or store is None else store.fresh(path, records, zone=target.zone, st=st)
    if cached is not None:
        if target.volid and cached.volid != target.volid:
            cached.volid = target.volid  # the same bytes, now known by their volid: record it
            return cached, True
        return cached, False
    try:
        progress = progress_for(path, st.st_size) if progress_for else None
        result = check.verify_archive(path, tz=target.zone, volid=target.volid, progress=progress, clock=clock)
    except FileNotFoundError:
        return None, False
    if rot := _bitrot_problem(result, records.get(path)):
        result.problems.append(rot)
        result.ok = False
    return result, True


def verify_paths(
    paths: Iterable[str],
    *,
    store: ResultStore | None,
    zone_for: Callable[[str], str | None] = lambda _path: None,
    volid_for: Callable[[str], str | None] = lambda _path: None,
    force: bool = False,
    progress_for: Callable[[str, int], Callable[[int], None] | None] | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[VerifyResult]:
    """``verify_targets`` for plain paths: ``zone_for(path)`` is the zone of the node that wrote it (None:
    unknown, the name/time check is reported as not made), ``volid_for(path)`` its volid (None: not on a
    known storage)."""
    targets = (Target(os.path.abspath(p), volid_for(os.path.abspath(p)), zone_for(os.path.abspath(p)))
               for p in paths)
    return verify_targets(targets, store, force=force, progress_for=progress_for, on_result=on_result, clock=clock)


def verify_many(
    paths: Iterable[str],
    store: ResultStore | None,
    *,
    force: bool = False,
    tz: str | None = None,
    volids: dict[str, str] | None = None,
    progress_for: Callable[[str, int], Callable[[int], None] | None] | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> list[VerifyResult]:
    """``verify_paths`` with one zone for every archive and volids by absolute path."""
    volids = volids or {}
    return verify_paths(paths, store=store, zone_for=lambda _p: tz, volid_for=volids.get, force=force,
                        progress_for=progress_for, on_result=on_result, clock=clock)
