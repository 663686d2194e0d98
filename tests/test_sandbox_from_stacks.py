"""`vzkeep sandbox serve --from-stacks`: what exists before `pulumi up` of the three stacks, and nothing more.

Nodes, the inventories' guests and each node's stock storages (`local`, `local-lvm`) are there; pools,
backup storages, jobs and the exporter's identity are not: they arrive through `vzkeep sandbox apply`
(test_sandbox_apply.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.stacks import ROOT, STACKS
from tests.helpers.waits import wait_until
from vzkeep.config import load_stack_file
from vzkeep.connection import ConnectionOptions, connect
from vzkeep.plan import plan_stack

VZKEEP = Path(sys.executable).parent / "vzkeep"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    state = tmp_path_factory.mktemp("from-stacks") / "sandbox"
    process = subprocess.Popen(
        [str(VZKEEP), "sandbox", "serve", "--from-stacks", "--stacks-dir", str(ROOT), "--dir", str(state),
         "--port", "0", "--stepped"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def started() -> bool:
        assert process.poll() is None, process.stdout.read()
        return (state / "sandbox.json").exists()

    wait_until(started, 30, "the sandbox to start (its sandbox.json)")
    yield connect(ConnectionOptions(sandbox=state / "sandbox.json"))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def plans():
    return {name: plan_stack(load_stack_file(ROOT / f"Pulumi.{name}.yaml")) for name in STACKS}


def test_no_pool_backup_storage_job_or_exporter_identity_yet(api):
    assert api.pools.get() == []
    assert api.cluster.backup.get() == []
    assert {s["storage"] for s in api.storage.get()} == {"local", "local-lvm"}
    assert "vzkeep-exporter@pve" not in {u["userid"] for u in api.access.users.get()}


def test_every_inventory_guest_is_on_its_node_in_no_pool(api, plans):
    guests = {int(g["vmid"]): g for g in api.cluster.resources.get(type="vm")}
    inventory = {g.vmid for plan in plans.values() for g in plan.settings.inventory}
    assert set(guests) == inventory  # the S3 server's container is the program's: not there yet
    for plan in plans.values():
        for spec in plan.guests:
            if spec.vmid in inventory:
                assert guests[spec.vmid]["node"] == spec.node and not guests[spec.vmid].get("pool")


def test_every_node_has_the_installers_local_storages(api, plans):
    nodes = {n for plan in plans.values() for n in plan.settings.environment.nodes}
    storages = {s["storage"]: s for s in api.storage.get()}
    assert (storages["local"]["type"], storages["local"]["path"]) == ("dir", "/var/lib/vz")
    assert storages["local-lvm"]["type"] == "lvmthin" and storages["local-lvm"]["content"] == "images,rootdir"
    seen = {(s["storage"], s["node"]) for s in api.cluster.resources.get(type="storage")}
    assert {(sid, node) for sid in ("local", "local-lvm") for node in nodes} <= seen


def test_the_ct_template_the_monitoring_stack_names_is_downloaded(api, plans):
    template = plans["monitoring"].settings.object_store.template
    node = plans["monitoring"].settings.object_store.node or plans["monitoring"].settings.environment.nodes[0]
    listed = {v["volid"] for v in api.nodes(node).storage("local").content.get(content="vztmpl")}
    assert template in listed
