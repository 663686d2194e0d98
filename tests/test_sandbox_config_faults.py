"""The sandbox's `PUT …/config` (qm set / pct set), its fault switch `/_sandbox/faults` and
`POST /_sandbox/nodes`: shapes, PVE's semantics and error texts (qemu-server ``PVE/API2/Qemu.pm``,
pve-container ``src/PVE/API2/LXC/Config.pm``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.cli import invoke
from tests.helpers.sandbox import RunningSandbox, running_sandbox

DAY = 86400
MAC = r"BC:24:11(?::[0-9A-F]{2}){3}"


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory):
    with running_sandbox(tmp_path_factory.mktemp("config-faults")) as sandbox:
        sandbox.advance(DAY)  # one night of scheduled backups
        yield sandbox


def call(sb: RunningSandbox, method: str, path: str, token: str = "admin", **params: Any) -> tuple[int, Any]:
    """One raw request: (status, decoded body)."""
    auth = "PVEAPIToken=" + (sb.admin_token if token == "admin" else sb.auditor_token)
    url = sb.url + path if not path.startswith("/_sandbox") else sb.url.replace("/api2/json", "") + path
    kwargs: dict[str, Any] = {"params": params} if method in ("GET", "DELETE") else {"data": params}
    reply = requests.request(method, url, headers={"Authorization": auth}, verify=False, timeout=30, **kwargs)
    return reply.status_code, reply.json() if reply.content else b""


def config(sb: RunningSandbox, node: str, kind: str, vmid: int) -> dict[str, Any]:
    status, body = call(sb, "GET", f"/nodes/{node}/{kind}/{vmid}/config")
    assert status == 200, body
    return body["data"]


def put(sb: RunningSandbox, node: str, kind: str, vmid: int, **params: Any) -> tuple[int, Any]:
    return call(sb, "PUT", f"/nodes/{node}/{kind}/{vmid}/config", **params)


# -- PUT …/config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "vmid", "value", "stored"), [
    ("qemu, already normal", "qemu", 101, "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,link_down=1",
     "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,link_down=1"),
    ("qemu, model first, keys sorted, booleans 1", "qemu", 101,
     "link_down=yes,bridge=vmbr0,virtio=BC:24:11:AA:BB:CC,firewall=on",
     "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,link_down=1"),
    ("qemu, no MAC: one is made", "qemu", 101, "e1000,bridge=vmbr1", rf"e1000={MAC},bridge=vmbr1"),
    ("lxc, name first, type added", "lxc", 100, "bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,name=eth0,link_down=1",
     "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,link_down=1,type=veth"),
    ("lxc, no hwaddr: one is made", "lxc", 100, "name=eth1,bridge=vmbr0,ip=dhcp",
     rf"name=eth1,bridge=vmbr0,hwaddr={MAC},ip=dhcp,type=veth"),
])
def test_network_devices_are_stored_normalised(sb, name: str, kind: str, vmid: int, value: str, stored: str) -> None:
    status, body = put(sb, "pve1", kind, vmid, net3=value)
    assert (status, body) == (200, {"data": None}), name
    assert re.fullmatch(stored, config(sb, "pve1", kind, vmid)["net3"]), name


def test_a_running_guest_takes_links_down_tags_and_a_name_at_once(sb) -> None:
    assert sb.sandbox.cluster.guests[104].status == "running"
    net0 = config(sb, "pve1", "qemu", 104)["net0"]
    status, _ = put(sb, "pve1", "qemu", 104, net0=net0 + ",link_down=1", tags="Zeta, alpha;beta alpha",
                    name="home-assistant-2", description="drill target")
    assert status == 200
    after = config(sb, "pve1", "qemu", 104)
    assert after["net0"] == net0 + ",link_down=1" and after["tags"] == "alpha;beta;zeta"
    assert after["name"] == "home-assistant-2" and after["description"] == "drill target"
    listed = next(v for v in call(sb, "GET", "/cluster/resources", type="vm")[1]["data"] if v["vmid"] == 104)
    assert listed["tags"] == "alpha;beta;zeta" and listed["name"] == "home-assistant-2"
    assert sb.sandbox.cluster.guests[104].tags == ["alpha", "beta", "zeta"]
    assert sb.sandbox.cluster.guests[104].status == "running"


def test_delete_removes_keys_for_good_and_ignores_unset_ones(sb) -> None:
    assert put(sb, "pve2", "lxc", 103, net1="name=eth1,bridge=vmbr0", tags="a;b")[0] == 200
    status, _ = put(sb, "pve2", "lxc", 103, delete="net1,tags;description")  # description was never set
    after = config(sb, "pve2", "lxc", 103)
    assert status == 200 and "net1" not in after and "tags" not in after and after["hostname"] == "vaultwarden"
    assert put(sb, "pve2", "lxc", 103, delete="net0")[0] == 200
    assert "net0" not in config(sb, "pve2", "lxc", 103)  # a default key stays deleted


def test_digest_guards_against_concurrent_changes(sb) -> None:
    current = config(sb, "pve2", "qemu", 900)["digest"]
    assert put(sb, "pve2", "qemu", 900, tags="one", digest=current)[0] == 200
    status, body = put(sb, "pve2", "qemu", 900, tags="two", digest=current)  # stale now
    assert status == 500 and body["message"] == "checksum mismatch (file change by other user?)\n"
    lxc_digest = config(sb, "pve1", "lxc", 302)["digest"]
    assert put(sb, "pve1", "lxc", 302, tags="x")[0] == 200
    status, body = put(sb, "pve1", "lxc", 302, tags="y", digest=lxc_digest)
    assert status == 500
    assert body["message"] == "detected modified configuration - file changed by other user? Try again.\n"


@pytest.mark.parametrize(("name", "node", "kind", "vmid", "params", "status", "expected"), [
    ("unknown guest", "pve1", "qemu", 999, {"tags": "x"}, 500,
     "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist"),
    ("guest on another node", "pve1", "lxc", 201, {"tags": "x"}, 500,
     "Configuration file 'nodes/pve1/lxc/201.conf' does not exist"),
    ("nothing to do", "pve1", "qemu", 101, {}, 500, "no options specified"),
    ("unknown key in a device", "pve1", "qemu", 101, {"net0": "virtio,colour=red"}, 400,
     {"net0": "invalid format - invalid key in comma-separated list property: colour\n"}),
    ("lxc device without its name", "pve1", "lxc", 100, {"net0": "bridge=vmbr0"}, 400,
     {"net0": "invalid format - format error\nnet0.name: property is missing and it is not optional\n"}),
    ("multicast MAC", "pve1", "qemu", 101, {"net0": "virtio=01:00:5E:00:00:01"}, 400,
     {"net0": "invalid format - format error\n"
              "net0.macaddr: invalid format - value does not look like a valid unicast MAC address\n\n"}),
    ("bad tag", "pve1", "qemu", 101, {"tags": "ok;not/ok"}, 400,
     {"tags": "invalid format - invalid characters in tag\n"}),
    ("set and delete one key", "pve1", "qemu", 101, {"tags": "x", "delete": "tags"}, 400,
     {"delete": "you can't use '-tags' and -delete tags' at the same time"}),
    ("delete an unknown option", "pve1", "qemu", 101, {"delete": "colour"}, 400, {"delete": "unknown option 'colour'"}),
    ("a key PVE's schema does not have", "pve1", "qemu", 101, {"colour": "red"}, 400,
     {"colour": "property is not defined in schema and the schema does not allow additional properties"}),
    ("a memory size below the schema's minimum", "pve1", "qemu", 101, {"memory": "8"}, 400,
     {"memory": "invalid format - format error\nmemory.current: value must have a minimum value of 16\n"}),
    ("skiplock with a token", "pve1", "qemu", 101, {"tags": "x", "skiplock": "1"}, 400,
     {"skiplock": "Only root may use this option."}),
])
def test_errors_have_pves_shapes(sb, name: str, node: str, kind: str, vmid: int, params: dict[str, str],
                                 status: int, expected: Any) -> None:
    got, body = put(sb, node, kind, vmid, **params)
    assert got == status, (name, body)
    if isinstance(expected, dict):
        assert body["errors"] == expected, name
    else:
        assert body["message"] == expected + "\n", name


@pytest.mark.parametrize(("kind", "vmid", "label"), [("qemu", 101, "VM"), ("lxc", 300, "CT")])
def test_a_locked_guest_refuses_and_the_auditor_may_not_write(sb, kind: str, vmid: int, label: str) -> None:
    sb.sandbox.lock_guest(vmid, "backup")
    try:
        status, body = put(sb, "pve1", kind, vmid, tags="x")
        assert status == 500 and body["message"] == f"{label} is locked (backup)\n"
    finally:
        sb.sandbox.lock_guest(vmid, None)
    status, body = call(sb, "PUT", f"/nodes/pve1/{kind}/{vmid}/config", token="auditor", tags="x")
    assert status == 403
    assert body["message"].startswith(f"Permission check failed (/vms/{vmid}, VM.Config.Disk|")


# -- faults -----------------------------------------------------------------------------------------------


def newest_backup(sb: RunningSandbox, node: str, storage: str, vmid: int) -> str:
    entries = call(sb, "GET", f"/nodes/{node}/storage/{storage}/content", content="backup", vmid=vmid)[1]["data"]
    return max(entries, key=lambda e: e["ctime"])["volid"]


def restore(sb: RunningSandbox, node: str, kind: str, vmid: int, volid: str, **extra: Any) -> str:
    params = {"vmid": vmid, "archive": volid} if kind == "qemu" else {"vmid": vmid, "ostemplate": volid,
                                                                        "restore": 1}
    status, body = call(sb, "POST", f"/nodes/{node}/{kind}", **params, **extra)
    assert status == 200, body
    sb.advance(3600)  # the task ends on the simulated clock
    return body["data"]


def task_end(sb: RunningSandbox, node: str, upid: str) -> tuple[str, list[str]]:
    status = call(sb, "GET", f"/nodes/{node}/tasks/{upid}/status")[1]["data"]
    log = call(sb, "GET", f"/nodes/{node}/tasks/{upid}/log", limit=0)[1]["data"]
    return status["exitstatus"], [line["t"] for line in log]


def arm(sb: RunningSandbox, kind: str, count: int = 1, cleanup: int = 1) -> dict[str, Any]:
    status, body = call(sb, "POST", "/_sandbox/faults", kind=kind, count=count, cleanup=cleanup)
    assert status == 200, body
    return body["data"]


@pytest.mark.parametrize(("cleanup", "lock", "warning"), [
    (1, None, None),  # PVE removes the create lock and leaves the empty VM ("NOT cleaned up")
    (0, "create", r"unable to open file '/etc/pve/nodes/pve1/qemu-server/5102\.conf\.tmp\.\d+' - Permission denied"),
])
def test_a_vm_restore_failing_midway_logs_like_pve_and_leaves_the_vm_pve_leaves(
        sb, cleanup: int, lock: str | None, warning: str | None) -> None:
    vmid = 5101 + (1 - cleanup)
    assert arm(sb, "restore-midway", 1, cleanup) == {"kind": "restore-midway", "count": 1, "cleanup": cleanup}
    upid = restore(sb, "pve1", "qemu", vmid, newest_backup(sb, "pve1", "backup-prod", 101))
    exitstatus, log = task_end(sb, "pve1", upid)
    assert re.fullmatch(r"command 'set -o pipefail && zstd -q -d -c \S+\.vma\.zst \| vma extract -v -r "
                        r"/var/tmp/vzdumptmp(\d+)\.fifo - /var/tmp/vzdumptmp\1' failed: exit code 133", exitstatus)
    assert log[-1] == f"TASK ERROR: {exitstatus}"
    assert "vma: restore failed - short vma extent (3584 < 3797504)" in log
    assert f"temporary volume 'local-lvm:vm-{vmid}-disk-0' successfully removed" in log
    assert log[-2] == (f"error before or during data restore, some or all disks were not completely restored. "
                       f"VM {vmid} state is NOT cleaned up.")
    if warning:
        assert any(re.fullmatch(warning, line) for line in log)
    left = config(sb, "pve1", "qemu", vmid)
    assert set(left) == ({"digest", "lock"} if lock else {"digest"}) and left.get("lock") == lock
    listed = next(v for v in call(sb, "GET", "/cluster/resources", type="vm")[1]["data"] if v["vmid"] == vmid)
    assert listed["name"] == f"VM {vmid}" and listed["status"] == "stopped"
    destroyed = call(sb, "DELETE", f"/nodes/pve1/qemu/{vmid}")
    assert destroyed[0] == (500 if lock else 200)
    if lock:
        assert destroyed[1]["message"] == "VM is locked (create)\n"
    assert call(sb, "GET", "/_sandbox/faults")[1]["data"] == []  # used up


def test_a_vm_restored_over_an_existing_one_keeps_only_pves_placeholder_config(sb) -> None:
    volid = newest_backup(sb, "pve2", "backup-lab", 200)
    arm(sb, "restore-midway")
    upid = restore(sb, "pve2", "qemu", 200, volid, force=1)
    exitstatus, log = task_end(sb, "pve2", upid)
    assert exitstatus.endswith("failed: exit code 133")
    assert "no lock found trying to remove 'create'  lock" in log
    assert {k: v for k, v in config(sb, "pve2", "qemu", 200).items() if k != "digest"} == {"memory": 128}
    assert sb.sandbox.cluster.guests[200].pool == "lab"  # pool membership is not in the guest config
    again = restore(sb, "pve2", "qemu", 200, volid, force=1)  # the fault was used up: this one works
    assert task_end(sb, "pve2", again)[0] == "OK" and config(sb, "pve2", "qemu", 200)["name"] == "k3s-test"


@pytest.mark.parametrize(("name", "vmid", "force", "cleanup", "left"), [
    ("new CT", 5103, 0, 1, False),
    ("over an existing CT: gone too", 301, 1, 1, False),
    ("cleanup cannot write /etc/pve", 5104, 0, 0, True),
])
def test_a_ct_restore_failing_midway_destroys_what_pve_destroys(
        sb, name: str, vmid: int, force: int, cleanup: int, left: bool) -> None:
    if force:
        call(sb, "POST", f"/nodes/pve1/lxc/{vmid}/status/stop")
    volid = newest_backup(sb, "pve1", "backup-monitoring" if vmid == 301 else "backup-prod",
                          301 if vmid == 301 else 100)
    arm(sb, "restore-midway", 1, cleanup)
    upid = restore(sb, "pve1", "lxc", vmid, volid, **({"force": 1} if force else {}))
    exitstatus, log = task_end(sb, "pve1", upid)
    assert re.fullmatch(rf"unable to restore CT {vmid} - command 'tar xpf - --zstd .*' failed: exit code 2",
                        exitstatus), name
    assert "tar: Unexpected EOF in archive" in log and log[-1] == f"TASK ERROR: {exitstatus}"
    assert (vmid in sb.sandbox.cluster.guests) is left, name
    if left:
        assert "failed to remove config file: Permission denied" in log
        assert config(sb, "pve1", "lxc", vmid)["lock"] == "create"


def test_a_fault_counts_down_and_is_listed_until_used_up(sb) -> None:
    volid = newest_backup(sb, "pve1", "backup-prod", 104)
    arm(sb, "restore-midway", 2)
    assert call(sb, "GET", "/_sandbox/status")[1]["data"]["faults"] == [
        {"kind": "restore-midway", "count": 2, "cleanup": 1}]
    results = []
    for vmid in (5201, 5202, 5203):
        results.append(task_end(sb, "pve1", restore(sb, "pve1", "qemu", vmid, volid))[0])
    assert [r == "OK" for r in results] == [False, False, True]
    arm(sb, "config-update", 3)
    assert arm(sb, "config-update", 0) == {"kind": "config-update", "count": 0, "cleanup": 1}
    assert call(sb, "GET", "/_sandbox/faults")[1]["data"] == []
    status, body = call(sb, "POST", "/_sandbox/faults", kind="disk-on-fire")
    assert status == 400 and set(body["errors"]) == {"kind"}
    status, body = call(sb, "POST", "/_sandbox/faults", token="auditor", kind="config-update")
    assert status == 403


@pytest.mark.parametrize(("kind", "vmid", "lock_file"), [
    ("qemu", 101, "/var/lock/qemu-server/lock-101.conf"),
    ("lxc", 100, "/run/lock/lxc/pve-config-100.lock"),
])
def test_config_update_fault_is_pves_lock_timeout(sb, kind: str, vmid: int, lock_file: str) -> None:
    arm(sb, "config-update")
    status, body = put(sb, "pve1", kind, vmid, description="x")
    assert status == 500 and body["message"] == f"can't lock file '{lock_file}' - got timeout\n"
    assert put(sb, "pve1", kind, vmid, description="x")[0] == 200


def test_the_cli_arms_faults(sb) -> None:
    result = invoke(sb, ["sandbox", "fault", "restore-midway", "--count", "2", "--no-cleanup", "--json"], pump=False)
    assert result.exit_code == 0 and json.loads(result.stdout) == {"kind": "restore-midway", "count": 2, "cleanup": 0}
    result = invoke(sb, ["sandbox", "fault", "restore-midway", "--count", "0"], pump=False)
    assert result.exit_code == 0 and "disarmed" in result.stdout
    bad = invoke(sb, ["sandbox", "fault", "disk-on-fire"], pump=False)
    assert bad.exit_code == 2 and "allowed are restore-midway, config-update" in bad.stderr


# -- adding a node ----------------------------------------------------------------------------------------

ONE_NODE_SEED = """\
cluster: homelab
nodes:
  - {name: pve1, timezone: Europe/Paris}
