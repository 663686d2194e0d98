"""The apply engine's Pulumi semantics, on a recording PVE double: diff, protect, pre-flight, failure, resume.

The same behaviours are checked against the real sandbox in test_sandbox_apply.py; here each case
isolates one rule and shows the exact calls it makes (or does not make).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.helpers.recording_pve import FakePve
from tests.helpers.stacks import DELETE, mutated, shipped, write_stack
from vzkeep.apply.engine import ApplyFailed, ApplyOptions, apply_stack
from vzkeep.apply.http import PveHttpError, PveRequest


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A connection file like a sandbox's; the transport is the double, so nothing listens."""
    path = tmp_path / "sb" / "sandbox.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "127.0.0.1", "port": 8006, "fingerprint": "00",
                                "tokens": {"admin": {"user": "root@pam", "token_name": "vzkeep",
                                                     "token_value": "6f1c0d7e-5cc3-4f3e-9c43-0a6fb0a1c2d3"}}}))
    return path


@pytest.fixture
def pve() -> FakePve:
    """A cluster as it is before `pulumi up`: nodes, the inventories' guests, node-local storage."""
    fake = FakePve()
    fake.storages["local-lvm"] = {"type": "lvmthin", "content": "rootdir,images"}
    for name in ("prod", "lab", "monitoring"):
        for guest in shipped(name)["config"]["vzkeep:inventory"]:
            fake.guests[guest["vmid"]] = {"type": guest["type"], "node": guest.get("node", "pve1")}
    return fake


def members(stack: str) -> list[str]:
    return [f"{stack}-pool-member-{g['vmid']}" for g in shipped(stack)["config"]["vzkeep:inventory"]]


def apply(stack: str, sandbox: Path, pve: FakePve, root: Path | None = None, **options: object):
    return apply_stack(ApplyOptions(stack=stack, sandbox=sandbox, root=root, transport=pve, **options))  # type: ignore[arg-type]


def stack_dir(tmp_path: Path, name: str, document: dict) -> Path:
    root = tmp_path / "stacks"
    root.mkdir(exist_ok=True)
    write_stack(root, name, document)
    return root


def test_first_apply_creates_and_a_second_changes_nothing(sandbox: Path, pve: FakePve) -> None:
    first = apply("prod", sandbox, pve)
    assert sorted(first.names("create")) == sorted(["prod-backup-job", "prod-monitoring-vzkeep-prod-rules",
                                                    "prod-offsite-backup-job", "prod-offsite-nfs", "prod-pool-pool",
                                                    "prod-storage-dir", *members("prod")])
    assert {vmid: g["pool"] for vmid, g in pve.guests.items() if g.get("pool")} == dict.fromkeys(
        range(100, 105), "prod")
    assert set(pve.storages) == {"local-lvm", "backup-prod", "offsite-prod"}
    assert set(pve.jobs) == {"vzkeep-prod", "vzkeep-prod-offsite"}
    # Dependencies first: the jobs name the pool and the storages (PVE rejects unknown ones).
    order = pve.mutations()
    assert order.index("POST /api2/json/cluster/backup") > max(order.index("POST /api2/json/pools"),
                                                              order.index("POST /api2/json/storage"))
    pve.requests.clear()
    second = apply("prod", sandbox, pve)
    assert not second.changed and pve.mutations() == []
    assert sorted(second.names("same")) == sorted(first.names("create"))


def test_retention_7_to_3_updates_exactly_the_job(tmp_path: Path, sandbox: Path, pve: FakePve) -> None:
    apply("prod", sandbox, pve)
    root = stack_dir(tmp_path, "prod", mutated("prod", {"vzkeep:backup.retention.keepDaily": 3}))
    pve.requests.clear()
    result = apply("prod", sandbox, pve, root=root)
    assert result.names("update") == ["prod-backup-job"] and not result.names("create") + result.names("delete")
    assert [str(r) for r in pve.requests if r.method != "GET"] == ["PUT /api2/json/cluster/backup/vzkeep-prod"]
    assert pve.jobs["vzkeep-prod"]["prune-backups"] == "keep-daily=3,keep-monthly=3,keep-weekly=4"


