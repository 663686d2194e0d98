"""Helpers for the restore, drill, runbook and acceptance tests against a running sandbox.

- ``ClockPump``: the test sandbox's clock is stepped, and a PVE task looks running until the simulated
  clock reaches its end; the pump moves the clock in small steps while a command waits for its tasks,
  as time passes on a real cluster.
- ``enable_config_update``: PVE's ``PUT /nodes/{node}/{qemu|lxc}/{vmid}/config`` (what ``qm set`` /
  ``pct set`` call), which the sandbox does not serve yet; drills need it to take network links down.
  Added to the in-process sandbox only when it is missing, with PVE's semantics for the keys we send.
- ``fail_restores_midway``: a restore task that fails after PVE created the guest (``lock: create``
  or not), with PVE's error text: the fault the tool must clean up after.
- ``invoke``: run the ``vzkeep`` CLI in-process with the sandbox connection in the environment.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tests.sandbox_fixtures import RunningSandbox
from vzkeep.cli import app as cli_app
from vzkeep.sandbox.api.errors import ApiError, die, param_error
from vzkeep.sandbox.api.router import Request
from vzkeep.sandbox.api.schema import NODE, VMID, Param
from vzkeep.sandbox.model import Guest

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


# -- PUT …/config -----------------------------------------------------------------------------------------


CONFIG_KEYS = [f"net{i}" for i in range(10)] + ["tags", "description", "delete", "digest", "name", "hostname"]


def _update_config(guest_type: str):  # type: ignore[no-untyped-def]
    def handler(req: Request) -> None:
        cluster = req.app.sandbox.cluster
        with cluster.lock:
            guest = cluster.guests.get(int(req.params["vmid"]))
            if guest is None or guest.node != req.params["node"] or guest.type != guest_type:
                kind = "qemu-server" if guest_type == "qemu" else "lxc"
                raise die(f"Configuration file 'nodes/{req.params['node']}/{kind}/{req.params['vmid']}.conf' "
                          "does not exist")
            if guest.lock:
                raise die(f"{'VM' if guest_type == 'qemu' else 'CT'} is locked ({guest.lock})")
            current = _current_config(req, guest)
            for key, value in req.params.items():
                if key in ("node", "vmid", "digest", "delete"):
                    continue
                if key == "tags":
                    guest.tags = [t for t in str(value).replace(",", ";").split(";") if t]
                elif key.startswith("net") and key not in current:
                    raise param_error({key: "no such network device"})
                else:
                    guest.config[key] = str(value)
            req.app.sandbox.save()

    return handler


def _current_config(req: Request, guest: Guest) -> dict[str, Any]:
    from vzkeep.sandbox.api.guests import guest_config

    return guest_config(guest)


def enable_config_update(sb: RunningSandbox) -> None:
    """Serve PUT …/config in this in-process sandbox unless it already does."""
    router = sb.app.api
    try:
        router.resolve("PUT", "/nodes/pve1/qemu/100/config")
        return
    except ApiError:
        pass
    for kind in ("qemu", "lxc"):
        schema = {"node": NODE, "vmid": VMID, **{k: Param() for k in CONFIG_KEYS}}
        router.add("PUT", f"/nodes/{{node}}/{kind}/{{vmid}}/config", schema,
                   perm=("/vms/{vmid}", "VM.Config.Network"))(_update_config(kind))


# -- a restore that fails midway --------------------------------------------------------------------------


RESTORE_FAILURE = ("command 'set -o pipefail && zstd -q -d -c /var/lib/vz/dump/x.vma.zst | vma extract -v -r "
                   "/var/tmp/vzdumptmp1234.fifo - /var/tmp/vzdumptmp1234' failed: exit code 133")


@contextmanager
def fail_restores_midway(sb: RunningSandbox, lock: str | None = None) -> Iterator[None]:
    """Restores create the guest, write part of its disk, then fail with PVE's message; ``lock`` stays."""
    engine = sb.sandbox
    original = engine.restore

    def failing(node: str, guest_type: str, params: dict[str, Any], user: str) -> str:
        cluster = engine.cluster
        with cluster.lock:
            vmid = int(params["vmid"])
            cluster.guests[vmid] = Guest(vmid, f"restore-{vmid}", guest_type, node, status="stopped", lock=lock)
            now = engine.clock.time()
            task = engine.tasks.start(node, "qmrestore" if guest_type == "qemu" else "vzrestore", str(vmid), user, now)
            task.log("progress 42% (read 3607101440 bytes, duration 18 sec)")
            task.log("vma: restore failed - short vma extent (3584 < 3797504)")
            task.finish(now + 20, RESTORE_FAILURE)
            engine.save()
            return task.upid

    engine.restore = failing  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.restore = original  # type: ignore[method-assign]


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


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# -- the node-loss scenario (issue 7 item 3) ---------------------------------------------------------------

# pve1 runs prod with its own backup storage and an offsite NFS copy; pve2 is the fresh node that will
# replace it (down until then, as a machine not yet installed).
NODE_LOSS_SEED = """\
cluster: homelab
nodes:
  - {name: pve1, timezone: Europe/Paris}
  - {name: pve2, timezone: Europe/Paris, online: false}
storages:
  - {id: backup-prod, type: dir, nodes: [pve1], capacity: 20GiB}
  - {id: local-lvm, type: dir, content: [images, rootdir], capacity: 100GiB}
  - {id: offsite-prod, type: nfs, shared: true, server: nas.home.arpa, export: /volume1/pve-offsite,
     capacity: 50GiB}
pools:
  - {id: prod, comment: vzkeep environment prod}
guests:
  - {vmid: 100, name: traefik, type: lxc, node: pve1, pool: prod, disk: 4GiB}
  - {vmid: 101, name: postgres, type: qemu, node: pve1, pool: prod, disk: 32GiB}
  - {vmid: 104, name: home-assistant, type: qemu, node: pve1, pool: prod, disk: 16GiB}
jobs:
  - {id: vzkeep-prod, schedule: "02:00", pool: prod, storage: backup-prod, mode: snapshot, compress: zstd,
     prune-backups: "keep-daily=7", notes-template: "{{guestname}} (vmid {{vmid}}, env prod, node {{node}})"}
  - {id: vzkeep-prod-offsite, schedule: "sun 03:00", pool: prod, storage: offsite-prod, mode: snapshot,
     compress: zstd, prune-backups: "keep-weekly=4",
     notes-template: "{{guestname}} (vmid {{vmid}}, env prod, node {{node}})"}
"""
NODE_LOSS_GUESTS = (100, 101, 104)


def node_loss_seed(directory: Path) -> Path:
    path = directory / "node-loss-seed.yaml"
    path.write_text(NODE_LOSS_SEED)
    return path


def lose_pve1(sb: RunningSandbox) -> dict[int, str]:
    """pve1 dies with its storage; the fresh pve2 comes up; the lost guests' configs are removed (what
    ``pvecm delnode`` plus moving /etc/pve/nodes/pve1/* away does). Returns the digests of the newest
    offsite backups' content, i.e. what each guest must contain once restored."""
    digests = {}
    for vmid in NODE_LOSS_GUESTS:
        digests[vmid] = sb.sandbox.disk_digest(vmid)
    sb.sandbox.node_down("pve1")
    shutil.rmtree(sb.sandbox.cluster.storages["backup-prod"].path)  # its local disks are gone too
    for vmid in NODE_LOSS_GUESTS:
        sb.sandbox.delete_guest(vmid)
    sb.sandbox.node_up("pve2")
    return digests
