"""vzkeep.pve.selection against pve-manager ``PVE::VZDump::get_included_guests`` and
``PVE/API2/Cluster/BackupInfo.pm`` (not-backed-up counts every vzdump job, enabled or not)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzkeep.pve.selection import (
    GuestRef,
    covered_by_enabled_jobs,
    guests_from_resources,
    included_guests_per_node,
    included_vmids,
    is_enabled,
    not_backed_up,
)

GUESTS = [
    GuestRef(100, "pve1", "prod", "qemu", "web"),
    GuestRef(101, "pve1", "prod", "lxc", "db"),
    GuestRef(102, "pve2", "prod", "qemu", "cache"),
    GuestRef(200, "pve1", "lab", "qemu", "k8s"),
    GuestRef(201, "pve2", "lab", "lxc", "ci"),
    GuestRef(300, "pve2", None, "qemu", "scratch"),
]

SELECTION_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("pool", {"pool": "prod"}, {100, 101, 102}),
    ("pool of another environment", {"pool": "lab"}, {200, 201}),
    ("pool nobody is in", {"pool": "monitoring"}, set()),
    ("pool wins over vmid and all", {"pool": "lab", "vmid": "100", "all": 1}, {200, 201}),
    ("vmid list", {"vmid": "100,201"}, {100, 201}),
    ("vmid list with blanks and semicolons", {"vmid": " 100; 201  300"}, {100, 201, 300}),
    ("vmid as an int", {"vmid": 102}, {102}),
    ("vmid as a list", {"vmid": [100, "101"]}, {100, 101}),
    ("vmid with a leading zero", {"vmid": "0100"}, {100}),
    ("vmid 0 is skipped", {"vmid": "0,100"}, {100}),
    ("vmid of a guest that does not exist", {"vmid": "100,999"}, {100}),
    ("vmid wins over all", {"vmid": "100", "all": 1}, {100}),
    ("all", {"all": 1}, {100, 101, 102, 200, 201, 300}),
    ("all as string", {"all": "1"}, {100, 101, 102, 200, 201, 300}),
    ("all as bool", {"all": True}, {100, 101, 102, 200, 201, 300}),
    ("all minus exclude", {"all": 1, "exclude": "101,300"}, {100, 102, 200, 201}),
    ("all=0 selects nothing", {"all": 0}, set()),
    ("all='false' selects nothing", {"all": "false"}, set()),
    ("exclude without all selects nothing", {"exclude": "101"}, set()),
    ("nothing selects nothing", {}, set()),
    ("node restricts pool", {"pool": "prod", "node": "pve1"}, {100, 101}),
    ("node restricts vmid list", {"vmid": "100,102", "node": "pve2"}, {102}),
    ("node restricts all", {"all": 1, "node": "pve2", "exclude": "201"}, {102, 300}),
    ("node nobody is on", {"all": 1, "node": "pve9"}, set()),
    ("disabled job still selects", {"pool": "prod", "enabled": 0}, {100, 101, 102}),
]


@pytest.mark.parametrize(
    ("job", "expected"), [c[1:] for c in SELECTION_CASES], ids=[c[0] for c in SELECTION_CASES]
)
def test_included_vmids(job: dict[str, Any], expected: set[int]) -> None:
    assert included_vmids(job, GUESTS) == expected


def test_per_node_view_lists_missing_guests_under_empty_node() -> None:
    # get_included_guests puts unknown VMIDs under '' so vzdump "visibly fails later" on them.
    per_node = included_guests_per_node({"vmid": "999,102,100,0100"}, GUESTS)
    assert per_node == {"": [999], "pve2": [102], "pve1": [100, 100]}


def test_per_node_view_drops_guests_on_other_nodes_but_keeps_missing_ones() -> None:
    per_node = included_guests_per_node({"vmid": "100,102,999", "node": "pve1"}, GUESTS)
    assert per_node == {"pve1": [100], "": [999]}


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"id": "j1", "vmid": "100,abc"}, "job 'j1': strange VM ID 'abc' in 'vmid'"),
        ({"id": "j2", "all": 1, "exclude": "-1"}, "job 'j2': strange VM ID '-1' in 'exclude'"),
        ({"id": "j3", "all": "maybe"}, "job 'j3': all='maybe' is not a boolean"),
    ],
)
def test_bad_job_values_are_named(job: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        included_vmids(job, GUESTS)


def test_unknown_pool_fails_like_pve_when_pools_are_known() -> None:
    with pytest.raises(ValueError, match="pool 'prd' does not exist"):
        included_vmids({"id": "vzkeep-prod", "pool": "prd"}, GUESTS, pools={"prod", "lab"})
    assert included_vmids({"pool": "prod"}, GUESTS, pools={"prod", "lab"}) == {100, 101, 102}


JOBS = [
    {"id": "vzkeep-prod", "type": "vzdump", "pool": "prod", "enabled": 1},
    {"id": "vzkeep-lab", "type": "vzdump", "pool": "lab", "enabled": "0"},
    {"id": "adhoc", "type": "vzdump", "vmid": "100"},  # no enabled key: enabled
]


def test_not_backed_up_counts_disabled_jobs_like_pve() -> None:
    # The lab job is disabled, yet PVE's not-backed-up still treats its guests as covered.
    assert not_backed_up(JOBS, GUESTS) == [GuestRef(300, "pve2", None, "qemu", "scratch")]


def test_not_backed_up_without_jobs_is_every_guest_sorted() -> None:
    assert [g.vmid for g in not_backed_up([], reversed(GUESTS))] == [100, 101, 102, 200, 201, 300]


def test_not_backed_up_ignores_other_job_types() -> None:
    jobs = [{"id": "sync", "type": "realm-sync", "all": 1}]
    assert len(not_backed_up(jobs, GUESTS)) == len(GUESTS)


def test_covered_by_enabled_jobs_ignores_disabled_ones() -> None:
    assert covered_by_enabled_jobs(JOBS, GUESTS) == {
        100: ["vzkeep-prod", "adhoc"],
        101: ["vzkeep-prod"],
        102: ["vzkeep-prod"],
        200: [],
        201: [],
        300: [],
    }


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, True), (1, True), ("1", True), (True, True), (0, False), ("0", False), (False, False)],
)
def test_job_enabled(value: Any, enabled: bool) -> None:
    job = {} if value is None else {"enabled": value}
    assert is_enabled(job) is enabled


def test_guests_from_resources_reads_cluster_resources() -> None:
    resources = [
        {"id": "qemu/100", "vmid": 100, "node": "pve1", "type": "qemu", "name": "web", "pool": "prod"},
        {"id": "lxc/101", "vmid": "101", "node": "pve1", "type": "lxc", "status": "unknown"},
        {"id": "storage/pve1/local", "type": "storage", "node": "pve1"},
    ]
    assert guests_from_resources(resources) == [
        GuestRef(100, "pve1", "prod", "qemu", "web"),
        GuestRef(101, "pve1", None, "lxc", None),
    ]


_guests = st.lists(
    st.builds(
        GuestRef,
        vmid=st.integers(100, 130),
        node=st.sampled_from(["pve1", "pve2"]),
        pool=st.sampled_from([None, "prod", "lab"]),
        type=st.sampled_from(["qemu", "lxc"]),
    ),
    unique_by=lambda guest: guest.vmid,
    max_size=20,
)
_jobs = st.lists(
    st.one_of(
        st.builds(dict, pool=st.sampled_from(["prod", "lab"]), enabled=st.sampled_from([0, 1])),
        st.builds(
            dict, vmid=st.lists(st.integers(100, 130), min_size=1).map(lambda v: ",".join(map(str, v)))
        ),
        st.builds(
            dict, all=st.just(1), exclude=st.lists(st.integers(100, 130)).map(lambda v: ",".join(map(str, v)))
        ),
    ).map(lambda job: {**job, "id": f"job-{id(job) % 1000}"}),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(_guests, _jobs)
def test_every_guest_is_either_covered_or_not_backed_up(
    guests: list[GuestRef], jobs: list[dict[str, Any]]
) -> None:
    missing = {guest.vmid for guest in not_backed_up(jobs, guests)}
    selected = set().union(*(included_vmids(job, guests) for job in jobs)) if jobs else set()
    assert missing | selected == {guest.vmid for guest in guests}
    assert not missing & selected
    enabled_cover = covered_by_enabled_jobs(jobs, guests)
    assert {vmid for vmid, ids in enabled_cover.items() if ids} <= selected