def test_removing_remote_deletes_the_offsite_storage_and_job_once_unprotected(
        tmp_path: Path, sandbox: Path, pve: FakePve) -> None:
    apply("prod", sandbox, pve)
    root = stack_dir(tmp_path, "prod", mutated("prod", {"vzkeep:remote": DELETE}))
    pve.requests.clear()
    with pytest.raises(ApplyFailed) as refused:
        apply("prod", sandbox, pve, root=root)
    assert "prod-offsite-nfs: unable to delete resource" in refused.value.message
    assert "marked for protection" in refused.value.message and pve.mutations() == []
    result = apply("prod", sandbox, pve, root=root, unprotect=frozenset({"prod-offsite-nfs"}))
    assert result.names("delete") == ["prod-offsite-backup-job", "prod-offsite-nfs"]  # the job first
    assert pve.mutations() == ["DELETE /api2/json/cluster/backup/vzkeep-prod-offsite",
                               "DELETE /api2/json/storage/offsite-prod"]
    assert "offsite-prod" not in pve.storages and set(pve.jobs) == {"vzkeep-prod"}


def test_a_resource_pve_rejects_stops_the_apply_and_the_next_apply_completes(sandbox: Path, pve: FakePve) -> None:
    def reject_main_job(request: PveRequest) -> PveHttpError | None:
        if request.method == "POST" and ("id", "vzkeep-prod") in request.form:
            return PveHttpError(400, "Parameter verification failed.",
                                {"errors": {"schedule": "value does not match the regex pattern"}})
        return None

    pve.fail_on = reject_main_job
    with pytest.raises(ApplyFailed) as failed:
        apply("prod", sandbox, pve)
    message = failed.value.message
    assert message.startswith("prod-backup-job (backup job 'vzkeep-prod'): Unable to Create Backup Job")
    assert "received an HTTP 400 response - Reason: Parameter verification failed. (schedule: value does not " \
           "match the regex pattern)" in message
    kept = failed.value.result
    assert {"prod-pool-pool", "prod-storage-dir"} <= set(kept.names("create"))
    assert "vzkeep-prod" not in pve.jobs and "prod" in pve.pools
    pve.fail_on = lambda _r: None
    pve.requests.clear()
    again = apply("prod", sandbox, pve)
    assert "prod-backup-job" in again.names("create") and "prod-pool-pool" in again.names("same")
    assert "POST /api2/json/pools" not in pve.mutations()


def test_an_interrupted_apply_leaves_a_state_the_next_apply_completes(sandbox: Path, pve: FakePve) -> None:
    # The connection drops after PVE made the storage and before the apply heard back (a real kill -9 is
    # tested against the sandbox): the step is pending in the state, PVE has the storage.
    def drop_after_storage_create(request: PveRequest) -> None:
        if request.method == "POST" and request.path == "storage" and ("type", "dir") in request.form:
            raise ConnectionResetError("connection reset by peer")

    pve.after = drop_after_storage_create
    with pytest.raises(ConnectionResetError):
        apply("prod", sandbox, pve)
    assert "backup-prod" in pve.storages  # PVE has it; the apply died before writing it down
    state = json.loads((sandbox.parent / "apply" / "prod.json").read_text())
    assert "prod-storage-dir" in [p["name"] for p in state["pending"]]
    pve.after = lambda _r: None
    pve.requests.clear()
    completed = apply("prod", sandbox, pve)
    assert "prod-storage-dir" in completed.names("same")  # taken over, not created twice
    assert ("POST", "storage") not in [(r.method, r.path) for r in pve.requests if ("type", "dir") in r.form]
    assert set(pve.jobs) == {"vzkeep-prod", "vzkeep-prod-offsite"}
    pve.requests.clear()
    assert not apply("prod", sandbox, pve).changed and pve.mutations() == []


