"""The node-loss scenario, told with the sandbox's own commands: a one-node cluster whose node is lost for good
with its disk, then a fresh node joins and sees the same NFS storage (``node_loss_seed``, ``save_guest_list``,
``lose_pve1``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import sandbox_cli
from tests.helpers.sandbox import RunningSandbox

NODE_LOSS_SEED = Path(__file__).with_name("node-loss-seed.yaml")  # pve1 alone, then lost; see the file
NODE_LOSS_GUESTS = (100, 101, 104)  # have an offsite copy
NO_OFFSITE_GUEST = 105  # lab: local backups only, gone with pve1
LAST_KNOWN = "guests-last-known.json"


def node_loss_seed(directory: Path) -> Path:
    path = directory / NODE_LOSS_SEED.name
    path.write_text(NODE_LOSS_SEED.read_text())
    return path


def save_guest_list(sb: RunningSandbox, path: Path) -> None:
    """What the runbook asks to keep before any loss: ``pvesh get /cluster/resources --type vm
    --output-format json``, i.e. the API's VM list, saved off the node."""
    path.write_text(json.dumps(sb.api().cluster.resources.get(type="vm"), indent=1))


def lose_pve1(sb: RunningSandbox) -> dict[int, str]:
    """pve1 is lost for good with its disk (`vzkeep sandbox node lose pve1`: its guests and the backups on
    its local storages are gone); a fresh pve2 joins the cluster with the same NFS storage. Returns the
    digests of the guests' disks, i.e. what each guest must contain once restored (their disks did not
    change after the last offsite run)."""
    digests = {vmid: sb.sandbox.disk_digest(vmid) for vmid in (*NODE_LOSS_GUESTS, NO_OFFSITE_GUEST)}
    sandbox_cli(sb, "node", "lose", "pve1")
    sandbox_cli(sb, "node", "add", "pve2", "--timezone", "Europe/Paris")
    return digests
