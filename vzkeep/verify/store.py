"""The last verification of each archive, in one SQLite file per cluster.

A result belongs to the bytes it checked: it is stored with the file's identity (size, mtime in ns, inode),
the SHA-256 the check computed, the node's zone the name was read in and the checker's version. A stored
result counts only while all of them still match (``fresh``); a file that changed or vanished is not
verified, whatever it was before.

One file per cluster (``$VZKEEP_STATE_DIR/verify/<cluster>.sqlite``): a volid such as
``local:backup/vzdump-qemu-100-….vma.zst`` names a file on one cluster only, so another cluster's result
can never be taken for this one's. SQLite (WAL, one transaction per batch) keeps a run of thousands of
archives linear, lets the exporter read while a run writes, and survives a crash at any point.

Standard library only: this runs on PVE nodes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vzkeep.verify.check import CHECKER_VERSION, VerifyResult

STATE_DIR_ENV = "VZKEEP_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/vzkeep"
RESULTS_DIR = "verify"
STORE_KIND = "vzkeep-verify"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    volid TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    zone TEXT,
    checker INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    verified_at INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_volid ON results (volid);
"""


class StoreError(ValueError):
    """The results file exists but is not a readable vzkeep verify store."""


def cluster_label(name: str) -> str:
    """A cluster's name as a file name: letters, digits, ``.``, ``_`` and ``-`` only."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"
    return label[:100]


def offline_cluster() -> str:
    """The store's name when no cluster is known (files given by path): this host's."""
    return f"host-{socket.gethostname().split('.')[0]}"


def default_results_path(cluster: str | None = None) -> Path:
    """``$VZKEEP_STATE_DIR/verify/<cluster>.sqlite`` (else under /var/lib/vzkeep); the cluster's name as
    ``vzkeep.verify.storages.cluster_name`` gives it, or this host's when none is known."""
    base = Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR) / RESULTS_DIR
    return base / f"{cluster_label(cluster or offline_cluster())}.sqlite"


class ResultStore:
    """Last verification result per archive path, bound to the file's identity (see the module doc)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_results_path()

    # -- opening ----------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._set_aside_json_store()
        try:
            if write:
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            else:
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                     isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(self._damaged(exc)) from exc
        try:
            if write:
                self._prepare(db)
            else:
                self._check_kind(db)
            yield db
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._damaged(exc)) from exc
        finally:
            db.close()

    def _set_aside_json_store(self) -> None:
        """An older vzkeep wrote its results as JSON at the same path (e.g. the timer's former verify.json). Its
        results were not bound to the node's zone nor to a checker version, so none would count: it is moved
        to ``<name>.json-v1`` and the run starts a new store, rather than failing every run until someone
        moves it by hand."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(64).lstrip()
        except OSError:
            return
        if head.startswith(b"{") and b'"archives"' in head:  # json.dumps(sort_keys=True): it comes first
            os.replace(self.path, self.path.with_name(self.path.name + ".json-v1"))

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")  # readers (the exporter) never wait for a run, nor block it
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power loss may drop the last batch, never corrupt
        db.executescript(_SCHEMA)
        kind = db.execute("SELECT value FROM meta WHERE key = 'kind'").fetchone()
        if kind is None and db.execute("SELECT count(*) FROM results").fetchone()[0] == 0:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('kind', ?), ('schema', ?)",
                       (STORE_KIND, str(SCHEMA_VERSION)))
        else:
            self._check_kind(db)

    def _check_kind(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'kind'").fetchone()
        if row is None or row[0] != STORE_KIND:
            raise StoreError(self._damaged("it has no vzkeep verify marker"))

    def _damaged(self, why: object) -> str:
        return (f"{self.path} is not a vzkeep verify results store ({why}); "
                "move it away (the next verify run starts a new one) or pass another --results")

    # -- reading ----------------------------------------------------------------------------------------
    def load(self) -> dict[str, VerifyResult]:
        """Absolute path -> last result. A missing file is an empty store; a damaged one raises StoreError."""
        if not self.path.exists():
            return {}
        with self._connect(write=False) as db:
            rows = db.execute("SELECT path, record FROM results").fetchall()
        try:
            return {path: VerifyResult.from_json(json.loads(record)) for path, record in rows}
        except (ValueError, TypeError) as exc:
            raise StoreError(self._damaged(exc)) from exc

    def fresh(self, path: str, records: dict[str, VerifyResult] | None = None, *,
              zone: str | None = None, st: os.stat_result | None = None) -> VerifyResult | None:
        """The stored result if it still describes this file as checked now: same size, mtime and inode,
        same node zone for the name/time check, same checker. Else None (read it again)."""
        record = (records if records is not None else self.load()).get(path)
        if record is None or record.checker != CHECKER_VERSION or record.zone != zone:
            return None
        try:
            st = st or os.stat(path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns, st.st_ino) != record.identity:
            return None
        record.cached = True
        return record

    # -- writing ----------------------------------------------------------------------------------------
    def save(self, results: Iterable[VerifyResult], *, forget: Iterable[str] = ()) -> None:
        """Record these results (and drop the ``forget`` paths) in one transaction."""
        rows = [(r.path, r.volid, r.size, r.mtime_ns, r.inode, r.sha256, r.zone, r.checker, int(r.ok),
                 int(r.verified_at), json.dumps(r.to_json(), sort_keys=True)) for r in results]
        gone = [(p,) for p in forget]
        if not rows and not gone:
            return
        with self._connect(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM results WHERE path = ?", gone)
                db.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def forget_missing(self, directory: str | os.PathLike[str]) -> list[str]:
        """Drop the results of archives that were in ``directory`` and are gone (pruned); return their paths.
        Without this the exporter would keep publishing archives that retention removed."""
        root = os.path.abspath(directory)
        gone = [p for p in self.load() if os.path.dirname(p) == root and not os.path.exists(p)]
        self.save([], forget=gone)
        return gone

    def check_writable(self) -> None:
        """Create (or open) the store now, so a bad --results fails before any archive is read."""
        with self._connect(write=True):
            pass
        if not os.access(self.path, os.W_OK):
            raise PermissionError(f"{self.path} is not writable")


def store_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a run writes: the file and its write-ahead log (mtime ns, size of each)."""
    try:
        main = path.stat()
    except FileNotFoundError:
        return None
    try:
        wal = Path(f"{path}-wal").stat()
        wal_stamp = (wal.st_mtime_ns, wal.st_size)
    except FileNotFoundError:
        wal_stamp = (0, 0)
    return main.st_mtime_ns, main.st_size, *wal_stamp


def load_results(path: str | os.PathLike[str] | None = None) -> dict[str, VerifyResult]:
    """Absolute archive path -> its last verification result."""
    return ResultStore(path).load()


def results_by_volid(path: str | os.PathLike[str] | None = None) -> dict[str, VerifyResult]:
    """For the exporter and ``backups list``: PVE volid (``<storage>:backup/<file>``) -> last result, for
    archives whose storage was known when they were verified. A caller must still compare the result's
    ``size`` with the volume's: a different size is another file, not a verified one."""
    return {r.volid: r for r in load_results(path).values() if r.volid}
