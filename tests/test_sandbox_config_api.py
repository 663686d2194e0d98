"""The configuration a provider manages through the sandbox's API, as PVE answers it: ``/storage``,
``/pools``, ``/nodes/{node}/time``, and what differs between PVE 9.1 and 8.4.

Expected texts are PVE's: pve-storage ``src/PVE/API2/Storage/Config.pm`` with pve-common
``src/PVE/SectionConfig.pm``, pve-manager ``PVE/API2/Pool.pm``, ``PVE/API2/Nodes.pm``,
``PVE/API2/Version.pm``, pve-access-control ``src/PVE/RPCEnvironment.pm`` (``check_pool_exist``).
"""

from __future__ import annotations

import calendar
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from vzkeep.cli import app as cli
from vzkeep.sandbox.api.access.auth import ROOT, Principal
from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.launch import LaunchError, open_or_create
from vzkeep.sandbox.server import SandboxApp, make_app

START = 1764547200  # 2025-12-01 00:00 UTC


def make(tmp: Path, version: str = "9") -> SandboxApp:
    sandbox, _ = open_or_create(tmp / "state", stepped=True, start_epoch=START, pve_version=version)
    return make_app(sandbox, tmp / "state", verify_results=True)


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, SandboxApp]]:
    with tempfile.TemporaryDirectory(prefix="vzkeep-config-api-") as tmp:
        yield {v: make(Path(tmp) / v, v) for v in ("9", "8")}


@pytest.fixture(scope="module")
def app(apps: dict[str, SandboxApp]) -> SandboxApp:
    return apps["9"]


def call(app: SandboxApp, method: str, route: str, /, **params: Any) -> Any:
    return app.call(method, route, params, ROOT)


