"""The user's own acceptance test, automated: create a guest in the sandbox, let the scheduled
backup run, delete the guest, restore it from the backup with `vzkeep restore`, and check that the
restored disk content is identical to the original (the sandbox's disk digest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import invoke, settle
from tests.helpers.sandbox import running_sandbox

DAY = 86400


@pytest.mark.parametrize(("kind", "vmid"), [("qemu", 150), ("lxc", 151)])
def test_create_backup_delete_restore_identical(tmp_path: Path, kind: str, vmid: int) -> None:
    with running_sandbox(tmp_path) as sb:
        api = sb.api()
        # 1. a new guest in the prod pool: covered by the prod job without any change to the job
        sb.app.call("POST", "/guests", {"vmid": vmid, "name": f"acceptance-{kind}", "type": kind, "node": "pve1",
                                        "pool": "prod", "disk_gb": 2}, router=sb.app.control)
        original = sb.sandbox.disk_digest(vmid)
        # 2. the scheduled backup runs (prod: every day at 02:00)
        sb.advance(DAY)
        settle(sb)
        backups = api.nodes("pve1").storage("backup-prod").content.get(content="backup", vmid=vmid)
        assert len(backups) == 1 and backups[0]["notes"].startswith(f"acceptance-{kind} (vmid {vmid}, env prod")
        # 3. the guest is lost
        sb.sandbox.delete_guest(vmid)
        assert all(int(g["vmid"]) != vmid for g in api.cluster.resources.get(type="vm"))
        # 4. restored by name, from its backup notes, and started
        result = invoke(sb, ["restore", f"acceptance-{kind}", "--start", "--json"], str(tmp_path / "state"))
        doc = json.loads(result.stdout)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert doc["volid"] == backups[0]["volid"] and doc["precheck"]["ok"] and doc["elapsed_seconds"] > 0
        # 5. identical content, running, back in its pool
        assert sb.sandbox.disk_digest(vmid) == original
        guest = sb.sandbox.cluster.guests[vmid]
        assert (guest.status, guest.pool, guest.name) == ("running", "prod", f"acceptance-{kind}")
