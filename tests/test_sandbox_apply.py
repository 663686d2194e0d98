"""`vzkeep sandbox apply` against the real sandbox over HTTPS: what `pulumi up` of each stack leaves on PVE.

The sandbox is seeded from the stack files with only what exists before `pulumi up` (nodes, the
inventories' guests, node-local storage); everything else arrives through the applies, and every
assertion reads it back through the PVE API, as from a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.stacks import DELETE, ROOT, mutated, write_stack
from vzkeep.apply.engine import ApplyFailed, ApplyOptions, ApplyResult, apply_stack
from vzkeep.apply.http import PveRequest
from vzkeep.apply.state import StateFile
from vzkeep.apply.transport import SandboxInfo, SandboxTransport
from vzkeep.config import load_stack_file
from vzkeep.connection import ConnectionOptions, connect
from vzkeep.exporter.api import proxmoxer_get
from vzkeep.exporter.poller import Poller
from vzkeep.plan import plan_stack
from vzkeep.pve.privileges import EXPORTER_ROLE_PRIVILEGES
from vzkeep.sandbox.client import control
from vzkeep.sandbox.launch import Running, launch
from vzkeep.sandbox.server import CONNECTION_FILE

STACKS = ("prod", "lab", "monitoring")


def fresh_sandbox(state: Path) -> Running:
    return launch(state, stacks_root=ROOT, port=0, stepped=True)


def apply(running: Running, stack: str, root: Path | None = None, **options: Any) -> ApplyResult:
    return apply_stack(ApplyOptions(stack=stack, sandbox=running.directory / CONNECTION_FILE, root=root,
                                    advance=True, **options))


def pve(running: Running) -> Any:
    return connect(ConnectionOptions(sandbox=running.directory / CONNECTION_FILE))


def cluster_config(api: Any) -> dict[str, Any]:
    """Everything an apply may change, as the API shows it (to prove that nothing changed)."""
    return {"storage": api.storage.get(), "pools": api.pools.get(), "jobs": api.cluster.backup.get(),
            "users": api.access.users.get(), "roles": api.access.roles.get(), "acl": api.access.acl.get(),
            "guests": sorted(int(g["vmid"]) for g in api.cluster.resources.get(type="vm"))}


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, dict[str, ApplyResult]]]:
    running = fresh_sandbox(tmp_path_factory.mktemp("applied") / "sandbox")
    try:
        yield running, {stack: apply(running, stack) for stack in STACKS}
    finally:
        running.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_each_stacks_pool_storages_and_jobs_are_on_pve(applied, stack: str) -> None:
    running, results = applied
    assert results[stack].failure is None
    api = pve(running)
    plan = plan_stack(load_stack_file(ROOT / f"Pulumi.{stack}.yaml"))
    pool = api.pools.get(poolid=stack)[0]
    assert pool["comment"] == f"vzkeep environment {stack}"
    assert {int(m["vmid"]) for m in pool["members"]} == {g.vmid for g in plan.guests}
    storages = {s["storage"]: s for s in api.storage.get()}
    main = storages[f"backup-{stack}"]
    assert (main["type"], main["content"], main["path"]) == ("dir", "backup", plan.storage.path)
    assert sorted(main["nodes"].split(",")) == sorted(plan.settings.environment.nodes)
    jobs = [plan.job] + ([plan.offsite.job] if plan.offsite else [])
    for spec in jobs:
        job = api.cluster.backup(spec.id).get()
        assert (job["schedule"], job["pool"], job["storage"]) == (spec.schedule, stack, spec.storage)
        assert job["prune-backups"] == {k: str(v) for k, v in spec.prune_backups.items()}
        assert job["notes-template"] == spec.notes_template
        assert int(job["repeat-missed"]) == 0 and int(job["enabled"]) == 1
    if plan.offsite:
        offsite = storages[plan.offsite.storage.id]
        assert (offsite["type"], offsite["server"], offsite["export"]) == (
            "nfs", plan.offsite.storage.server, plan.offsite.storage.export)


def test_the_monitoring_stack_creates_the_exporters_identity_and_the_state_container(applied) -> None:
    running, _ = applied
    api = pve(running)
    role = api.access.roles("VzkeepExporter").get()
    assert sorted(p for p, on in role.items() if on) == sorted(EXPORTER_ROLE_PRIVILEGES)
    user = api.access.users("vzkeep-exporter@pve").get()
    assert int(user.get("enable", 1)) == 1
    assert any(a["ugid"] == "vzkeep-exporter@pve" and a["roleid"] == "VzkeepExporter" and a["type"] == "user"
               for a in api.access.acl.get())
    token = api.access.users("vzkeep-exporter@pve").token("exporter").get()
    assert int(token["privsep"]) == 0
    ct = api.nodes("pve1").lxc(303).status.current.get()
    assert ct["status"] == "running" and ct["name"] == "s3-state"
    assert 303 in {int(m["vmid"]) for m in api.pools.get(poolid="monitoring")[0]["members"]}


def test_a_second_apply_has_nothing_to_do(applied) -> None:
    running, _ = applied
    for stack in STACKS:
        again = apply(running, stack)
        assert not again.changed and again.requests == 0, again.to_json()
        assert set(again.names("same")) >= {f"{stack}-pool-pool", f"{stack}-backup-job"}


def test_the_exporter_with_the_stacks_token_sees_every_backup(applied) -> None:
    running, _ = applied
    control(running.directory / CONNECTION_FILE, "POST", "/advance", seconds=86_400)
    token = running.directory / "apply" / "delivered" / "prometheus.home.arpa" / "etc" / "vzkeep" / "pve-token"
    assert token.read_text().startswith("vzkeep-exporter@pve!exporter=")
    info = SandboxInfo.read(running.directory / CONNECTION_FILE)
    api = connect(ConnectionOptions(endpoint=info.url, token_file=token, fingerprint=info.fingerprint))
    snapshot = Poller(proxmoxer_get(api)).poll()
    assert snapshot.up
    backed_up = {a.vmid for a in snapshot.archives if a.count > 0}
    plans = [plan_stack(load_stack_file(ROOT / f"Pulumi.{stack}.yaml")) for stack in STACKS]
    every_guest = {g.vmid for plan in plans for g in plan.guests}
    assert every_guest <= backed_up


# -- changes -------------------------------------------------------------------------------------------

@pytest.fixture
def prod_applied(tmp_path: Path) -> Iterator[Running]:
    running = fresh_sandbox(tmp_path / "sandbox")
    try:
        apply(running, "prod")
        yield running
    finally:
        running.stop()


def test_retention_7_to_3_updates_exactly_the_job(tmp_path: Path, prod_applied: Running) -> None:
    before = cluster_config(pve(prod_applied))
    root = tmp_path / "stacks"
    root.mkdir()
    write_stack(root, "prod", mutated("prod", {"vzkeep:backup.retention.keepDaily": 3}))
    result = apply(prod_applied, "prod", root=root)
    assert result.names("update") == ["prod-backup-job"]
    assert not result.names("create") + result.names("delete") + result.names("replace")
    after = cluster_config(pve(prod_applied))
    assert next(j for j in after["jobs"] if j["id"] == "vzkeep-prod")["prune-backups"]["keep-daily"] == "3"
    assert {k: v for k, v in after.items() if k != "jobs"} == {k: v for k, v in before.items() if k != "jobs"}
    assert [j for j in after["jobs"] if j["id"] != "vzkeep-prod"] == \
        [j for j in before["jobs"] if j["id"] != "vzkeep-prod"]


def test_removing_remote_deletes_exactly_the_offsite_storage_and_job(tmp_path: Path, prod_applied: Running) -> None:
    api = pve(prod_applied)
    before = cluster_config(api)
    root = tmp_path / "stacks"
    root.mkdir()
    write_stack(root, "prod", mutated("prod", {"vzkeep:remote": DELETE}))
    with pytest.raises(ApplyFailed, match=r"prod-offsite-nfs: unable to delete resource .* marked for protection"):
        apply(prod_applied, "prod", root=root)
    assert cluster_config(api) == before
    result = apply(prod_applied, "prod", root=root, unprotect=frozenset({"prod-offsite-nfs"}))
    assert result.names("delete") == ["prod-offsite-backup-job", "prod-offsite-nfs"]
    after = cluster_config(api)
    assert [s["storage"] for s in before["storage"] if s["storage"] not in
            {s["storage"] for s in after["storage"]}] == ["offsite-prod"]
    assert [j["id"] for j in before["jobs"] if j["id"] not in {j["id"] for j in after["jobs"]}] == \
        ["vzkeep-prod-offsite"]
    assert {k: after[k] for k in ("pools", "users", "roles", "acl", "guests")} == \
        {k: before[k] for k in ("pools", "users", "roles", "acl", "guests")}


# -- bad input -----------------------------------------------------------------------------------------

@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Running]:
    running = fresh_sandbox(tmp_path / "sandbox")
    try:
        yield running
    finally:
        running.stop()


def test_a_vmid_taken_fails_before_any_change(bare: Running) -> None:
    control(bare.directory / CONNECTION_FILE, "POST", "/guests", vmid=303, name="squatter", type="qemu",
            node="pve2", disk_gb=1)
    api = pve(bare)
    before = cluster_config(api)
    with pytest.raises(ApplyFailed) as failed:
        apply(bare, "monitoring")
    assert "monitoring-object-store-ct (CT 303 on pve1): VM 303 already exists on node 'pve2'" in failed.value.message
    assert cluster_config(api) == before


def test_a_storage_id_of_another_type_fails_before_any_change(bare: Running) -> None:
    api = pve(bare)
    api.storage.post(storage="backup-prod", type="nfs", server="filer", export="/x", content="backup")
    before = cluster_config(api)
    with pytest.raises(ApplyFailed) as failed:
        apply(bare, "prod")
    assert ("prod-storage-dir (dir storage 'backup-prod'): create storage failed: storage ID 'backup-prod' already "
            "defined (it is a nfs storage)") in failed.value.message
    assert cluster_config(api) == before


def test_an_unknown_node_fails_before_any_change(tmp_path: Path, bare: Running) -> None:
    root = tmp_path / "stacks"
    root.mkdir()
    write_stack(root, "monitoring", mutated("monitoring", {"vzkeep:objectStore.node": "pve9"}))
    api = pve(bare)
    before = cluster_config(api)
    with pytest.raises(ApplyFailed) as failed:
        apply(bare, "monitoring", root=root)
    assert "monitoring-object-store-ct (CT 303 on pve9): hostname lookup 'pve9' failed" in failed.value.message
    assert cluster_config(api) == before


class _SomeoneElse(SandboxTransport):
    """Another admin creates the job `vzkeep-prod` just before the apply does: PVE refuses the apply's."""

    def send(self, request: PveRequest) -> Any:
        if request.method == "POST" and ("id", "vzkeep-prod") in request.form:
            super().send(PveRequest("POST", "cluster/backup", (("id", "vzkeep-prod"), ("schedule", "05:00"),
                                                                ("storage", "local"), ("all", "1"))))
        return super().send(request)