storages:
  - {id: local-pve1, type: dir, nodes: [pve1], capacity: 10GiB}
  - {id: everywhere, type: dir, capacity: 10GiB}
  - {id: nas, type: nfs, shared: true, nodes: [pve1], server: nas.home.arpa, export: /volume1/pve, capacity: 10GiB}
pools:
  - {id: prod}
guests:
  - {vmid: 100, name: traefik, type: lxc, node: pve1, pool: prod, disk: 1GiB}
jobs:
  - {id: vzkeep-prod, schedule: "02:00", pool: prod, storage: nas, mode: snapshot, compress: zstd,
     notes-template: "{{guestname}} on {{node}}"}
"""


def test_a_fresh_node_sees_shared_and_unrestricted_storages_and_runs_jobs(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(ONE_NODE_SEED)
    with running_sandbox(tmp_path, seed=seed) as sb:
        status, body = call(sb, "POST", "/_sandbox/nodes", name="pve2", timezone="America/New_York")
        assert status == 200
        assert body["data"] == {"node": "pve2", "timezone": "America/New_York", "online": 1,
                                "storages": ["everywhere", "nas"]}
        nodes = call(sb, "GET", "/nodes")[1]["data"]
        assert [(n["node"], n["status"]) for n in nodes] == [("pve1", "online"), ("pve2", "online")]
        # Status.pm index lists every storage; one configured for other nodes only is not enabled here
        listed = call(sb, "GET", "/nodes/pve2/storage")[1]["data"]
        assert {s["storage"] for s in listed if s["enabled"]} == {"everywhere", "nas"}
        assert {s["storage"]: s["active"] for s in listed if not s["enabled"]} == {"local-pve1": 0}
        elsewhere = call(sb, "GET", "/nodes/pve2/storage/local-pve1/status")[1]["data"]
        assert (elsewhere["enabled"], elsewhere["active"], elsewhere["total"]) == (0, 0, 0)
        # a guest on the new node is backed up by its pool's job, from that node
        assert call(sb, "POST", "/_sandbox/guests", vmid=150, name="immich", type="qemu", node="pve2",
                    pool="prod", disk_gb=1)[0] == 200
        sb.advance(DAY)
        backups = call(sb, "GET", "/nodes/pve2/storage/nas/content", vmid=150)[1]["data"]
        assert len(backups) == 1 and backups[0]["notes"] == "immich on pve2"


@pytest.mark.parametrize(("params", "errors"), [
    ({"name": "pve1"}, {"name": "node 'pve1' already exists"}),
    ({"name": "pve_3"}, {"name": "invalid format - value 'pve_3' does not look like a valid node name"}),
    ({"name": "pve3", "timezone": "Mars/Olympus"},
     {"timezone": "unknown time zone 'Mars/Olympus' (use an IANA name such as 'Europe/Paris' or 'UTC')"}),
    ({}, {"name": "property is missing and it is not optional"}),
])
def test_adding_a_node_checks_its_name_and_time_zone(sb, params: dict[str, str], errors: dict[str, str]) -> None:
    status, body = call(sb, "POST", "/_sandbox/nodes", **params)
    assert status == 400 and body["errors"] == errors


def test_the_cli_adds_a_node(sb) -> None:
    result = invoke(sb, ["sandbox", "node", "add", "pve7", "--json"], pump=False)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["node"] == "pve7" and doc["timezone"] == "Europe/Paris" and "offsite-prod" in doc["storages"]
    assert "backup-prod" not in doc["storages"] and "pve7" in sb.sandbox.cluster.nodes
    again = invoke(sb, ["sandbox", "node", "add", "pve7"], pump=False)
    assert again.exit_code == 2 and "node 'pve7' already exists" in again.stderr
