"""Real PVE clients from PyPI run unchanged against the sandbox: proxmoxer and prometheus-pve-exporter."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.helpers.sandbox import running_sandbox
from tests.helpers.waits import wait_until
from vzkeep.net import free_port

SEEDED_VMIDS = {100, 101, 102, 103, 104, 200, 201, 300, 301, 302, 900}
PORT_ATTEMPTS = 5
BACKUP_STORAGES = {"backup-prod", "backup-lab", "backup-monitoring", "offsite-prod", "local"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    with running_sandbox(tmp_path_factory.mktemp("clients")) as sb:
        yield sb


def test_proxmoxer_lists_seeded_guests_storages_and_not_backed_up(sandbox) -> None:
    api = sandbox.api(read_only=True)
    vms = api.cluster.resources.get(type="vm")
    assert {vm["vmid"] for vm in vms} == SEEDED_VMIDS
    storages = api.cluster.resources.get(type="storage")
    assert {s["storage"] for s in storages} == BACKUP_STORAGES
    assert api.cluster("backup-info/not-backed-up").get() == [{"vmid": 900, "type": "qemu", "name": "scratch"}]
    by_node = {n: {g["vmid"] for g in api.nodes(n).qemu.get()} for n in ("pve1", "pve2")}
    assert by_node == {"pve1": {101, 104}, "pve2": {102, 200, 900}}


def test_proxmoxer_password_login_uses_ticket_and_csrf(sandbox) -> None:
    from proxmoxer import ProxmoxAPI

    pw = sandbox.info["password"]
    api = ProxmoxAPI(sandbox.host, port=sandbox.port, user=pw["user"], password=pw["password"], verify_ssl=False)
    assert api.version.get()["release"] == "9.1"  # a sandbox is PVE 9.1.3 unless --pve-version 8
    # A write needs the CSRFPreventionToken header, which proxmoxer sends with the cookie.
    api.cluster.backup.post(id="ticket-job", schedule="sat 04:00", vmid="900", storage="local")
    assert api.cluster.backup("ticket-job").get()["vmid"] == "900"
    api.cluster.backup("ticket-job").delete()


def _start_exporter(config: Path) -> tuple[subprocess.Popen[bytes], int]:
    """pve_exporter on a port picked in advance (it takes no port 0), on another one if that was taken."""
    exe = Path(sys.executable).with_name("pve_exporter")
    assert exe.exists(), f"prometheus-pve-exporter is not installed in this venv ({exe})"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        proc = subprocess.Popen([str(exe), "--config.file", str(config), "--web.listen-address",
                                 f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda p=proc, n=port: p.poll() is not None or _listening(n), 30, "pve_exporter to listen or exit")
        if proc.poll() is None:
            return proc, port
        error = proc.stderr.read().decode()
        if "address already in use" not in error.lower():
            raise AssertionError(f"pve_exporter did not start: {error}")
    raise AssertionError(f"pve_exporter found no free port in {PORT_ATTEMPTS} attempts")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _scrape(port: int, target: str) -> str:
    reply = requests.get(f"http://127.0.0.1:{port}/pve", params={"target": target, "module": "default"}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.text


def test_prometheus_pve_exporter_sees_guests_storages_and_not_backed_up(sandbox, tmp_path: Path) -> None:
    token = sandbox.info["tokens"]["auditor"]
    config = tmp_path / "pve.yml"
    # The exporter's own config format (README): each module is passed to proxmoxer.ProxmoxAPI as-is.
    config.write_text(yaml.safe_dump({"default": {
        "user": token["user"], "token_name": token["token_name"], "token_value": token["token_value"],
        "verify_ssl": False, "port": sandbox.port}}))
    proc, port = _start_exporter(config)
    try:
        text = _scrape(port, "127.0.0.1")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    guest_ids = {int(line.split('id="', 1)[1].split('"')[0].split("/")[1])
                 for line in text.splitlines() if line.startswith("pve_guest_info{")}
    assert guest_ids == SEEDED_VMIDS
    assert 'pve_guest_info{id="qemu/101",name="postgres",node="pve1"' in text
    assert 'pve_storage_info{content="backup",id="storage/pve1/backup-prod"' in text
    assert 'pve_not_backed_up_info{id="qemu/900"} 1.0' in text
    assert 'pve_not_backed_up_total{id="cluster/homelab"} 1.0' in text
    assert 'pve_up{id="node/pve1"} 1.0' in text
    assert 'pve_version_info{release="9.1"' in text
    assert 'pve_cluster_info{id="cluster/homelab",nodes="2",quorate="1",version="2"} 1.0' in text
    assert 'pve_subscription_status{id="node/pve1",status="notfound"} 1.0' in text