def test_a_resource_pve_rejects_stops_the_apply_keeping_what_was_applied(bare: Running) -> None:
    sandbox_json = bare.directory / CONNECTION_FILE
    with pytest.raises(ApplyFailed) as failed:
        apply(bare, "prod", transport=_SomeoneElse(SandboxInfo.read(sandbox_json)))
    message = failed.value.message
    assert message.startswith("prod-backup-job (backup job 'vzkeep-prod'): Unable to Create Backup Job: error "
                              "creating backup job: received an HTTP 500 response - Reason: Job 'vzkeep-prod' "
                              "already exists")
    kept = failed.value.result
    assert {"prod-pool-pool", "prod-storage-dir", "prod-offsite-nfs"} <= set(kept.names("create"))
    api = pve(bare)
    assert api.pools.get(poolid="prod") and "backup-prod" in {s["storage"] for s in api.storage.get()}
    api.cluster.backup("vzkeep-prod").delete()  # the other admin's job goes
    completed = apply(bare, "prod")
    assert "prod-backup-job" in completed.names("create") and "prod-pool-pool" in completed.names("same")
    assert api.cluster.backup("vzkeep-prod").get()["schedule"] == "02:00"


_KILLED_APPLY = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from vzkeep.apply.engine import ApplyOptions, apply_stack
    from vzkeep.apply.transport import SandboxInfo, SandboxTransport

    class DiesAfterTheStorage(SandboxTransport):
        def send(self, request):
            reply = super().send(request)
            if request.method == "POST" and request.path == "storage" and ("type", "dir") in request.form:
                os._exit(137)  # as kill -9: no cleanup, no last write
            return reply

    sandbox = Path(sys.argv[1])
    apply_stack(ApplyOptions(stack="prod", sandbox=sandbox, advance=True,
                             transport=DiesAfterTheStorage(SandboxInfo.read(sandbox))))
