"""Every configuration change the API makes, as engine transactions.

PVE edits its configuration files under a cluster lock (``cfs_lock_file``): read, change, write, or
nothing at all when the code dies. Each context manager here is that, for one file's worth of the
emulated cluster: it takes ``cluster.lock``, hands out a private draft, and on a normal exit puts the
draft in place and persists it through the engine (``Sandbox.save``, or the access store's atomic
files); an exception discards the draft, so nothing is ever half-applied.

    jobs.cfg      -> ``jobs``        (backup jobs; the scheduler re-syncs its job states)
    storage.cfg   -> ``storages``
    user.cfg      -> ``pools`` (pools and members: the engine's model) and ``access`` (users, tokens, ACL)
    <vmid>.conf   -> ``guest``

The API handlers (``vzkeep.sandbox.api``) decide what to change, following PVE's handlers; they never
assign into the model themselves.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vzkeep.sandbox.model import Guest, Pool, Storage

if TYPE_CHECKING:
    from vzkeep.sandbox.api.access.store import AccessStore
    from vzkeep.sandbox.api.access.usercfg import Cfg

STORAGE_DIR = "storages"


@contextmanager
def jobs(sandbox: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """``cfs_lock_file('jobs.cfg')``: the backup jobs by id, as jobs.cfg stores them."""
    cluster = sandbox.cluster
    with cluster.lock:
        draft = copy.deepcopy(cluster.jobs)
        yield draft
        cluster.jobs = draft
        sandbox.jobs_changed()  # Jobs.pm synchronize_job_states_with_config, then the engine saves


@contextmanager
def storages(sandbox: Any) -> Iterator[dict[str, Storage]]:
    """``cfs_lock_file('storage.cfg')``: the storage definitions by id."""
    cluster = sandbox.cluster
    with cluster.lock:
        draft = copy.deepcopy(cluster.storages)
        yield draft
        cluster.storages = draft
        sandbox.save()


def storage_directory(sandbox: Any, storage_id: str) -> str:
    """Where a storage created through the API keeps its files: always inside the sandbox's directory,
    whatever ``path`` its configuration names (the sandbox never writes elsewhere)."""
    return str(Path(sandbox.directory) / STORAGE_DIR / storage_id)


@dataclass
class PoolsDraft:
    pools: dict[str, Pool]
    members: dict[int, str | None]  # vmid -> pool (PVE: user.cfg "vms" map)


@contextmanager
def pools(sandbox: Any) -> Iterator[PoolsDraft]:
    """The pool part of ``user.cfg``: pools, their comments and storages, and which pool holds each guest."""
    cluster = sandbox.cluster
    with cluster.lock:
        draft = PoolsDraft(copy.deepcopy(cluster.pools), {vmid: g.pool for vmid, g in cluster.guests.items()})
        yield draft
        cluster.pools = draft.pools
        for vmid, pool in draft.members.items():
            if vmid in cluster.guests:
                cluster.guests[vmid].pool = pool
        sandbox.save()


@contextmanager
def access(sandbox: Any, store: AccessStore, secrets: bool = False) -> Iterator[Cfg]:
    """The rest of ``user.cfg`` (users, tokens, groups, roles, ACL), and with ``secrets`` the token and
    password hashes (the store's own atomic files)."""
    with sandbox.cluster.lock:
        draft = store.snapshot()
        hashes = (dict(store.token_hashes), dict(store.password_hashes))
        try:
            yield draft
        except BaseException:
            store.token_hashes, store.password_hashes = hashes
            raise
        store.commit(draft, secrets=secrets)


@contextmanager
def guest(sandbox: Any, vmid: int) -> Iterator[Guest]:
    """A guest's configuration file: the draft is a copy; on success its fields replace the guest's."""
    cluster = sandbox.cluster
    with cluster.lock:
        current = cluster.guests[int(vmid)]
        draft = copy.deepcopy(current)
        yield draft
        for item in fields(Guest):
            setattr(current, item.name, getattr(draft, item.name))
        sandbox.save()