@pytest.mark.parametrize(("stack", "setup", "expected"), [
    ("monitoring", lambda p: p.guests.update({303: {"type": "qemu", "node": "pve2"}}),
     "monitoring-object-store-ct (CT 303 on pve1): VM 303 already exists on node 'pve2'"),
    ("prod", lambda p: p.storages.update({"backup-prod": {"type": "nfs"}}),
     "prod-storage-dir (dir storage 'backup-prod'): create storage failed: storage ID 'backup-prod' already "
     "defined (it is a nfs storage)"),
    ("lab", lambda p: p.nodes.remove("pve2"),
     "lab-storage-dir (dir storage 'backup-lab'): nodes: 'pve2' is not a node of this cluster (nodes: pve1)"),
])
def test_a_stack_that_does_not_fit_changes_nothing(sandbox: Path, pve: FakePve, stack: str, setup, expected) -> None:
    setup(pve)
    with pytest.raises(ApplyFailed) as failed:
        apply(stack, sandbox, pve)
    assert "does not fit this sandbox; nothing was changed" in failed.value.message
    assert expected in failed.value.message
    assert pve.mutations() == []


def test_a_container_on_an_unknown_node_fails_before_any_change(tmp_path: Path, sandbox: Path, pve: FakePve) -> None:
    root = stack_dir(tmp_path, "monitoring", mutated("monitoring", {"vzkeep:objectStore.node": "pve9"}))
    with pytest.raises(ApplyFailed) as failed:
        apply("monitoring", sandbox, pve, root=root)
    assert ("monitoring-object-store-ct (CT 303 on pve9): hostname lookup 'pve9' failed - failed to get address "
            "info for: pve9: Name or service not known") in failed.value.message
    assert pve.mutations() == []


def test_dry_run_reports_and_changes_nothing(sandbox: Path, pve: FakePve) -> None:
    result = apply("lab", sandbox, pve, dry_run=True)
    assert result.dry_run and "lab-pool-pool" in result.names("create")
    assert pve.mutations() == [] and not (sandbox.parent / "apply" / "delivered").exists()


def test_secrets_stay_in_the_state_directory(sandbox: Path, pve: FakePve) -> None:
    result = apply("monitoring", sandbox, pve)
    state_path = sandbox.parent / "apply" / "monitoring.json"
    state = json.loads(state_path.read_text())
    report = json.dumps(result.to_json())
    assert state["secrets"] and all(value not in report for value in state["secrets"].values())
    assert "6f1c0d7e-5cc3-4f3e-9c43-0a6fb0a1c2d3" not in report
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert {s["key"] for s in result.to_json()["substituted"]} >= {"proxmoxve:apiToken", "vzkeep:telegramBotToken"}
    secret_files = [p for p in (sandbox.parent / "apply" / "delivered").rglob("*")
                    if p.is_file() and any(v in p.read_text(errors="replace") for v in state["secrets"].values())]
    assert secret_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secret_files)


def test_the_shipped_stacks_have_no_unknown_resource_types(sandbox: Path, pve: FakePve) -> None:
    for name in ("prod", "lab"):
        assert shipped(name)  # the stacks the demo applies
        assert not any("is neither a PVE resource" in e.detail for e in apply(name, sandbox, pve).events)


def test_the_step_log_is_replayed_and_a_line_cut_by_a_kill_is_ignored(tmp_path: Path) -> None:
    from vzkeep.apply.state import Pending, ResourceState, StateFile

    statefile = StateFile(tmp_path, "prod")
    done = ResourceState("urn:a", "proxmoxve:index/poolLegacy:PoolLegacy", "a", "prod", {"poolId": "prod"}, {})
    statefile.record("pending", Pending("urn:a", "create", done.type, "a", "prod", done.inputs))
    statefile.record("done", done)
    statefile.record("pending", Pending("urn:b", "create", "proxmoxve:backup/job:Job", "b", "j", {}))
    with statefile.log.open("a") as log:
        log.write('{"record":"pending","item":{"urn":"urn:c"')  # the kill came mid-line
    state = statefile.load()
    assert list(state.resources) == ["urn:a"] and list(state.pending) == ["urn:b"]
    statefile.save(state)
    assert not statefile.log.exists() and list(StateFile(tmp_path, "prod").load().pending) == ["urn:b"]