""")


def test_an_apply_killed_midway_is_completed_by_the_next(bare: Running) -> None:
    sandbox_json = bare.directory / CONNECTION_FILE
    killed = subprocess.run([sys.executable, "-c", _KILLED_APPLY, str(sandbox_json)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr[-2000:]
    api = pve(bare)
    assert "backup-prod" in {s["storage"] for s in api.storage.get()}
    # The kill left the step log beside the state file: the storage is noted as pending there.
    assert (bare.directory / "apply" / "prod.log").exists()
    pending = StateFile(bare.directory, "prod").load().pending
    assert "prod-storage-dir" in [p.name for p in pending.values()]
    completed = apply(bare, "prod")
    assert completed.failure is None and "prod-storage-dir" in completed.names("same")
    assert {j["id"] for j in api.cluster.backup.get()} == {"vzkeep-prod", "vzkeep-prod-offsite"}
    again = apply(bare, "prod")
    assert not again.changed and again.requests == 0



VZKEEP = Path(sys.executable).with_name("vzkeep")


def test_the_command_prints_json_for_scripts_and_progress_on_stderr(applied) -> None:
    running, _ = applied
    done = subprocess.run([str(VZKEEP), "sandbox", "apply", "--stack", "monitoring", "--json", "--advance",
                           "--sandbox", str(running.directory / CONNECTION_FILE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["created"] == report["updated"] == report["deleted"] == []
    assert "monitoring-exporter-identity-token" in report["unchanged"]
    assert report["outputs"]["pool"] == "monitoring"
    assert {n["name"] for n in report["not_applied"]} >= {"monitoring-object-store-install"}
    secrets = json.loads((running.directory / "apply" / "monitoring.json").read_text())["secrets"]
    info = SandboxInfo.read(running.directory / CONNECTION_FILE)
    assert not any(v in done.stdout + done.stderr for v in [*secrets.values(), info.token.partition("=")[2]])


def test_the_command_fails_with_status_1_naming_the_resource(bare: Running) -> None:
    control(bare.directory / CONNECTION_FILE, "POST", "/guests", vmid=303, name="squatter", type="qemu",
            node="pve2", disk_gb=1)
    done = subprocess.run([str(VZKEEP), "sandbox", "apply", "--stack", "monitoring", "--advance",
                           "--sandbox", str(bare.directory / CONNECTION_FILE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "vzkeep: error: the stack does not fit this sandbox; nothing was changed" in done.stderr
    assert "monitoring-object-store-ct (CT 303 on pve1): VM 303 already exists on node 'pve2'" in done.stderr
