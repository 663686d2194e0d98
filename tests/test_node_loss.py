"""Issue 7 item 3: a node is lost with its local storage; a fresh node that sees the same NFS storage
comes up; `vzkeep restore` brings every guest back from the offsite archives, identical to what was
backed up, in its environment's pool."""

from __future__ import annotations

import json
from pathlib import Path

from tests.restore_fixtures import NODE_LOSS_GUESTS, invoke, lose_pve1, node_loss_seed, with_backups
from tests.sandbox_fixtures import running_sandbox


def test_every_guest_of_the_lost_node_comes_back_from_offsite_on_the_fresh_node(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, seed=node_loss_seed(tmp_path)) as sb:
        with_backups(sb, days=8)  # daily local backups and one Sunday offsite run
        digests = lose_pve1(sb)
        state = str(tmp_path / "state")
        listed = json.loads(invoke(sb, ["backups", "list", "--json"], state, pump=False).stdout)
        assert {b["storage"] for b in listed["backups"]} == {"offsite-prod"}  # pve1's storage died with it
        assert "node 'pve1' is offline: its storage 'backup-prod' was not listed" in listed["warnings"]
        for vmid in NODE_LOSS_GUESTS:
            result = invoke(sb, ["restore", str(vmid), "--start", "--json"], state)
            doc = json.loads(result.stdout)
            assert result.exit_code == 0, result.stdout
            assert doc["volid"].startswith("offsite-prod:") and doc["node"] == "pve2" and doc["precheck"]["ok"]
        for vmid in NODE_LOSS_GUESTS:
            guest = sb.sandbox.cluster.guests[vmid]
            assert (guest.node, guest.status, guest.pool) == ("pve2", "running", "prod")
            assert sb.sandbox.disk_digest(vmid) == digests[vmid]


def test_restoring_onto_the_lost_node_or_from_its_storage_is_refused(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, seed=node_loss_seed(tmp_path)) as sb:
        with_backups(sb, days=8)
        lose_pve1(sb)
        state = str(tmp_path / "state")
        down = invoke(sb, ["restore", "101", "--node", "pve1"], state)
        assert down.exit_code == 2 and "--node pve1: the node is offline; pick one of: pve2" in down.stderr
        missing = invoke(sb, ["restore", "101", "--storage", "backup-prod"], state)
        assert missing.exit_code == 2 and "--storage backup-prod: not available on node 'pve2'" in missing.stderr
