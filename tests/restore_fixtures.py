"""Helpers for the restore, drill, runbook and acceptance tests against a running sandbox.

- ``ClockPump``: the test sandbox's clock is stepped, and a PVE task looks running until the simulated
  clock reaches its end; the pump moves the clock in small steps while a command waits for its tasks,
  as time passes on a real cluster.
- ``invoke``: run the ``vzkeep`` CLI in-process with the sandbox connection in the environment.
- ``sandbox_cli``: a ``vzkeep sandbox …`` control command (a fault, a node added...) that must succeed.
- the node-loss scenario (``node_loss_seed``, ``save_guest_list``, ``lose_pve1``), told with the sandbox's own
  commands.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tests.sandbox_fixtures import RunningSandbox
from vzkeep.cli import app as cli_app

DAY = 86400


class ClockPump:
    """Advance the sandbox clock by ``step`` simulated seconds every ``interval`` wall seconds."""

    def __init__(self, sb: RunningSandbox, step: float = 20.0, interval: float = 0.01) -> None:
        self.sb, self.step, self.interval = sb, step, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-pump", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sb.sandbox.advance(self.step)

    def __enter__(self) -> ClockPump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settle(sb: RunningSandbox) -> None:
    """Let every task started so far end (one simulated hour), e.g. after a scheduled job run."""
    sb.advance(3600)


def with_backups(sb: RunningSandbox, days: int = 1) -> None:
    """Run the seed's jobs for ``days`` simulated days (8 days include the weekly offsite job)."""
    sb.advance(days * DAY)
    settle(sb)


# -- the CLI --------------------------------------------------------------------------------------------


def invoke(sb: RunningSandbox, args: list[str], tmp_state: str | None = None, stdin: str | None = None,
           pump: bool = True) -> Result:
    """``vzkeep ARGS`` in-process against ``sb`` (clock pumped while it runs); stdin is not a terminal."""
    env = {"VZKEEP_SANDBOX": str(sb.sandbox_json)}
    if tmp_state is not None:
        env["VZKEEP_STATE_DIR"] = tmp_state
    runner = CliRunner()
    if not pump:
        return runner.invoke(cli_app, args, env=env, input=stdin)
    with ClockPump(sb):
        return runner.invoke(cli_app, args, env=env, input=stdin)


def sandbox_cli(sb: RunningSandbox, *args: str) -> Result:
    """``vzkeep sandbox ARGS`` against ``sb`` (its control API); fails the test when the command fails."""
    result = invoke(sb, ["sandbox", *args], pump=False)
    assert result.exit_code == 0, f"vzkeep sandbox {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# -- the node-loss scenario -----------------------------------------------------------------------------------

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
