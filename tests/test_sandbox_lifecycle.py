"""Sandbox lifecycle and bad input: restart, busy port, malformed seeds, connection options, controls."""

from __future__ import annotations

import hashlib
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proxmoxer.core import ResourceException

from tests.helpers.sandbox import running_sandbox
from vzkeep.connection import ConnectionConfigError, ConnectionOptions, connect, read_token_file
from vzkeep.net import free_port
from vzkeep.sandbox.control import parse_duration
from vzkeep.sandbox.launch import LaunchError, launch
from vzkeep.sandbox.seed import DEFAULT_SEED, SeedError, load_seed


def test_state_survives_restart_with_same_tokens_and_certificate(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        sb.api().cluster.backup.post(id="extra", schedule="sun 06:00", vmid="900", storage="local")
        sb.advance(86400)
        before = (sb.info, sb.api().nodes("pve1").tasks.get(limit=100))
        assert stat.S_IMODE(sb.sandbox_json.stat().st_mode) == 0o600
    with running_sandbox(tmp_path) as sb:
        info, tasks = before
        assert sb.info["tokens"] == info["tokens"] and sb.fingerprint == info["fingerprint"]
        api = sb.api()
        assert api.cluster.backup("extra").get()["vmid"] == "900"
        assert api.nodes("pve1").tasks.get(limit=100) == tasks


def test_busy_port_gives_a_clear_message(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "a") as sb, pytest.raises(LaunchError, match=r"port \d+ on 127.0.0.1 is "
                                                                  "already in use.*--port"):
        launch(tmp_path / "b", port=sb.port, stepped=True)


@pytest.mark.parametrize(("name", "text", "expect"), [
    ("yaml syntax", "nodes:\n  - {name: pve1\n", r"line 3: not valid YAML"),
    ("unknown section", "nodes: [{name: pve1}]\nvms: []\n", r"line 2: vms: unknown section"),
    ("bad vmid", "nodes: [{name: pve1}]\nguests:\n  - {vmid: 12, name: a, type: qemu, node: pve1}\n",
     r"line 3: guests\[0\].vmid: must be an integer 100..999999999, got 12"),
    ("unknown node", "nodes: [{name: pve1}]\nguests:\n\n  - {vmid: 100, name: a, type: lxc, node: pve7}\n",
     r"line 4: guests\[0\].node: unknown node 'pve7'"),
    ("bad size", "nodes: [{name: pve1}]\nstorages:\n  - {id: s1, capacity: lots}\n",
     r"line 3: storages\[0\].capacity: 'lots' is not a size"),
    ("bad time zone", "nodes:\n  - name: pve1\n    timezone: Mars/Olympus\n",
     r"line 3: nodes\[0\].timezone: unknown time zone"),
    ("unknown PVE version", "pve_version: 7\nnodes: [{name: pve1}]\n", r"line 1: pve_version: unknown PVE version '7'"),
    ("job on an unknown node", "nodes: [{name: pve1}]\njobs:\n  - id: j1\n    node: pve7\n",
     r"line 4: jobs\[0\].node: unknown node 'pve7'"),
    ("job PVE rejects", "nodes: [{name: pve1}]\njobs:\n  - {id: j1, schedule: 'daily 02:00', all: 1}\n",
     r"line 3: jobs: PVE rejects this job: schedule: invalid format - invalid calendar event"),
])
def test_malformed_seed_names_the_line(tmp_path: Path, name: str, text: str, expect: str) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(text)
    with pytest.raises((SeedError, LaunchError), match=expect):
        launch(tmp_path / "state", seed=seed, port=0, stepped=True)
    assert not (tmp_path / "state" / "cluster.json").exists()  # nothing half-seeded is left behind


def test_default_seed_is_a_consistent_cluster() -> None:
    # What a user of the default seed relies on: every guest on a node of the cluster and in a pool that
    # exists (or in none: the "not backed up" example), and every job backing up a pool that has guests to a
    # storage that holds backups on the nodes of those guests, so the first night makes an archive per job.
    seed = load_seed(DEFAULT_SEED, Path("/nonexistent"))
    cluster = seed.cluster
    assert cluster.guests and seed.jobs
    for guest in cluster.guests.values():
        assert guest.node in cluster.nodes, guest
        assert guest.pool is None or guest.pool in cluster.pools, guest
    assert any(g.pool is None for g in cluster.guests.values()), "a guest no job covers (not backed up)"
    for _line, job in seed.jobs:
        job_id = job["id"]
        members = [g for g in cluster.guests.values() if g.pool == job["pool"]]
        storage = cluster.storages[job["storage"]]
        assert members and "backup" in storage.content, job_id
        assert all(storage.nodes is None or g.node in storage.nodes for g in members), job_id


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200),
                                                ("1d", 86400), ("2w", 1209600), ("1d 6h", 108000)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_fingerprint_pin_is_enforced(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        token_file = tmp_path / "token"
        token_file.write_text(sb.auditor_token + "\n")
        good = ConnectionOptions(endpoint=f"https://127.0.0.1:{sb.port}", token_file=token_file,
                                 fingerprint=sb.fingerprint.lower())
        assert connect(good).version.get()["release"] == "9.1"
        wrong = ConnectionOptions(endpoint=f"https://127.0.0.1:{sb.port}", token_file=token_file,
                                  fingerprint="AA:" * 31 + "AA")
        with pytest.raises(Exception, match=r"(?i)fingerprint"):
            connect(wrong).version.get()


@pytest.mark.parametrize(("content", "ok"), [("monitoring@pve!exporter=abc=def", True), ("nouser=x", False),
                                             ("a@pve!t=", False), ("a@pve=secret", False)])
def test_token_file_format(tmp_path: Path, content: str, ok: bool) -> None:
    path = tmp_path / "t"
    path.write_text(content)
    if ok:
        assert read_token_file(path) == ("monitoring@pve", "exporter=abc", "def")  # split at the last '='
    else:
        with pytest.raises(ConnectionConfigError, match="USER@REALM!TOKENID=SECRET"):
            read_token_file(path)


def test_controls_fill_node_down_guest_lock_and_corrupt(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sb:
        app = sb.app
        view = app.call("POST", "/storage/backup-monitoring/fill", {"percent": "85"}, router=app.control)
        assert view["used"] == int(10 * 1024**3 * 0.85)
        app.call("POST", "/nodes/pve2/down", router=app.control)
        api = sb.api()
        with pytest.raises(ResourceException) as err:
            api.nodes("pve2").status.get()
        assert err.value.status_code == 595
        assert {v["status"] for v in api.cluster.resources.get(type="vm") if v["node"] == "pve2"} == {"unknown"}
        app.call("POST", "/guests", {"vmid": "105", "name": "immich", "type": "qemu", "node": "pve1",
                                     "pool": "prod", "disk_gb": "2"}, router=app.control)
        assert 105 in [c["id"] for c in api.cluster.backup("vzkeep-prod").included_volumes.get()["children"]]
        app.call("POST", "/guests/101/lock", {"lock": "backup"}, router=app.control)
        sb.advance(86400)
        upid = next(t["upid"] for t in api.nodes("pve1").tasks.get(typefilter="vzdump")
                    if t["starttime"] % 86400 == 3600)  # 02:00 Paris = 01:00 UTC: the prod job
        log = "\n".join(line["t"] for line in api.nodes("pve1").tasks(upid).log.get(limit=0))
        assert "ERROR: Backup of VM 101 failed - VM is locked (backup)" in log
        assert log.endswith("TASK ERROR: job errors")
        volid = api.nodes("pve1").storage("backup-prod").content.get(vmid=105)[0]["volid"]
        result = app.call("POST", "/corrupt", {"volid": volid, "how": "truncate", "offset": "100"},
                          router=app.control)
        assert result["size"] == 100
        digest = app.call("GET", "/guests/105/digest", router=app.control)["digest"]
        assert len(digest) == 64


def test_the_fingerprint_serve_prints_is_the_one_the_server_presents(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vzkeep", "sandbox", "serve", "--dir", str(tmp_path / "sb"),
                                "--port", str(port), "--stepped"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        printed = None
        while printed is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"serve exited ({process.poll()}) before printing a fingerprint"
            if line.strip().startswith("fingerprint"):
                printed = line.split()[1]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        presented = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert printed == presented
    finally:
        process.terminate()
        process.wait(timeout=20)
