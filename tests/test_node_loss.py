"""A node is lost with its disk; a fresh node that sees the same NFS storage comes up; `vzkeep restore` brings
every guest that has an offsite copy back from it, identical to what was backed up, in its environment's
pool. A guest whose backups lived only on the lost node cannot come back, and says so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import invoke, with_backups
from tests.helpers.node_loss import NO_OFFSITE_GUEST, NODE_LOSS_GUESTS, lose_pve1, node_loss_seed
from tests.helpers.sandbox import running_sandbox


def test_every_guest_with_an_offsite_copy_comes_back_on_the_fresh_node(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, seed=node_loss_seed(tmp_path)) as sb:
        with_backups(sb, days=8)  # daily local backups and one Sunday offsite run
        local_before = sb.sandbox.listing("backup-prod", "pve1")
        assert local_before  # pve1 had local backups of prod, and of lab
        assert sb.sandbox.listing("backup-lab", "pve1")
        digests = lose_pve1(sb)
        state = str(tmp_path / "state")
        listed = json.loads(invoke(sb, ["backups", "list", "--json"], state, pump=False).stdout)
        assert {b["storage"] for b in listed["backups"]} == {"offsite-prod"}  # pve1's storages died with it
        assert NO_OFFSITE_GUEST not in {b["vmid"] for b in listed["backups"]}
        for vmid in NODE_LOSS_GUESTS:
            result = invoke(sb, ["restore", str(vmid), "--storage", "offsite-prod", "--start", "--json"], state)
            doc = json.loads(result.stdout)
            assert result.exit_code == 0, result.stdout
            assert doc["volid"].startswith("offsite-prod:") and doc["node"] == "pve2" and doc["precheck"]["ok"]
        for vmid in NODE_LOSS_GUESTS:
            guest = sb.sandbox.cluster.guests[vmid]
            assert (guest.node, guest.status, guest.pool) == ("pve2", "running", "prod")
            assert sb.sandbox.disk_digest(vmid) == digests[vmid]
        lost = invoke(sb, ["restore", str(NO_OFFSITE_GUEST), "--storage", "offsite-prod", "--yes"], state)
        assert lost.exit_code != 0 and str(NO_OFFSITE_GUEST) in lost.stderr
        assert NO_OFFSITE_GUEST not in sb.sandbox.cluster.guests


def test_the_lost_nodes_storage_is_gone_not_hidden(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, seed=node_loss_seed(tmp_path)) as sb:
        with_backups(sb, days=2)
        volid = sb.sandbox.listing("backup-prod", "pve1")[0]["volid"]
        place = sb.sandbox.dump_dir("backup-prod", "pve1")
        lose_pve1(sb)
        assert not place.exists()  # deleted with the node's disk, not merely unlisted
        assert all(g.node != "pve1" for g in sb.sandbox.cluster.guests.values())
        # a fresh node with the lost one's name starts with an empty disk
        sb.sandbox.add_node("pve1")
        assert sb.sandbox.listing("backup-prod", "pve1") == []
        assert volid not in {b["volid"] for b in sb.sandbox.listing("offsite-prod", "pve1")}


def test_restoring_onto_the_lost_node_or_from_its_storage_is_refused(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, seed=node_loss_seed(tmp_path)) as sb:
        with_backups(sb, days=8)
        lose_pve1(sb)
        state = str(tmp_path / "state")
        down = invoke(sb, ["restore", "101", "--node", "pve1"], state)
        assert down.exit_code == 2 and "--node pve1: the node is offline; pick one of: pve2" in down.stderr
        missing = invoke(sb, ["restore", "101", "--storage", "backup-prod"], state)
        assert missing.exit_code == 2 and "--storage backup-prod: not available on node 'pve2'" in missing.stderr
