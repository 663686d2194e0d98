"""The node-loss scenario, told with the sandbox's own commands: a one-node cluster whose node is lost for good
with its disk, then a fresh node joins and sees the same NFS storage (``node_loss_seed``, ``save_guest_list``,
``lose_pve1``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import sandbox_cli
from tests.helpers.sandbox import RunningSandbox

# pve1 runs prod with its own backup storage and an offsite NFS copy, and lab with only a local backup (no
# NAS for lab: offsite copies are optional per environment). pve1 is the only node until it is lost, then a
# fresh pve2 joins (`vzkeep sandbox node add pve2`) and sees the same NFS storage.
NODE_LOSS_SEED = """\
cluster: homelab
nodes:
  - {name: pve1, timezone: Europe/Paris}
storages:
  - {id: backup-prod, type: dir, nodes: [pve1], capacity: 20GiB}
  - {id: backup-lab, type: dir, nodes: [pve1], capacity: 10GiB}
  - {id: local-lvm, type: dir, content: [images, rootdir], capacity: 100GiB}
  - {id: offsite-prod, type: nfs, shared: true, server: nas.home.arpa, export: /volume1/pve-offsite,
     capacity: 50GiB}
pools:
  - {id: prod, comment: vzkeep environment prod}
  - {id: lab, comment: vzkeep environment lab}
guests:
  - {vmid: 100, name: traefik, type: lxc, node: pve1, pool: prod, disk: 4GiB}
  - {vmid: 101, name: postgres, type: qemu, node: pve1, pool: prod, disk: 32GiB}
  - {vmid: 104, name: home-assistant, type: qemu, node: pve1, pool: prod, disk: 16GiB}
  - {vmid: 105, name: wiki, type: lxc, node: pve1, pool: lab, disk: 4GiB}
jobs:
  - {id: vzkeep-prod, schedule: "02:00", pool: prod, storage: backup-prod, mode: snapshot, compress: zstd,
     prune-backups: "keep-daily=7", notes-template: "{{guestname}} (vmid {{vmid}}, env prod, node {{node}})"}
  - {id: vzkeep-prod-offsite, schedule: "sun 03:00", pool: prod, storage: offsite-prod, mode: snapshot,
     compress: zstd, prune-backups: "keep-weekly=4",
     notes-template: "{{guestname}} (vmid {{vmid}}, env prod, node {{node}})"}
  - {id: vzkeep-lab, schedule: "03:00", pool: lab, storage: backup-lab, mode: snapshot, compress: zstd,
     prune-backups: "keep-last=3", notes-template: "{{guestname}} (vmid {{vmid}}, env lab, node {{node}})"}
"""
NODE_LOSS_GUESTS = (100, 101, 104)  # have an offsite copy
NO_OFFSITE_GUEST = 105  # lab: local backups only, gone with pve1
LAST_KNOWN = "guests-last-known.json"


def node_loss_seed(directory: Path) -> Path:
    path = directory / "node-loss-seed.yaml"
    path.write_text(NODE_LOSS_SEED)
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