def refused(app: SandboxApp, method: str, route: str, who: Principal = ROOT, /, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        app.call(method, route, params, who)
    return err.value


# -- /storage ------------------------------------------------------------------------------------------------


def test_a_dir_storage_round_trip(app) -> None:
    assert call(app, "POST", "/storage", storage="usb", type="dir", path="/mnt/usb/", content="backup,iso",
                nodes="pve1", **{"prune-backups": "keep-last=3"}) == {"storage": "usb", "type": "dir"}
    view = call(app, "GET", "/storage/usb")
    assert {k: v for k, v in view.items() if k != "digest"} == {
        "storage": "usb", "type": "dir", "path": "/mnt/usb", "content": "backup,iso", "nodes": "pve1",
        "prune-backups": "keep-last=3"}  # DirPlugin check_config: the trailing slash goes (canonpath)
    assert len(view["digest"]) == 40
    files = Path(app.cluster.storages["usb"].path)
    assert files.is_relative_to(Path(app.sandbox.directory))  # the sandbox never writes to /mnt/usb
    listed = {s["storage"]: s for s in call(app, "GET", "/nodes/pve1/storage")}
    assert listed["usb"]["enabled"] == 1 and listed["usb"]["active"] == 1
    call(app, "PUT", "/storage/usb", digest=view["digest"], delete="nodes", disable="1")
    after = call(app, "GET", "/storage/usb")
    assert "nodes" not in after and after["disable"] == 1
    error = refused(app, "PUT", "/storage/usb", digest=view["digest"], comment="stale")
    assert error.status == 400  # comment is no storage property at all (the schema)
    error = refused(app, "PUT", "/storage/usb", digest=view["digest"], disable="0")
    assert error.message == ("update storage failed: detected modified configuration - file changed by other "
                             "user? Try again.\n")
    call(app, "DELETE", "/storage/usb")
    assert refused(app, "GET", "/storage/usb").message == "storage 'usb' does not exist\n"


@pytest.mark.parametrize(("params", "message"), [
    ({"storage": "s1", "type": "dir", "path": "/x", "server": "nas"}, "unexpected property 'server'\n"),
    ({"storage": "s1", "type": "dir"}, "missing value for required option 'path'\n"),
    ({"storage": "s1", "type": "dir", "path": "/a b"}, "illegal path for directory storage: /a b\n"),
    ({"storage": "s1", "type": "dir", "path": "/x", "content": "none,backup"},
     "unable to combine 'none' with other content types\n"),
    ({"storage": "local", "type": "dir", "path": "/x"}, "create storage failed: storage ID 'local' already defined\n"),
])
def test_storage_creation_refusals(app, params: dict[str, str], message: str) -> None:
    error = refused(app, "POST", "/storage", **params)
    assert (error.status, error.message) == (500, message)


def test_storage_update_refusals_leave_the_storage_as_it_was(app) -> None:
    call(app, "POST", "/storage", storage="nas9", type="nfs", server="nas.home.arpa", export="/volume1/pve")
    before = call(app, "GET", "/storage/nas9")
    assert before["shared"] == 1 and before["path"] == "/mnt/pve/nas9"  # NFSPlugin: shared, default path
    for params, message in (
        ({"server": "other"}, "can't change value of fixed parameter 'server'\n"),
        ({"delete": "export"}, "unable to delete required option 'export'\n"),
        ({"delete": "colour"}, "no such option 'colour'\n"),
        ({"content": "backup", "delete": "content"}, "cannot set and delete property 'content' at the same time!\n"),
    ):
        assert refused(app, "PUT", "/storage/nas9", **params).message == "update storage failed: " + message
    assert call(app, "GET", "/storage/nas9") == before


def test_deleting_a_storage_removes_its_acl_and_pool_membership(app) -> None:
    call(app, "POST", "/storage", storage="gone", type="dir", path="/srv/gone")
    call(app, "POST", "/pools", poolid="holder")
    call(app, "PUT", "/pools", poolid="holder", storage="gone")
    call(app, "PUT", "/access/acl", path="/storage/gone", roles="PVEAuditor", users="prometheus@pve")
    call(app, "DELETE", "/storage/gone")
    assert call(app, "GET", "/pools", poolid="holder")[0]["members"] == []
    assert not [e for e in call(app, "GET", "/access/acl") if e["path"] == "/storage/gone"]


def test_the_auditor_may_list_storages_but_not_read_their_configuration(app) -> None:
    auditor = Principal("prometheus@pve!monitoring", token=True)
    assert {s["storage"] for s in app.call("GET", "/storage", {}, auditor)} >= {"local", "backup-prod"}
    assert refused(app, "GET", "/storage/local", auditor).message == (
        "Permission check failed (/storage/local, Datastore.Allocate)\n")


# -- /pools --------------------------------------------------------------------------------------------------


def test_pools_in_both_shapes(app) -> None:
    call(app, "POST", "/pools", poolid="media", comment="jellyfin")
    call(app, "PUT", "/pools/media", vms="900")  # the 8.x shape, still served
    [media] = call(app, "GET", "/pools", poolid="media")  # the 9.x shape
    assert media["poolid"] == "media" and media["comment"] == "jellyfin"
    assert [(m["id"], m["vmid"]) for m in media["members"]] == [("qemu/900", 900)]
    assert call(app, "GET", "/pools/media")["members"] == media["members"]
    assert refused(app, "PUT", "/pools", poolid="prod", vms="900").message == (
        "update pools failed: VM 900 belongs already to pool 'media' and 'allow-move' is not set\n")
    call(app, "PUT", "/pools", poolid="prod", vms="900", **{"allow-move": "1"})
    assert app.cluster.guests[900].pool == "prod"
    assert refused(app, "DELETE", "/pools", poolid="prod").message == (
        "delete pool failed: pool 'prod' is not empty (contains VM 100)\n")
    call(app, "PUT", "/pools", poolid="prod", vms="900", delete="1")
    call(app, "DELETE", "/pools", poolid="media")
    assert refused(app, "GET", "/pools", poolid="media").message == "pool 'media' does not exist\n"


@pytest.mark.parametrize(("version", "outcome"), [
    ("9", "create pool failed: pool name must start with a letter\n"), ("8", None)])
def test_pool_names_must_start_with_a_letter_since_9(apps, version: str, outcome: str | None) -> None:
    app = apps[version]
    if outcome is None:
        call(app, "POST", "/pools", poolid="2nd")
        assert "2nd" in app.cluster.pools
    else:
        assert refused(app, "POST", "/pools", poolid="2nd").message == outcome


def test_an_unknown_pool_is_a_403_where_pve_checks_it(app) -> None:
    expected = "Permission check failed (pool 'nope' does not exist)\n"
    error = refused(app, "POST", "/cluster/backup", schedule="daily", pool="nope")
    assert (error.status, error.message) == (403, expected)
    volid = app.sandbox.listing("backup-prod", "pve1") or None
    error = refused(app, "POST", "/nodes/pve1/qemu", vmid="7001", archive="local:backup/x.vma.zst", pool="nope")
    assert (error.status, error.message) == (403, expected), volid


# -- /nodes/{node}/time, /version ------------------------------------------------------------------------------


def test_node_time_is_the_sandbox_clock_in_the_nodes_zone(app) -> None:
    app.sandbox.add_node("pve9", timezone="America/New_York")
    reply = call(app, "GET", "/nodes/pve9/time")
    now = int(app.sandbox.clock.now())
    local = datetime.fromtimestamp(now, ZoneInfo("America/New_York"))
    assert reply == {"timezone": "America/New_York", "time": now, "localtime": calendar.timegm(local.timetuple())}
    assert reply["localtime"] - reply["time"] in (-5 * 3600, -4 * 3600)


@pytest.mark.parametrize(("version", "info", "kernel"), [
    ("9", {"version": "9.1.3", "release": "9.1", "repoid": "5829c814947b3364"}, "6.17.2-1-pve"),
    ("8", {"version": "8.4.0", "release": "8.4", "repoid": "ec58e45e1bcdf2ac"}, "6.8.12-9-pve"),
])
def test_version_strings(apps, version: str, info: dict[str, str], kernel: str) -> None:
    app = apps[version]
    assert call(app, "GET", "/version") == info == call(app, "GET", "/nodes/pve1/version")
    status = call(app, "GET", "/nodes/pve1/status")
    assert status["pveversion"] == f"pve-manager/{info['version']}/{info['repoid']}"
    assert status["current-kernel"]["release"] == kernel


@pytest.mark.parametrize(("route", "params", "accepted_by"), [
    ("/cluster/backup", {"notification-policy": "never"}, {"8"}),  # the 8.x notification options
    ("/cluster/backup", {"notification-target": "mail-to-root"}, {"8"}),
    ("/storage", {"storage": "m1", "type": "dir", "path": "/m1", "maxfiles": "3"}, {"8"}),  # storage maxfiles
    ("/nodes/pve1/lxc", {"vmid": "7002", "entrypoint": "/sbin/init"}, {"9"}),  # application containers
    ("/nodes/pve1/qemu", {"vmid": "7003", "ha-managed": "1"}, {"9"}),
])
def test_what_each_version_accepts(apps, route: str, params: dict[str, str], accepted_by: set[str]) -> None:
    extra = {"/cluster/backup": {"schedule": "daily", "all": "1"},
             "/nodes/pve1/lxc": {"ostemplate": "local:vztmpl/debian-13.tar.zst"}}.get(route, {})
    for version, app in apps.items():
        try:
            app.api.prepare("POST", route, {**extra, **params}, ROOT)
            accepted = True
        except ApiError as exc:
            expected = set(params) - {"vmid", "storage", "type", "path"}
            assert exc.status == 400 and set(exc.errors or {}) == expected, exc.errors
            accepted = False
        assert accepted == (version in accepted_by), (version, route, params)


def test_pve_8_turns_maxfiles_into_prune_backups(apps) -> None:
    app = apps["8"]
    call(app, "POST", "/cluster/backup", id="legacy", schedule="daily", all="1", storage="local", maxfiles="4")
    assert call(app, "GET", "/cluster/backup/legacy")["prune-backups"] == {"keep-last": "4"}
    error = refused(app, "POST", "/cluster/backup", id="both", schedule="daily", all="1", storage="local",
                    maxfiles="4", **{"prune-backups": "keep-last=2"})
    assert (error.status, error.message) == (500, "400 Parameter verification failed.\nprune-backups: option "
                                                   "conflicts with option 'maxfiles'\n")


def test_a_sandbox_keeps_its_version_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    make(tmp_path, "8")
    with pytest.raises(LaunchError, match=r"holds a PVE 8 sandbox; it cannot become PVE 9"):
        open_or_create(tmp_path / "state", stepped=True, pve_version="9")
    with pytest.raises(LaunchError, match=r"--pve-version: unknown PVE version '7'; the sandbox plays 9 \(9.1.3\), "
                                          r"8 \(8.4.0\)"):
        open_or_create(tmp_path / "other", stepped=True, pve_version="7")
    result = CliRunner().invoke(cli, ["sandbox", "serve", "--dir", str(tmp_path / "cli"), "--pve-version", "7.0",
                                      "--port", "1"])
    assert result.exit_code == 2 and "unknown PVE version '7.0'" in result.output
