"""Crash-consistent changes: what one engine call did to the files, committed with the cluster state.

An engine call (a vzdump job, a restore, a prune, a node loss…) changes the model in memory and many
files on disk. It writes new data under names nobody lists (``.dat`` archives, ``.tmp`` images) and
records everything else it means to do in a ``Transaction``: renames to final names, removals, small
files (sidecars), task index lines, and the cluster's new state. ``commit`` writes that record to
``journal.json`` atomically (the commit point), applies it, then removes it.

A SIGKILL before the commit point leaves only unlisted temporary files, which ``recover`` deletes on
the next open (the call never happened); after it, ``recover`` applies the journal again. Every step
is idempotent (rename only if the source is still there, remove if present, write whole files, append
a task line only if the index lacks it), so a second crash during recovery is harmless too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic

JOURNAL_FILE = "journal.json"
CLUSTER_FILE = "cluster.json"


@dataclass
class Transaction:
    renames: list[tuple[str, str]] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)  # whole directories to delete (a lost node's disk)
    writes: list[tuple[str, str]] = field(default_factory=list)  # (path, text): sidecars, small files
    task_lines: list[tuple[str, str]] = field(default_factory=list)  # (index file, line)

    def empty(self) -> bool:
        return not (self.renames or self.removals or self.trees or self.writes or self.task_lines)

    def to_json(self, cluster: dict[str, Any]) -> dict[str, Any]:
        return {"renames": self.renames, "removals": self.removals, "trees": self.trees,
                "writes": self.writes, "task_lines": self.task_lines, "cluster": cluster}


def commit(directory: Path, txn: Transaction, cluster: dict[str, Any]) -> None:
    """Make ``txn`` and the cluster state ``cluster`` durable together, then apply them."""
    # Compact: json's C encoder (an indent takes the pure-Python one, the bulk of a small call's cost).
    state = json.dumps(cluster, sort_keys=True, separators=(",", ":"))
    if txn.empty():
        write_atomic(directory / CLUSTER_FILE, state, fsync=False)
        return
    journal = directory / JOURNAL_FILE
    write_atomic(journal, json.dumps(txn.to_json(cluster)), fsync=False)
    apply(directory, json.loads(journal.read_text()), replay=False)
    journal.unlink()


def recover(directory: Path) -> bool:
    """Finish a committed call that a crash interrupted; True when there was one."""
    journal = directory / JOURNAL_FILE
    try:
        record = json.loads(journal.read_text())
    except FileNotFoundError:
        return False
    except ValueError:
        journal.unlink()  # cannot happen with an atomic write; an unreadable record never committed
        return False
    apply(directory, record, replay=True)
    journal.unlink()
    return True


def apply(directory: Path, record: dict[str, Any], replay: bool) -> None:
    for src, dst in record["renames"]:
        with contextlib.suppress(FileNotFoundError):
            os.replace(src, dst)
    for path in record["removals"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    for tree in record["trees"]:
        shutil.rmtree(tree, ignore_errors=True)
    for path, text in record["writes"]:
        write_atomic(path, text, fsync=False)
    _append_task_lines(record["task_lines"], replay)
    write_atomic(directory / CLUSTER_FILE, json.dumps(record["cluster"], sort_keys=True, separators=(",", ":")),
                 fsync=False)


def _append_task_lines(lines: list[tuple[str, str]], replay: bool) -> None:
    by_index: dict[str, list[str]] = {}
    for index, line in lines:
        by_index.setdefault(index, []).append(line)
    for index, new in by_index.items():
        if replay:
            try:
                present = set(Path(index).read_text().splitlines())
            except FileNotFoundError:
                present = set()
            new = [line for line in new if line not in present]
        if new:
            Path(index).parent.mkdir(parents=True, exist_ok=True)
            with open(index, "a") as f:
                f.write("".join(line + "\n" for line in new))
