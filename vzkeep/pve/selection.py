"""Which guests a backup job selects, like pve-manager ``PVE::VZDump::get_included_guests``.

Selection order (pve-manager ``PVE/VZDump.pm`` ``get_included_guests``): ``pool`` wins, else the ``vmid`` list,
else ``all`` minus ``exclude``; a job with none of them selects nothing. ``node`` then drops guests that live on
another node. ``exclude`` only counts together with ``all`` (the API sets ``all=1`` when a job is saved with
``exclude`` and no ``pool``; a job dict without it selects nothing, as in PVE).

Coverage (``/cluster/backup-info/not-backed-up``, pve-manager ``PVE/API2/Cluster/BackupInfo.pm
get_included_vmids``) counts **every** vzdump job, enabled or not: a disabled job still "covers"
its guests there. ``covered_by_enabled_jobs`` is the stricter view vzkeep alerts on.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vzkeep.pve.values import parse_boolean

GUEST_TYPES = ("qemu", "lxc")


@dataclass(frozen=True)
class GuestRef:
    """A guest as the cluster knows it (``GET /cluster/resources?type=vm`` has every field)."""

    vmid: int
    node: str
    pool: str | None = None
    type: str = "qemu"  # qemu | lxc
    name: str | None = None

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> GuestRef:
        """Build from one ``/cluster/resources`` entry (vmid, node, type, pool?, name?)."""
        return cls(
            vmid=_vmid(resource.get("vmid"), "resource vmid"),
            node=str(resource.get("node", "")),
            pool=resource.get("pool") or None,
            type=str(resource.get("type", "qemu")),
            name=resource.get("name"),
        )


def guests_from_resources(resources: Iterable[Mapping[str, Any]]) -> list[GuestRef]:
    """The guests of a ``/cluster/resources`` answer (other resource types are skipped)."""
    return [GuestRef.from_resource(r) for r in resources if r.get("type") in GUEST_TYPES]


def included_vmids(job: Mapping[str, Any], guests: Iterable[GuestRef], *,
                   pools: Collection[str] | None = None) -> set[int]:
    """The existing guests ``job`` backs up (whether the job is enabled or not).

    ``pools``, if given, lists the pools that exist: a job naming another pool raises
    ``ValueError`` like PVE (``pool 'x' does not exist``). Without it such a job selects nothing.
    """
    per_node = included_guests_per_node(job, guests, pools=pools)
    return {vmid for node, vmids in per_node.items() if node for vmid in vmids}


def included_guests_per_node(job: Mapping[str, Any], guests: Iterable[GuestRef], *,
                             pools: Collection[str] | None = None) -> dict[str, list[int]]:
    """``get_included_guests`` itself: node -> sorted VMIDs; VMIDs listed in ``vmid`` that match no
    guest come under node ``""`` (vzdump runs them and fails visibly: "unable to find VM")."""
    by_vmid = {guest.vmid: guest for guest in guests}
    vmids = _selected_vmids(job, by_vmid, pools)
    node_filter = job.get("node")
    per_node: dict[str, list[int]] = {}
    for vmid in vmids:
        guest = by_vmid.get(vmid)
        if guest is None:
            per_node.setdefault("", []).append(vmid)
        elif node_filter is None or str(node_filter) == guest.node:
            per_node.setdefault(guest.node, []).append(vmid)
    return per_node


def not_backed_up(jobs: Iterable[Mapping[str, Any]], guests: Iterable[GuestRef]) -> list[GuestRef]:
    """``GET /cluster/backup-info/not-backed-up``: guests selected by no vzdump job, enabled or not.

    Sorted by VMID (PVE returns them in hash order).
    """
    guest_list = list(guests)
    covered: set[int] = set()
    for job in _vzdump_jobs(jobs):
        covered |= included_vmids(job, guest_list)
    return sorted((g for g in guest_list if g.vmid not in covered), key=lambda guest: guest.vmid)


def covered_by_enabled_jobs(
    jobs: Iterable[Mapping[str, Any]], guests: Iterable[GuestRef]
) -> dict[int, list[str]]:
    """Every guest's VMID -> ids of the *enabled* jobs that select it (empty list = not covered)."""
    guest_list = list(guests)
    coverage: dict[int, list[str]] = {guest.vmid: [] for guest in guest_list}
    for job in _vzdump_jobs(jobs):
        if not is_enabled(job):
            continue
        for vmid in sorted(included_vmids(job, guest_list)):
            coverage[vmid].append(str(job.get("id", "")))
    return coverage


def is_enabled(job: Mapping[str, Any]) -> bool:
    """A job's ``enabled`` flag; missing means enabled (jobs.cfg default 1)."""
    value = job.get("enabled")
    return True if value is None else _boolean(value, "enabled", job)


def _selected_vmids(job: Mapping[str, Any], by_vmid: Mapping[int, GuestRef],
                    pools: Collection[str] | None) -> list[int]:
    pool = job.get("pool")
    if _perl_true(pool):
        if pools is not None and str(pool) not in pools:
            raise ValueError(f"job '{_job_id(job)}': pool '{pool}' does not exist")
        return sorted(vmid for vmid, guest in by_vmid.items() if guest.pool == str(pool))
    if _perl_true(job.get("vmid")):
        return _check_vmids(_split_list(job["vmid"]), "vmid", job)
    if _boolean(job.get("all"), "all", job):
        excluded = set(_check_vmids(_split_list(job.get("exclude")), "exclude", job))
        return sorted(vmid for vmid in by_vmid if vmid not in excluded)
    return []


def _split_list(value: Any) -> list[str]:
    """pve-common ``PVE::Tools::split_list``: NUL-, comma-, semicolon- or blank-separated; also
    accepts a single int or a list, as callers building jobs in Python pass them."""
    if value is None or value is False:
        return []
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, list | tuple | set | frozenset):
        return [str(item) for item in value]
    text = str(value)
    if "\0" in text:
        return text.split("\0")
    return re.sub(r"[,;]", " ", text).split()


def _check_vmids(items: list[str], key: str, job: Mapping[str, Any]) -> list[int]:
    """VZDump.pm ``check_vmids``: numeric sort, leading zeros dropped, 0 skipped, others refused."""
    vmids = []
    for item in items:
        if not re.fullmatch(r"\d+", item, re.ASCII):
            raise ValueError(f"job '{_job_id(job)}': strange VM ID '{item}' in '{key}' (allowed: numbers)")
        if int(item):
            vmids.append(int(item))
    return sorted(vmids)


def _boolean(value: Any, key: str, job: Mapping[str, Any]) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return value != 0
    parsed = parse_boolean(value) if str(value).strip() else False  # an empty value is unset: false
    if parsed is not None:
        return parsed
    raise ValueError(f"job '{_job_id(job)}': {key}={value!r} is not a boolean (allowed: 0, 1, true, false)")


def _perl_true(value: Any) -> bool:
    return value not in (None, False, 0, "", "0") and value != []


def _vmid(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"{what} {value!r} is not a VMID")
    return int(value)


def _job_id(job: Mapping[str, Any]) -> str:
    return str(job.get("id", "?"))


def _vzdump_jobs(jobs: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Jobs of type vzdump (``/cluster/backup`` items carry ``type: "vzdump"``; a bare dict counts)."""
    return (job for job in jobs if job.get("type", "vzdump") == "vzdump")
